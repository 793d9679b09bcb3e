"""The console script's handling of broken configuration data."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_a_broken_rules_file_stops_the_start_with_the_key_before_any_database_work(
    tmp_path: Path,
) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text("[default]\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELEMATICS_")}
    env.update(
        TELEMATICS_RULES_PATH=str(rules),
        # Nothing answers on port 9: the start must fail on the rules, not on the database.
        TELEMATICS_DATABASE_URL="postgresql://nobody@127.0.0.1:9/none",
        TELEMATICS_MQTT_URL="mqtt://127.0.0.1:9",
        TELEMATICS_DATA_DIR=str(tmp_path),
    )
    done = subprocess.run(
        [sys.executable, "-m", "telematics", "run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "default.low_oil_pressure" in done.stderr
    assert "Traceback" not in done.stderr
    assert "database" not in done.stderr.lower()
