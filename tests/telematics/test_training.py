"""The anomaly model trained from the store, stored, loaded by the diagnoser, and alarming.

History comes from the fleet simulator's physics and goes in through the real decoder and write
path; training reads it back with SQL; the diagnoser loads the stored model and scores new
batches with it.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

import asyncpg
import httpx
import numpy as np
import orjson

from diagnosis.engine import Engine
from diagnosis.events import UNEXPLAINED_ANOMALY
from diagnosis.knowledge import KnowledgeBase
from diagnosis.model import RegimeModel
from diagnosis.rules import RuleBook
from diagnosis.windows import window_rows
from simulators import make_fleet
from simulators.faults import FaultInjector, FaultSpec
from simulators.fleet import Fleet
from simulators.machines import MachineSpec
from simulators.wire import encode_batch, frame_rows, telemetry_topic
from telematics.api.app import create_app
from telematics.api.context import ApiContext
from telematics.base.metrics import Metrics
from telematics.ingest.pipeline import ingest, now_ms
from telematics.services.diagnose import Diagnoser, frame_of
from telematics.services.training import healthy_windows
from telematics.store import models as model_store
from telematics.store.registry import SourceDirectory, add_machine
from telematics.wire.decode import Limits
from tests.conftest import unique
from tests.diagnosis.test_engine import Stream
from tests.diagnosis.test_engine import frame_of as stream_frame

PERIOD_MS = 5_000
AUTH = {"Authorization": "Bearer test-admin-token"}


def machine_model_name() -> str:
    # A model name of this test's own, so other tests' excavators do not join its training set.
    return f"ex_{unique('m').split('-')[1]}"


async def publish_history(
    conn: asyncpg.Connection,
    fleet: tuple[MachineSpec, ...],
    injector: FaultInjector,
    sim: Fleet,
    start_ms: int,
    steps: int,
) -> None:
    """Simulate `steps` readings per machine and store them through the decoder, 60 at a time."""
    directory = SourceDirectory()
    rows_by_machine: dict[str, list[dict[str, object]]] = {m.machine_id: [] for m in fleet}
    for i in range(steps):
        frame, publishing = injector.step(sim, start_ms + i * PERIOD_MS)
        for machine, row, on in zip(fleet, frame_rows(frame), publishing, strict=True):
            if on:
                rows_by_machine[machine.machine_id].append(dict(row))
        if len(rows_by_machine[fleet[0].machine_id]) == 60 or i == steps - 1:
            messages = [
                (telemetry_topic(m), encode_batch(rows))
                for m, rows in rows_by_machine.items()
                if rows
            ]
            await ingest(conn, directory, messages, limits=Limits(), clock_ms=now_ms())
            rows_by_machine = {m.machine_id: [] for m in fleet}


async def register(conn: asyncpg.Connection, fleet: tuple[MachineSpec, ...], model: str) -> None:
    for m in fleet:
        await add_machine(conn, m.machine_id, model, m.customer_id, None)


async def test_a_trained_model_is_stored_loaded_and_raises_unexplained_anomalies(
    pool: asyncpg.Pool,
) -> None:
    model = machine_model_name()
    fleet = make_fleet(8, models=["excavator"], id_prefix=unique("TR"), seed=2)
    rules = RuleBook.load()
    start_ms = now_ms() - 20 * 3600 * 1000
    history_steps = 8 * 720  # 8 h at 5 s
    # One machine's oil pressure sticks high after its history: no rule covers it, the model,
    # which knows this machine's own healthy pressure from that history, does. The simulation
    # runs on without a break, so every machine keeps its own settings (idle speed, pressure).
    fault_start = start_ms + history_steps * PERIOD_MS + 20 * 60_000
    spec = FaultSpec(
        "unexplained_anomaly", fleet[0].machine_id, fault_start, 2 * 3600,
        variant="oil_pressure_high", magnitude=1.5,
    )  # fmt: skip
    sim = Fleet(fleet, seed=5, start_ts_ms=start_ms - PERIOD_MS)
    injector = FaultInjector(fleet, (spec,), seed=5)
    injector.attach(sim)
    async with pool.acquire() as conn:
        await register(conn, fleet, model)
        await publish_history(conn, fleet, injector, sim, start_ms, steps=history_steps)

    app = create_app(
        ApiContext(
            pool=pool,
            directory=SourceDirectory(),
            metrics=Metrics(),
            admin_token="test-admin-token",
            limits=Limits(),
            rules=rules,
        )
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://api"
    ) as http:
        refused = await http.post("/v1/models/no_such_model/train", json={"days": 2}, headers=AUTH)
        assert refused.status_code == 422
        trained = await http.post(f"/v1/models/{model}/train", json={"days": 2}, headers=AUTH)
        assert trained.status_code == 201, trained.text
        body = trained.json()
        assert body["version"] == 1
        assert body["machines"] == len(fleet)
        assert body["windows"] > 1000
        listed = await http.get("/v1/models", headers=AUTH)
        assert (model, 1) in {(m["model"], m["version"]) for m in listed.json()}

    # The windows training saw are the engine's windows: 60 s of settled running readings, 5 or
    # more, each tagged with its machine.
    a = rules.for_machine(model, "").anomaly
    async with pool.acquire() as conn:
        data = await healthy_windows(
            conn,
            model,
            _dt(start_ms),
            _dt(now_ms()),
            window_s=round(a.window_s),
            min_readings=a.min_readings,
            max_rpm_range=a.max_rpm_range,
            settle_s=a.settle_s,
        )
        assert len(data.rows) == body["windows"]
        assert (data.rows[:, 0] > 0).all()
        assert len(data.machine_ids) == len(data.rows)
        assert set(data.machine_ids) == {m.machine_id for m in fleet}
        blobs = await model_store.latest_blobs(conn)
    version, blob = blobs[("model", model)]
    assert version == 1
    stored = RegimeModel.from_bytes(blob)
    assert stored.info.machine_model == model
    # Every machine got a baseline in the regimes it worked in for half an hour or more.
    assert set(stored.machines("full_load")) == {m.machine_id for m in fleet}

    diagnoser = Diagnoser(pool, Engine(rules), KnowledgeBase.load(), Metrics())
    assert ("model", model) in await diagnoser.refresh_models()  # other tests train models too
    assert await diagnoser.refresh_models() == []  # nothing newer

    changes = []
    async with pool.acquire() as conn:
        directory = SourceDirectory()
        for block in range(3 * 60):  # 3 h in blocks of one minute
            rows: dict[str, list[dict[str, object]]] = {m.machine_id: [] for m in fleet}
            for i in range(12):
                step = history_steps + block * 12 + i
                frame, publishing = injector.step(sim, start_ms + step * PERIOD_MS)
                for machine, row, on in zip(fleet, frame_rows(frame), publishing, strict=True):
                    if on:
                        rows[machine.machine_id].append(dict(row))
            messages = [(telemetry_topic(m), encode_batch(r)) for m, r in rows.items() if r]
            decoded, _ = await ingest(conn, directory, messages, limits=Limits(), clock_ms=now_ms())
            changes += await diagnoser.diagnose(frame_of(decoded.readings))
    (truth,) = injector.ground_truth()
    assert truth.visible_ts_ms is not None
    raised = [c for c in changes if c.fault == UNEXPLAINED_ANOMALY and c.transition == "raised"]
    assert [c.machine_id for c in raised] == [fleet[0].machine_id]
    raised_ms = int(raised[0].ts.timestamp() * 1000)
    assert truth.visible_ts_ms <= raised_ms <= truth.visible_ts_ms + 5 * 60_000
    assert all(c.machine_id == fleet[0].machine_id for c in changes)


def _dt(ms: int):

    return datetime.fromtimestamp(ms / 1000, UTC)


async def test_training_windows_in_sql_are_the_engines_windows(pool: asyncpg.Pool) -> None:
    """The same history, stored and read back by the training SQL, and cut into windows by
    `diagnosis.windows` in Python: the same windows with the same means, engine stops, a
    restart, a reading without speed and an unsteady minute included."""
    model = machine_model_name()
    machine_id = unique("TW")
    s = Stream(machine_id, start_s=-7200.0).add(420).add(200, engine_speed_rpm=0.0)
    s.add(300).add(40, engine_speed_rpm=1200.0).add(400)
    s.rows[600]["engine_speed_rpm"] = math.nan
    s.rows[1000]["battery_v"] = math.nan
    rng = np.random.default_rng(3)
    for row in s.rows:
        row["oil_pressure_kpa"] += float(rng.normal(0.0, 5.0))
    frame = stream_frame(s)
    rows = [
        {"ts": int(t)}
        | {k: v for k, v in zip(s.rows[0], col.tolist(), strict=True) if not math.isnan(v)}
        for t, col in zip(frame.ts_ms.tolist(), frame.values.T, strict=True)
    ]
    a = RuleBook.load().for_machine(model, "").anomaly
    async with pool.acquire() as conn:
        await add_machine(conn, machine_id, model, "C-tw", None)
        _, written = await ingest(
            conn,
            SourceDirectory(),
            [
                (f"machines/{machine_id}/telemetry", orjson.dumps({"readings": rows[i : i + 100]}))
                for i in range(0, len(rows), 100)
            ],
            limits=Limits(),
            clock_ms=s.ts(len(s.rows) - 1) + 1000,
        )
        assert written.readings_inserted == len(rows)
        got = await healthy_windows(
            conn,
            model,
            _dt(s.ts(0)),
            _dt(s.ts(len(s.rows))),
            window_s=round(a.window_s),
            min_readings=a.min_readings,
            max_rpm_range=a.max_rpm_range,
            settle_s=a.settle_s,
        )
    want = window_rows(frame, a.window_s, a.min_readings, a.max_rpm_range, a.settle_s)
    assert 0 < len(want) < len(window_rows(frame, a.window_s, a.min_readings))
    assert len(got.rows) == len(want)
    np.testing.assert_allclose(got.rows, want.means, rtol=1e-9)
