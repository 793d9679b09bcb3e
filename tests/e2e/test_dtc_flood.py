"""A machine reporting a flood of fault codes raises a bounded number of alarms, and keeps every
code in its readings: through the real broker, the service and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from diagnosis.rules import RuleBook
from telematics.base.config import Settings
from telematics.ingest.mqtt import parse_mqtt_url
from tests.conftest import unique
from tests.diagnosis.test_engine import HEALTHY
from tests.telematics.harness import publish, running_service

AUTH = {"Authorization": "Bearer test-admin-token"}
MAX_OPEN = RuleBook.load().default.dtc.max_open
CODES = MAX_OPEN + 8
READINGS = 3


async def _open_codes(http: httpx.AsyncClient, machine: str) -> list[str]:
    answer = await http.get(
        "/v1/alarms", params={"machine_id": machine, "limit": 500}, headers=AUTH
    )
    answer.raise_for_status()
    return [a["fault"] for a in answer.json()["alarms"] if str(a["fault"]).startswith("dtc_")]


def _suppressed(metrics: str) -> float:
    found = re.search(r"(?m)^telematics_dtc_suppressed_total (\S+)$", metrics)
    assert found is not None, "the counter is not exported"
    return float(found.group(1))


@pytest.mark.slow
async def test_a_flood_of_fault_codes_raises_max_open_alarms_and_keeps_every_code(
    settings: Settings, tmp_path: Path
) -> None:
    cfg = settings.model_copy(
        update={"mqtt_client_id": unique("gw-flood"), "http_port": 0, "data_dir": tmp_path}
    )
    machine = unique("FLOOD")
    async with running_service(cfg, 30) as ep, httpx.AsyncClient(base_url=ep.http_url) as http:
        made = await http.post(
            "/v1/machines",
            json={"machine_id": machine, "model": "SY215C", "machine_class": "excavator",
                  "customer_id": unique("C")},
            headers=AUTH,
        )  # fmt: skip
        assert made.status_code == 201, made.text
        before = _suppressed((await http.get("/metrics")).text)
        t0 = time.time_ns() // 1_000_000 - 10_000
        flood = [{"spn": 520000 + i, "fmi": 31, "oc": 1} for i in range(CODES)]
        readings = [{"ts": t0 + i * 1000, **HEALTHY, "dtc": flood} for i in range(READINGS)]
        topic = f"machines/{machine}/telemetry"
        await publish(parse_mqtt_url(ep.mqtt_url), [(topic, {"readings": readings})])
        deadline = time.monotonic() + 30
        faults = await _open_codes(http, machine)
        while len(faults) < MAX_OPEN and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            faults = await _open_codes(http, machine)
        await asyncio.sleep(1.0)  # nothing more comes
        faults = await _open_codes(http, machine)
        assert sorted(faults) == sorted(f"dtc_{520000 + i}_31" for i in range(MAX_OPEN))
        suppressed = _suppressed((await http.get("/metrics")).text) - before
        assert suppressed == (CODES - MAX_OPEN) * READINGS
        # The readings hold every code the machine sent.
        start = datetime.fromtimestamp(t0 / 1000, UTC)
        stored = await http.get(
            f"/v1/machines/{machine}/readings",
            params={"start": start.isoformat(), "end": (start + timedelta(minutes=1)).isoformat()},
            headers=AUTH,
        )
        rows = stored.json()["readings"]
        assert len(rows) == READINGS
        assert all(len(r["dtc"]) == CODES for r in rows)
