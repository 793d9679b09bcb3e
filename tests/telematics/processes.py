"""`telematics run` as real processes: several workers of one deployment, on ports of their own."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import MQTT_URL


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServiceProcess:
    """One `telematics run` child process; restartable with the same settings.

    Args:
        database_url: The database every copy shares.
        data_dir: Its own data folder.
        client_id: Its MQTT client id (one persistent session per worker).
        env: More settings (`TELEMATICS_...`).
    """

    def __init__(self, database_url: str, data_dir: Path, client_id: str, **env: str) -> None:
        self.port = free_port()
        self.client_id = client_id
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "TELEMATICS_DATABASE_URL": database_url,
            "TELEMATICS_MQTT_URL": MQTT_URL,
            "TELEMATICS_MQTT_CLIENT_ID": client_id,
            "TELEMATICS_MQTT_SESSION_EXPIRY_S": "120",
            "TELEMATICS_HTTP_PORT": str(self.port),
            "TELEMATICS_ADMIN_TOKEN": "t",
            "TELEMATICS_DATA_DIR": str(data_dir),
            **env,
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self._log = data_dir / f"{client_id}.log"

    def start(self) -> None:
        """Start the process (its output goes to a log file in its data folder)."""
        with self._log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "telematics", "run"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    async def ready(self, timeout_s: float = 60.0) -> None:
        """Wait for `/readyz` to say ready (database answering, gateway subscribed)."""
        deadline = time.monotonic() + timeout_s
        async with httpx.AsyncClient(timeout=2.0) as http:
            while True:
                assert self.proc is not None
                assert self.proc.poll() is None, self.log_tail()
                try:
                    if (await http.get(f"{self.url}/readyz")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, f"not ready in {timeout_s} s"
                await asyncio.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL: no draining, no goodbye to the broker or the database."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int | None:
        """SIGTERM and wait for the drain (killed if it takes longer than 30 s)."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)

    def log_tail(self, lines: int = 30) -> str:
        """The end of its output, for a failure message."""
        text = self._log.read_text(errors="replace") if self._log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])
