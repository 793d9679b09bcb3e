"""No alarm is lost around a restart: what was committed and not diagnosed is diagnosed by the
next run, and a machine that never reports again is still declared silent."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import orjson

from diagnosis.engine import Engine
from diagnosis.events import MACHINE_SILENT
from diagnosis.frame import Frame
from diagnosis.knowledge import KnowledgeBase
from diagnosis.rules import RuleBook
from telematics.base.metrics import Metrics
from telematics.ingest.pipeline import ingest
from telematics.services.diagnose import Diagnoser, DiagnoserConfig
from telematics.store.registry import Site, SourceDirectory, add_machine
from telematics.wire.decode import DecodedBatch, Limits, decode_message
from tests.conftest import unique
from tests.diagnosis.test_engine import HEALTHY, SITE


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _readings(start_ms: int, count: int, dtc: bool = False) -> bytes:
    rows = [
        {
            "ts": start_ms + i * 1000,
            **HEALTHY,
            **({"dtc": [{"spn": 100, "fmi": 1, "oc": 1}]} if dtc else {}),
        }
        for i in range(count)
    ]
    return orjson.dumps({"readings": rows})


async def _store(
    pool: asyncpg.Pool, machine: str, payload: bytes, pending_source: str | None
) -> None:
    async with pool.acquire() as conn:
        await ingest(
            conn,
            SourceDirectory(),
            [(f"machines/{machine}/telemetry", payload)],
            limits=Limits(),
            pending_source=pending_source,
        )


def _diagnoser(pool: asyncpg.Pool, source: str) -> Diagnoser:
    return Diagnoser(
        pool,
        Engine(RuleBook.load()),
        KnowledgeBase.load(),
        Metrics(),
        DiagnoserConfig(source=source),
    )


async def _run_until_restored(diagnoser: Diagnoser) -> None:
    """Run until the recently active machines are restored (in the background of the loop)."""
    stop = asyncio.Event()
    task = asyncio.create_task(diagnoser.run(stop))
    try:
        await asyncio.wait_for(diagnoser.restored.wait(), 120)
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)


async def _run_once(diagnoser: Diagnoser) -> None:
    stop = asyncio.Event()
    stop.set()  # catch up and return once nothing is queued (no restore: stopping)
    await asyncio.wait_for(diagnoser.run(stop), 60)


async def test_a_batch_committed_but_never_diagnosed_alarms_after_the_restart(
    pool: asyncpg.Pool,
) -> None:
    machine, source = unique("DR"), unique("gw")
    async with pool.acquire() as conn:
        await add_machine(conn, machine, "excavator", "C-durable", Site(*SITE))
    start = _now_ms() - 120_000
    # The gateway committed these (a J1939 code in all of them), then the process died before
    # its diagnoser saw them: nothing but the store knows about them.
    await _store(pool, machine, _readings(start, 30), source)
    await _store(pool, machine, _readings(start + 30_000, 30, dtc=True), source)
    await _run_once(_diagnoser(pool, source))
    rows = await pool.fetch(
        "SELECT fault, state, raised_at FROM alarms WHERE machine_id = $1", machine
    )
    assert [(r["fault"], r["state"]) for r in rows] == [("dtc_100_1", "open")]
    raised_ms = round(rows[0]["raised_at"].timestamp() * 1000)
    assert raised_ms == start + 30_000  # the alarm carries the reading's time
    left = await pool.fetchval("SELECT count(*) FROM diagnosis_pending WHERE source = $1", source)
    assert left == 0


async def test_a_machine_that_never_reports_again_is_declared_silent_after_a_restart(
    pool: asyncpg.Pool,
) -> None:
    machine, source = unique("DR"), unique("gw")
    async with pool.acquire() as conn:
        await add_machine(conn, machine, "excavator", "C-durable", Site(*SITE))
    # Diagnosed before the restart (nothing pending): running, then quiet for 5 minutes.
    await _store(pool, machine, _readings(_now_ms() - 360_000, 60), None)
    diagnoser = _diagnoser(pool, source)
    await _run_until_restored(diagnoser)
    assert diagnoser.restore_left == 0
    await diagnoser.check_silence()
    faults = await pool.fetch(
        "SELECT fault FROM alarms WHERE machine_id = $1 AND state = 'open'", machine
    )
    assert [r["fault"] for r in faults] == [MACHINE_SILENT]


async def test_late_readings_raise_the_alarm_they_show_once_at_their_reading_time(
    pool: asyncpg.Pool,
) -> None:
    machine, source = unique("DR"), unique("gw")
    async with pool.acquire() as conn:
        await add_machine(conn, machine, "excavator", "C-durable", Site(*SITE))
    now = _now_ms()
    # The machine kept reporting, healthy, and was diagnosed ...
    await _store(pool, machine, _readings(now - 120_000, 60), source)
    diagnoser = _diagnoser(pool, source)
    await _run_once(diagnoser)
    assert not diagnoser.engine.unknown([machine])
    # ... then its store-and-forward delivers an older stretch, a J1939 code in it, through a
    # dead-letter replay: the live state is past these readings.
    late_start = now - 600_000
    for _ in range(2):  # the same readings replayed a second time add nothing
        await _store(pool, machine, _readings(late_start, 30, dtc=True), "replay")
        await _run_once(diagnoser)
    left = await pool.fetchval("SELECT count(*) FROM diagnosis_pending WHERE source = 'replay'")
    assert left == 0
    rows = await pool.fetch("SELECT fault, raised_at FROM alarms WHERE machine_id = $1", machine)
    assert [r["fault"] for r in rows] == ["dtc_100_1"]
    assert round(rows[0]["raised_at"].timestamp() * 1000) == late_start


class _WhatWasLeft:
    """After-batch work that notes, for each batch, how many machines were left to restore."""

    def __init__(self) -> None:
        self.diagnoser: Diagnoser | None = None
        self.left: list[int] = []

    async def consume(self, frame: Frame) -> None:
        assert self.diagnoser is not None
        self.left.append(self.diagnoser.restore_left)

    async def flush(self, *, due_only: bool = False) -> bool:
        return True


async def test_after_a_restart_the_live_stream_is_diagnosed_before_the_restore_is_done(
    pool: asyncpg.Pool,
) -> None:
    """The recently active machines are restored between batches: a batch that comes while
    they are being restored is diagnosed first, and the restore still finishes."""
    quiet = [unique("DQ") for _ in range(4)]
    live, source = unique("DL"), unique("gw")
    async with pool.acquire() as conn:
        for m in [*quiet, live]:
            await add_machine(conn, m, "excavator", "C-durable", Site(*SITE))
    for m in quiet:  # diagnosed before the restart, then quiet
        await _store(pool, m, _readings(_now_ms() - 300_000, 20), None)
    seen = _WhatWasLeft()
    diagnoser = Diagnoser(
        pool, Engine(RuleBook.load()), KnowledgeBase.load(), Metrics(),
        DiagnoserConfig(source=source, restore_chunk=1), consumers=[seen],
    )  # fmt: skip
    seen.diagnoser = diagnoser
    now_ms = _now_ms()
    batch = DecodedBatch()
    decode_message(
        f"machines/{live}/telemetry", _readings(now_ms - 10_000, 10, dtc=True), now_ms=now_ms,
        limits=Limits(), known_machines={live}, known_engineers=(), out=batch,
    )  # fmt: skip
    diagnoser.submit(batch.readings)  # committed by the gateway as the service starts
    await _run_until_restored(diagnoser)
    # The batch was diagnosed while at least the four quiet machines were still to restore
    # (the store's other recently active machines may come on top), one at a time here.
    assert len(seen.left) == 1
    assert seen.left[0] >= len(quiet)
    assert diagnoser.engine.unknown([*quiet, live]) == []
    rows = await pool.fetch("SELECT fault FROM alarms WHERE machine_id = $1", live)
    assert [r["fault"] for r in rows] == ["dtc_100_1"]
