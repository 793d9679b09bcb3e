"""A taken HTTP port (8080 is a popular one) stops the start at once, in one line that names the
setting, before the embedded database or broker starts: not uvicorn's traceback after them.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(120)


def test_a_taken_http_port_is_one_line_naming_the_setting(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("TELEMATICS_")  # a newcomer's shell: the embedded defaults
        }
        env |= {"TELEMATICS_HTTP_PORT": str(port), "TELEMATICS_DATA_DIR": str(tmp_path)}
        done = subprocess.run(
            [sys.executable, "-m", "telematics", "demo"],
            env=env,
            capture_output=True,
            text=True,
            timeout=90,
            check=False,  # the exit code is what is checked
        )
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "TELEMATICS_HTTP_PORT" in done.stderr
    assert not (tmp_path / "pg").exists()  # nothing was started before the port was checked
