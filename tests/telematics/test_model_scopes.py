"""Anomaly models per model designation, falling back to the machine's class.

A class model is trained over the HTTP API on every machine of the class (two designations
here), stored, loaded by the diagnoser, and scores a machine whose designation has no model of
its own; a designation's model is trained on its machines alone.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import httpx
import numpy as np
import orjson
import pytest

from diagnosis.engine import Engine
from diagnosis.events import UNEXPLAINED_ANOMALY
from diagnosis.knowledge import KnowledgeBase
from diagnosis.rules import RuleBook
from telematics.api.app import create_app
from telematics.api.context import ApiContext
from telematics.base.metrics import Metrics
from telematics.ingest.pipeline import ingest, now_ms
from telematics.services.diagnose import Diagnoser, frame_of
from telematics.store.registry import SourceDirectory, add_machine
from telematics.wire.decode import Limits
from tests.conftest import unique
from tests.diagnosis.test_engine import T0, Stream

AUTH = {"Authorization": "Bearer test-admin-token"}
PERIOD_S = 5.0
# A class no other test registers machines of, so the class model learns from these alone.
CLASS = "piling_rig"
NOISE = {
    "engine_speed_rpm": 10.0,
    "load_pct": 2.0,
    "oil_pressure_kpa": 5.0,
    "coolant_temp_c": 0.3,
    "hydraulic_oil_temp_c": 0.3,
    "battery_v": 0.04,
}


def _rows(stream: Stream, rng: np.random.Generator, oil_kpa: float) -> list[dict[str, float]]:
    rows = []
    for i, row in enumerate(stream.rows):
        noisy = {
            k: v + float(rng.normal(0.0, NOISE[k])) if k in NOISE else v for k, v in row.items()
        }
        noisy["oil_pressure_kpa"] += oil_kpa - 350.0
        rows.append({"ts": stream.ts(i), **noisy})
    return rows


async def _store(conn: asyncpg.Connection, machine_id: str, rows: list[dict[str, float]]) -> None:
    messages = [
        (f"machines/{machine_id}/telemetry", orjson.dumps({"readings": rows[i : i + 200]}))
        for i in range(0, len(rows), 200)
    ]
    _, written = await ingest(conn, SourceDirectory(), messages, limits=Limits(), clock_ms=now_ms())
    assert written.readings_inserted == len(rows)


@pytest.fixture
async def http(pool: asyncpg.Pool) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(
        ApiContext(
            pool=pool,
            directory=SourceDirectory(),
            metrics=Metrics(),
            admin_token="test-admin-token",
            limits=Limits(),
            rules=RuleBook.load(),
        )
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://api"
    ) as client:
        yield client


async def test_a_class_model_scores_machines_whose_designation_has_none(
    pool: asyncpg.Pool, http: httpx.AsyncClient
) -> None:
    tag = unique("PR").split("-")[1].upper()
    own, other = f"PR{tag}-A", f"PR{tag}-B"
    machines = {f"{own}-1": own, f"{own}-2": own, f"{other}-1": other, f"{other}-2": other}
    rng = np.random.default_rng(7)
    steps = 1500  # 125 min at 5 s: over 100 settled windows a machine
    start_s = (now_ms() - 3 * 3600 * 1000 - T0) / 1000
    async with pool.acquire() as conn:
        for k, (machine_id, model) in enumerate(machines.items()):
            await add_machine(conn, machine_id, model, "C-scope", None, machine_class=CLASS)
            history = Stream(machine_id, period_s=PERIOD_S, start_s=start_s).add(steps)
            await _store(conn, machine_id, _rows(history, rng, 330.0 + 10 * k))

    refused = await http.post(
        "/v1/models/tank/train", json={"days": 1, "scope": "class"}, headers=AUTH
    )
    assert refused.status_code == 422
    by_class = await http.post(
        f"/v1/models/{CLASS}/train", json={"days": 1, "scope": "class"}, headers=AUTH
    )
    assert by_class.status_code == 201, by_class.text
    assert (by_class.json()["scope"], by_class.json()["machines"]) == ("class", 4)
    by_model = await http.post(f"/v1/models/{own}/train", json={"days": 1}, headers=AUTH)
    assert by_model.status_code == 201, by_model.text
    assert (by_model.json()["scope"], by_model.json()["machines"]) == ("model", 2)
    listed = {(m["scope"], m["model"]) for m in (await http.get("/v1/models", headers=AUTH)).json()}
    assert {("class", CLASS), ("model", own)} <= listed

    diagnoser = Diagnoser(pool, Engine(RuleBook.load()), KnowledgeBase.load(), Metrics())
    refreshed = await diagnoser.refresh_models()
    assert {("class", CLASS), ("model", own)} <= set(refreshed)

    # The oil pressure of a machine of the designation without a model of its own sticks high:
    # no rule covers it; its class's model, which knows this machine's healthy pressure, does.
    sick = f"{other}-1"
    after = Stream(sick, period_s=PERIOD_S, start_s=start_s + steps * PERIOD_S).add(180)
    rows = _rows(after, rng, 330.0 + 10 * 2)
    for row in rows:
        row["oil_pressure_kpa"] *= 1.5
    async with pool.acquire() as conn:
        decoded, _ = await ingest(
            conn,
            SourceDirectory(),
            [(f"machines/{sick}/telemetry", orjson.dumps({"readings": rows}))],
            limits=Limits(),
            clock_ms=now_ms(),
        )
    changes = await diagnoser.diagnose(frame_of(decoded.readings))
    raised = [c for c in changes if c.fault == UNEXPLAINED_ANOMALY and c.transition == "raised"]
    assert [c.machine_id for c in raised] == [sick]
