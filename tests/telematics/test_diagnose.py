"""The diagnoser at the edge: engine state restored from the real store, alarms stored once."""

from __future__ import annotations

import time

import asyncpg
import orjson

from diagnosis.engine import Engine
from diagnosis.events import ENGINE_OVERHEAT, LOW_OIL_PRESSURE, MACHINE_SILENT
from diagnosis.frame import Frame
from diagnosis.knowledge import KnowledgeBase
from diagnosis.rules import RuleBook
from telematics.base.metrics import Metrics
from telematics.ingest.pipeline import ingest
from telematics.services.diagnose import Diagnoser
from telematics.store import alarms as alarm_store
from telematics.store.registry import Site, SourceDirectory, add_machine
from telematics.wire.decode import Limits
from tests.conftest import unique
from tests.diagnosis.test_engine import SITE, Stream, frame_of


def diagnoser(pool: asyncpg.Pool) -> Diagnoser:
    return Diagnoser(pool, Engine(RuleBook.load()), KnowledgeBase.load(), Metrics())


def overheating(machine_id: str, start_s: float) -> Stream:
    """Warm, then overheating for three minutes, then cooled down again."""
    s = Stream(machine_id, start_s=start_s)
    s.add(120)
    s.add(180, coolant_temp_c=109.0)
    s.add(180, coolant_temp_c=88.0)
    return s


async def store(
    conn: asyncpg.Connection, s: Stream, lo: int, hi: int, *, pending_source: str | None = None
) -> Frame:
    """Publish-equivalent: readings lo:hi through the real decoder and write path (recorded as
    waiting for diagnosis under `pending_source`, as the gateway does, if given)."""
    frame = frame_of(s, lo=lo, hi=hi)
    rows = [
        {"ts": int(t), **{k: float(v) for k, v in zip(s.rows[0], col, strict=True)}}
        for t, col in zip(frame.ts_ms, frame.values.T, strict=True)
    ]
    payload = orjson.dumps({"readings": rows})
    # The scenario's clock, so that its (past) readings are neither too old nor in the future.
    clock_ms = s.ts(len(s.rows) - 1) + 1000
    _, written = await ingest(
        conn,
        SourceDirectory(),
        [(f"machines/{s.machine_id}/telemetry", payload)],
        limits=Limits(),
        clock_ms=clock_ms,
        pending_source=pending_source,
    )
    assert written.readings_inserted == len(frame)
    return frame


async def register(conn: asyncpg.Connection, machine_id: str) -> None:
    await add_machine(conn, machine_id, "excavator", "C-diag", Site(*SITE))


async def test_a_batch_diagnosed_twice_stores_each_alarm_once(pool: asyncpg.Pool) -> None:
    machine_id = unique("DG")
    s = overheating(machine_id, start_s=-3600.0)
    async with pool.acquire() as conn:
        await register(conn, machine_id)
        frame = await store(conn, s, 0, len(s.rows))
    d = diagnoser(pool)
    first = await d.diagnose(frame)
    again = await d.diagnose(frame)
    assert [c.transition.value for c in first if c.fault == ENGINE_OVERHEAT] == [
        "raised",
        "cleared",
    ]
    assert again == []
    async with pool.acquire() as conn:
        stored = await alarm_store.list_alarms(
            conn, alarm_store.AlarmFilter(machine_id=machine_id), before_id=None, limit=10
        )
    assert sorted(a.fault for a in stored) == sorted({c.fault for c in first})
    assert len(stored) == len(first) // 2  # one episode per fault, raised and cleared


async def test_a_restarted_diagnoser_continues_from_the_store(pool: asyncpg.Pool) -> None:
    """Cut mid-episode: a fresh diagnoser (a restarted worker) rebuilds the machine's state
    from the store and ends with the same alarms as one that ran straight through."""
    straight, restarted = unique("DS"), unique("DR")
    streams = {m: overheating(m, start_s=-3600.0) for m in (straight, restarted)}
    for s in streams.values():
        s.add(60, oil_pressure_kpa=40.0)  # and low oil pressure at the very end, still open
    async with pool.acquire() as conn:
        for m in streams:
            await register(conn, m)
    cut = 200  # inside the overheat episode
    one = diagnoser(pool)
    for lo, hi in ((0, cut), (cut, len(streams[straight].rows))):
        async with pool.acquire() as conn:
            frame = await store(conn, streams[straight], lo, hi)
        await one.diagnose(frame)
    async with pool.acquire() as conn:
        frame = await store(conn, streams[restarted], 0, cut)
    await diagnoser(pool).diagnose(frame)
    async with pool.acquire() as conn:
        frame = await store(conn, streams[restarted], cut, len(streams[restarted].rows))
    await diagnoser(pool).diagnose(frame)  # a new worker: knows nothing but the store

    def shape(alarms: list[alarm_store.Alarm]) -> list[tuple[object, ...]]:
        return sorted(
            (a.fault, a.state, a.raised_at, a.cleared_at, a.readings, a.worst_value) for a in alarms
        )

    async with pool.acquire() as conn:
        found = {
            m: await alarm_store.list_alarms(
                conn, alarm_store.AlarmFilter(machine_id=m), before_id=None, limit=10
            )
            for m in streams
        }
    assert {a.fault for a in found[straight]} >= {ENGINE_OVERHEAT, LOW_OIL_PRESSURE}
    assert {a.state for a in found[straight] if a.fault == LOW_OIL_PRESSURE} == {"open"}
    assert shape(found[restarted]) == shape(found[straight])


async def test_silence_counts_only_while_the_gateway_hears_every_machine(
    pool: asyncpg.Pool,
) -> None:
    """A machine last heard running long ago is silent only once the gateway has heard the
    fleet for the whole timeout: not while it is cut off, nor just after it reconnected."""
    machine_id = unique("SI")
    s = Stream(machine_id, start_s=-3600.0).add(30)
    async with pool.acquire() as conn:
        await register(conn, machine_id)
        frame = await store(conn, s, 0, len(s.rows))
    d = diagnoser(pool)
    await d.diagnose(frame)
    timeout_s = d.engine.rules.for_machine("excavator", "excavator").machine_silent.timeout_s

    async def silent() -> list[str]:
        await d.check_silence()
        async with pool.acquire() as conn:
            found = await alarm_store.list_alarms(
                conn, alarm_store.AlarmFilter(machine_id=machine_id), before_id=None, limit=10
            )
        return [a.state for a in found if a.fault == MACHINE_SILENT]

    d.heard_since = lambda: None  # cut off from the broker, or the store holds its batches
    assert await silent() == []
    d.heard_since = lambda: time.monotonic() - timeout_s + 5.0  # reconnected recently
    assert await silent() == []
    d.heard_since = lambda: time.monotonic() - timeout_s - 1.0
    assert await silent() == ["open"]
