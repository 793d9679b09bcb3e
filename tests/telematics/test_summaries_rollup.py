"""The rollup against the real store: increments, re-runs and late readings give one answer."""

from __future__ import annotations

import asyncio

import asyncpg
import orjson
import pytest

from diagnosis.engine import Engine
from diagnosis.knowledge import KnowledgeBase
from diagnosis.rules import RuleBook
from telematics.base.metrics import Metrics
from telematics.ingest.pipeline import ingest
from telematics.services.diagnose import Diagnoser, DiagnoserConfig, frame_of
from telematics.store.registry import SourceDirectory, add_machine
from telematics.summaries.rollup import Rollup
from telematics.wire.decode import Limits
from tests.conftest import unique
from tests.telematics.harness import now_ms

SLOT = 900_000


def script(start_ms: int) -> list[dict[str, float]]:
    """Two hours, a reading every 20 s: working, idle, off, with hours, fuel and a drive."""
    rows = []
    hours, fuel, lat = 500.0, 70.0, 31.2
    for i in range(360):
        phase = (i // 60) % 3  # 20 min working, 20 idle, 20 off
        rpm = (1800.0, 800.0, 0.0)[phase]
        load = (60.0, 5.0, 0.0)[phase]
        if rpm:
            hours += 20 / 3600
            fuel -= 0.02 if phase == 0 else 0.005
        if phase == 0:
            lat += 0.0001
        rows.append(
            {
                "ts": start_ms + i * 20_000,
                "engine_speed_rpm": rpm,
                "load_pct": load,
                "engine_hours": round(hours, 3),
                "fuel_level_pct": round(fuel, 3),
                "lat": lat,
                "lon": 121.5,
            }
        )
    return rows


async def feed(
    pool: asyncpg.Pool, rollup: Rollup, machine: str, rows: list[dict[str, float]]
) -> None:
    async with pool.acquire() as conn:
        decoded, _ = await ingest(
            conn,
            SourceDirectory(),
            [(f"machines/{machine}/telemetry", orjson.dumps({"readings": rows}))],
            limits=Limits(),
        )
    await rollup.consume(frame_of(decoded.readings))
    await rollup.flush()


async def store_pending(
    pool: asyncpg.Pool, machine: str, rows: list[dict[str, float]], source: str
) -> None:
    """Commit `rows` as the gateway `source` would, 120 a batch, none of them diagnosed yet."""
    async with pool.acquire() as conn:
        for lo in range(0, len(rows), 120):
            payload = orjson.dumps({"readings": rows[lo : lo + 120]})
            await ingest(
                conn,
                SourceDirectory(),
                [(f"machines/{machine}/telemetry", payload)],
                limits=Limits(),
                pending_source=source,
            )


async def figures(pool: asyncpg.Pool, machine: str) -> dict[str, float]:
    row = await pool.fetchrow(
        "SELECT count(*) AS n, sum(known_s) AS known_s, sum(working_s) AS working_s,"
        " sum(idle_s) AS idle_s, sum(engine_h) AS engine_h, sum(fuel_used_pct) AS fuel,"
        " sum(distance_m) AS distance_m, sum(meter_anomalies) AS anomalies,"
        " min(first_start) AS first_start, max(last_stop) AS last_stop"
        " FROM summary_slots WHERE machine_id = $1",
        machine,
    )
    days = await pool.fetchrow(
        "SELECT sum(working_s) AS working_s, sum(engine_h) AS engine_h,"
        " sum((SELECT sum(x) FROM unnest(working_by_hour) x)) AS by_hour"
        " FROM summary_days WHERE machine_id = $1",
        machine,
    )
    out = {k: (v.timestamp() if hasattr(v, "timestamp") else float(v or 0)) for k, v in row.items()}
    out["days_working_s"] = float(days["working_s"] or 0)
    out["days_engine_h"] = float(days["engine_h"] or 0)
    out["days_by_hour"] = float(days["by_hour"] or 0)
    return out


async def machines(pool: asyncpg.Pool, *ids: str) -> None:
    async with pool.acquire() as conn:
        for m in ids:
            await add_machine(conn, m, "excavator", unique("CS"), None, fuel_tank_l=400.0)


def start() -> int:
    return (now_ms() - 6 * 3600_000) // SLOT * SLOT + 7_000


async def test_batches_in_order_add_up_and_days_follow_slots(pool: asyncpg.Pool) -> None:
    m = unique("SU")
    await machines(pool, m)
    rows = script(start())
    rollup = Rollup(pool, RuleBook.load())
    for lo in range(0, len(rows), 50):
        await feed(pool, rollup, m, rows[lo : lo + 50])
    f = await figures(pool, m)
    assert f["working_s"] == pytest.approx(2 * 1200)  # two 20-minute working phases
    assert f["idle_s"] == pytest.approx(2 * 1200)
    assert f["known_s"] == pytest.approx(359 * 20)
    assert f["engine_h"] == pytest.approx(rows[-1]["engine_hours"] - rows[0]["engine_hours"])
    assert f["days_working_s"] == pytest.approx(f["working_s"])
    assert f["days_by_hour"] == pytest.approx(f["working_s"])
    assert f["days_engine_h"] == pytest.approx(f["engine_h"])
    assert f["anomalies"] == 0
    assert rollup.recomputed == 0


async def test_a_batch_applied_twice_or_after_a_restart_counts_once(pool: asyncpg.Pool) -> None:
    m = unique("SI")
    await machines(pool, m)
    rows = script(start())
    first = Rollup(pool, RuleBook.load())
    await feed(pool, first, m, rows[:200])
    once = await figures(pool, m)
    await feed(pool, first, m, rows[100:200])  # re-diagnosed after a crash
    await feed(pool, Rollup(pool, RuleBook.load()), m, rows[:200])  # a restarted worker
    assert await figures(pool, m) == pytest.approx(once)
    await feed(pool, first, m, rows[200:])  # its cached tail is still right
    straight = unique("SI")
    await machines(pool, straight)
    await feed(pool, Rollup(pool, RuleBook.load()), straight, rows)
    assert await figures(pool, m) == pytest.approx(await figures(pool, straight))


@pytest.mark.parametrize("chunk_slots", [96, 1])
async def test_late_readings_are_recomputed_into_the_slots_they_fall_in(
    pool: asyncpg.Pool, chunk_slots: int
) -> None:
    late, straight = unique("SL"), unique("SL")
    await machines(pool, late, straight)
    rows = script(start())
    await feed(pool, Rollup(pool, RuleBook.load()), straight, rows)
    rollup = Rollup(pool, RuleBook.load())
    rollup.recompute_chunk_ms = chunk_slots * SLOT  # a recompute read a slot at a time, too
    # Live: everything but readings 100..179, which a buffered controller sends an hour later,
    # out of order.
    await feed(pool, rollup, late, rows[:100])
    await feed(pool, rollup, late, rows[180:])
    gap = await figures(pool, late)
    assert gap["known_s"] < (await figures(pool, straight))["known_s"]
    await feed(pool, rollup, late, rows[140:180])
    await feed(pool, rollup, late, rows[100:140])
    assert rollup.recomputed == 2
    got, want = await figures(pool, late), await figures(pool, straight)
    # The distance anchor at a recomputed range's start is its context reading's position
    # (docs/customers.md): at most one GPS threshold of difference per range.
    chunks = 2 if chunk_slots > 1 else 8  # each chunk starts its anchor afresh
    assert abs(got.pop("distance_m") - want.pop("distance_m")) <= chunks * 15.0
    assert got == pytest.approx(want, abs=1e-6)


async def test_batches_left_pending_by_a_crash_are_rolled_up_on_restart(pool: asyncpg.Pool) -> None:
    """The gateway committed, the process died before the rollup flushed: the next run's
    catch-up feeds the pending batches to the rollup, and only then takes them off."""
    crashed, straight, source = unique("SP"), unique("SP"), unique("gw")
    await machines(pool, crashed, straight)
    rows = script(start())
    await feed(pool, Rollup(pool, RuleBook.load()), straight, rows)
    await store_pending(pool, crashed, rows, source)
    diagnoser = Diagnoser(
        pool,
        Engine(RuleBook.load()),
        KnowledgeBase.load(),
        Metrics(),
        DiagnoserConfig(source=source),
        consumers=[Rollup(pool, RuleBook.load())],
    )
    stop = asyncio.Event()
    stop.set()
    await asyncio.wait_for(diagnoser.run(stop), 60)
    got, want = await figures(pool, crashed), await figures(pool, straight)
    assert got == pytest.approx(want, abs=1e-6)
    left = await pool.fetchval("SELECT count(*) FROM diagnosis_pending WHERE source = $1", source)
    assert left == 0


async def feed_together(
    pool: asyncpg.Pool, rollup: Rollup, rows_by_machine: dict[str, list[dict[str, float]]]
) -> None:
    """One batch of several machines' readings, consumed and flushed."""
    messages = [
        (f"machines/{m}/telemetry", orjson.dumps({"readings": rows}))
        for m, rows in rows_by_machine.items()
    ]
    async with pool.acquire() as conn:
        decoded, _ = await ingest(conn, SourceDirectory(), messages, limits=Limits())
    await rollup.consume(frame_of(decoded.readings))
    await rollup.flush()


async def test_a_tail_moved_by_another_worker_loses_no_other_machines_increments(
    pool: asyncpg.Pool,
) -> None:
    shared, other, straight = unique("SM"), unique("SM"), unique("SM")
    await machines(pool, shared, other, straight)
    rows = script(start())
    await feed(pool, Rollup(pool, RuleBook.load()), straight, rows)
    first, second = Rollup(pool, RuleBook.load()), Rollup(pool, RuleBook.load())
    await feed_together(pool, first, {shared: rows[:100], other: rows[:100]})
    await feed(pool, second, shared, rows[100:200])  # another worker moves one tail
    # The first worker's flush finds that tail moved: the batch is applied again from the
    # store's tails, the other machine's increments with it.
    await feed_together(pool, first, {shared: rows[100:200], other: rows[100:200]})
    await feed_together(pool, first, {shared: rows[200:], other: rows[200:]})
    want = await figures(pool, straight)
    assert await figures(pool, other) == pytest.approx(want, abs=1e-6)
    assert await figures(pool, shared) == pytest.approx(want, abs=1e-6)


async def test_a_flush_waits_until_due_and_its_batches_stay_pending_until_written(
    pool: asyncpg.Pool,
) -> None:
    """The diagnoser asks for a flush every `done_flush_s`, the rollup writes only when one is
    due (`flush_interval_s`, or `flush_readings` buffered): until then nothing is written and
    the batches stay in `diagnosis_pending`; at a stop everything is written and taken off."""
    unit, machine, straight, source = unique("SD"), unique("SD"), unique("SD"), unique("gw")
    await machines(pool, unit, machine, straight)
    rows = script(start())
    await feed(pool, Rollup(pool, RuleBook.load()), straight, rows)
    # The rollup alone: by buffered readings.
    rollup = Rollup(pool, RuleBook.load(), flush_interval_s=3600, flush_readings=200)
    lo_half = True  # 120 readings buffered: not due; 240: due
    async with pool.acquire() as conn:
        for part in (rows[:120], rows[120:240]):
            message = (f"machines/{unit}/telemetry", orjson.dumps({"readings": part}))
            decoded, _ = await ingest(conn, SourceDirectory(), [message], limits=Limits())
            await rollup.consume(frame_of(decoded.readings))
            written = await rollup.flush(due_only=True)
            stored = (await figures(pool, unit))["n"]
            assert (written, stored > 0) == ((False, False) if lo_half else (True, True))
            lo_half = False
    # Under the diagnoser: by time.
    await store_pending(pool, machine, rows, source)
    diagnoser = Diagnoser(
        pool,
        Engine(RuleBook.load()),
        KnowledgeBase.load(),
        Metrics(),
        DiagnoserConfig(source=source, done_flush_s=0.01),
        consumers=[Rollup(pool, RuleBook.load(), flush_interval_s=3600)],
    )
    stop = asyncio.Event()
    task = asyncio.create_task(diagnoser.run(stop))
    await asyncio.wait_for(diagnoser.caught_up.wait(), 60)
    await asyncio.sleep(0.2)  # many done flushes asked for, none due
    pending = "SELECT count(*) FROM diagnosis_pending WHERE source = $1"
    assert await pool.fetchval(pending, source) == 3
    assert (await figures(pool, machine))["n"] == 0
    stop.set()
    await asyncio.wait_for(task, 60)
    assert await pool.fetchval(pending, source) == 0
    assert await figures(pool, machine) == pytest.approx(await figures(pool, straight), abs=1e-6)
