"""Several gateway workers on one stream: a machine's readings reach whichever worker the broker
picks, and each worker's diagnosis of it is what one worker alone would have found.

Two diagnosers with engines of their own stand for two workers (`shared` on, distinct sources)
on the real store; the processes around them are proven in test_workers.py.
"""

from __future__ import annotations

import asyncio
import time

import asyncpg

from diagnosis.engine import Engine
from diagnosis.events import ENGINE_OVERHEAT, MACHINE_SILENT
from diagnosis.knowledge import KnowledgeBase
from diagnosis.rules import RuleBook
from telematics.base.metrics import Metrics
from telematics.services.diagnose import Diagnoser, DiagnoserConfig
from telematics.store import alarms as alarm_store
from tests.conftest import unique
from tests.diagnosis.test_engine import T0, Stream, frame_of
from tests.telematics.test_diagnose import register, store


def worker(pool: asyncpg.Pool, source: str | None, *, shared: bool = True) -> Diagnoser:
    config = DiagnoserConfig(source=source, shared=shared and source is not None)
    return Diagnoser(pool, Engine(RuleBook.load()), KnowledgeBase.load(), Metrics(), config)


def two_episodes(machine_id: str) -> Stream:
    """Warm, overheating, cooled, overheating again, cooled: two episodes of one fault."""
    s = Stream(machine_id, start_s=-3600.0)
    s.add(120)
    s.add(180, coolant_temp_c=109.0)
    s.add(180, coolant_temp_c=88.0)
    s.add(180, coolant_temp_c=109.0)
    s.add(180, coolant_temp_c=88.0)
    return s


def shape(alarms: list[alarm_store.Alarm]) -> list[tuple[object, ...]]:
    return sorted((a.fault, a.state, a.raised_at, a.cleared_at, a.readings) for a in alarms)


async def alarms_of(pool: asyncpg.Pool, machine_id: str) -> list[alarm_store.Alarm]:
    async with pool.acquire() as conn:
        return await alarm_store.list_alarms(
            conn, alarm_store.AlarmFilter(machine_id=machine_id), before_id=None, limit=20
        )


async def test_a_machine_moving_between_workers_is_diagnosed_as_by_one(
    pool: asyncpg.Pool,
) -> None:
    """Chunks of a minute go to workers A and B in turn (a round-robin shared subscription):
    a fault that starts on A and goes on on B is one episode, cleared once, and the second
    episode, starting on A again while A last saw the first one open, is neither lost nor
    doubled: the same alarms as one worker that saw everything."""
    alone, moving = unique("WA"), unique("WM")
    streams = {m: two_episodes(m) for m in (alone, moving)}
    async with pool.acquire() as conn:
        for m in streams:
            await register(conn, m)
    one = worker(pool, None)
    a, b = worker(pool, unique("gw-a")), worker(pool, unique("gw-b"))
    n = len(streams[alone].rows)
    for i, lo in enumerate(range(0, n, 60)):
        async with pool.acquire() as conn:
            straight = await store(conn, streams[alone], lo, lo + 60)
            turn = await store(conn, streams[moving], lo, lo + 60)
        await one.diagnose(straight)
        await (a if i % 2 == 0 else b).diagnose(turn)
    expected = await alarms_of(pool, alone)
    overheats = [x.state for x in expected if x.fault == ENGINE_OVERHEAT]
    assert overheats == ["cleared", "cleared"]
    assert shape(await alarms_of(pool, moving)) == shape(expected)


async def test_a_machine_reporting_to_another_worker_is_not_silent_here(
    pool: asyncpg.Pool,
) -> None:
    """Worker A saw a machine once; since, it reports to B (a hash strategy keeps it there).
    A's engine would call it silent; the store has newer readings, so A forgets it instead,
    and the silence B finds is dated from B's last reading."""
    machine_id = unique("WS")
    s = Stream(machine_id, start_s=-3600.0).add(120)
    async with pool.acquire() as conn:
        await register(conn, machine_id)
        early = await store(conn, s, 0, 60)
        late = await store(conn, s, 60, 120)
    a, b = worker(pool, unique("gw-a")), worker(pool, unique("gw-b"))
    await a.diagnose(early)
    await b.diagnose(late)
    # Both have heard the fleet since before the machine's readings: silence counts from them.
    heard = time.monotonic() - (time.time() - T0 / 1000 + 3600.0)
    a.heard_since = b.heard_since = lambda: heard
    await a.check_silence()
    assert a.engine.unknown([machine_id]) == [machine_id]
    assert [x for x in await alarms_of(pool, machine_id) if x.fault == MACHINE_SILENT] == []
    await b.check_silence()
    silent = [x for x in await alarms_of(pool, machine_id) if x.fault == MACHINE_SILENT]
    timeout_s = b.engine.rules.for_machine("", "excavator").machine_silent.timeout_s
    assert len(silent) == 1
    assert silent[0].raised_at.timestamp() * 1000 == s.ts(119) + timeout_s * 1000


async def test_a_batch_diagnosed_after_newer_ones_elsewhere_adds_no_second_episode(
    pool: asyncpg.Pool,
) -> None:
    """Worker A committed a batch in the middle of an overheat and was slow to diagnose it (a
    kill and restart, say); worker B meanwhile diagnosed the readings after it and cleared the
    episode. A's batch is older than what was diagnosed: late, so it finds the episode there
    and opens no second one."""
    machine_id = unique("WO")
    s = Stream(machine_id, start_s=-3600.0)
    s.add(120).add(180, coolant_temp_c=109.0).add(180, coolant_temp_c=88.0)
    async with pool.acquire() as conn:
        await register(conn, machine_id)
        warm = await store(conn, s, 0, 120)
        hot = await store(conn, s, 120, 240)
        held = await store(conn, s, 240, 300)  # A's, still hot, diagnosed last
        cool = await store(conn, s, 300, 480)
    a, b = worker(pool, unique("gw-a")), worker(pool, unique("gw-b"))
    await a.diagnose(warm)
    await b.diagnose(hot)
    await b.diagnose(cool)
    assert await a.diagnose(held) == []
    overheats = [x for x in await alarms_of(pool, machine_id) if x.fault == ENGINE_OVERHEAT]
    assert [x.state for x in overheats] == ["cleared"]


async def test_two_workers_diagnosing_the_same_machines_at_once_take_turns(
    pool: asyncpg.Pool,
) -> None:
    """Batches of the same twenty machines on two workers at the same moment, over and over:
    they wait for each other on the machines' marks (no deadlock, no error), and the marks end
    with whoever diagnosed each machine's newest readings."""
    streams = [Stream(unique("WT"), start_s=-3600.0).add(120) for _ in range(20)]
    async with pool.acquire() as conn:
        for s in streams:
            await register(conn, s.machine_id)
    a, b = worker(pool, unique("gw-a")), worker(pool, unique("gw-b"))
    for lo in range(0, 120, 20):
        async with pool.acquire() as conn:
            for s in streams:
                await store(conn, s, lo, lo + 20)
        # One batch of all twenty machines each, at once: older readings on A, newer on B.
        await asyncio.gather(
            a.diagnose(frame_of(*streams, lo=lo, hi=lo + 10)),
            b.diagnose(frame_of(*reversed(streams), lo=lo + 10, hi=lo + 20)),
        )
    ids = [s.machine_id for s in streams]
    marks = await pool.fetch("SELECT ts_ms FROM diagnosis_marks WHERE machine_id = ANY($1)", ids)
    assert sorted(r["ts_ms"] for r in marks) == sorted(s.ts(119) for s in streams)


async def test_an_onset_diagnosed_after_the_episode_was_opened_elsewhere_adds_no_second(
    pool: asyncpg.Pool,
) -> None:
    """Worker A committed the batch where an overheat begins and was killed before diagnosing
    it; worker B took the machine over, rebuilt it from the store (A's batch included) and
    opened the episode at its own first reading, after A's batch, then cleared it. A, restarted,
    diagnoses its batch late: the overheat it finds there goes on past the batch into B's
    episode, so it is that episode, not a second one (the two-process test saw two)."""
    machine_id = unique("WN")
    s = Stream(machine_id, start_s=-3600.0)
    s.add(120).add(180, coolant_temp_c=109.0).add(180, coolant_temp_c=88.0)
    async with pool.acquire() as conn:
        await register(conn, machine_id)
        warm = await store(conn, s, 0, 120)
        onset = await store(conn, s, 120, 140)  # A's, committed, not diagnosed
        after = [await store(conn, s, lo, lo + 20) for lo in range(140, 480, 20)]
    source_a = unique("gw-a")
    a, b = worker(pool, source_a), worker(pool, unique("gw-b"))
    await a.diagnose(warm)
    for frame in after:
        await b.diagnose(frame)
    overheats = [x for x in await alarms_of(pool, machine_id) if x.fault == ENGINE_OVERHEAT]
    assert [x.state for x in overheats] == ["cleared"]
    restarted = worker(pool, source_a)
    assert await restarted.diagnose(onset) == []
    overheats = [x for x in await alarms_of(pool, machine_id) if x.fault == ENGINE_OVERHEAT]
    assert [x.state for x in overheats] == ["cleared"]


async def test_a_late_overheat_that_cleared_before_a_later_episode_is_its_own(
    pool: asyncpg.Pool,
) -> None:
    """The other side of following a late fault past its readings: an overheat in late readings
    whose readings after them cool down (cleared, by the rule, long before the next episode the
    live stream raised) is an episode nobody saw, raised at its own reading time."""
    machine_id = unique("WL")
    s = Stream(machine_id, start_s=-3600.0)
    s.add(120).add(40, coolant_temp_c=109.0).add(100, coolant_temp_c=88.0)
    s.add(80, coolant_temp_c=109.0).add(140, coolant_temp_c=88.0)
    async with pool.acquire() as conn:
        await register(conn, machine_id)
        warm = await store(conn, s, 0, 120)
        rest = await store(conn, s, 160, 480)
        held = await store(conn, s, 120, 160)  # arrives late: store-and-forward, a replay
    live = worker(pool, None)
    await live.diagnose(warm)
    await live.diagnose(rest)
    assert [x.state for x in await alarms_of(pool, machine_id) if x.fault == ENGINE_OVERHEAT] == [
        "cleared"
    ]
    changes = await live.diagnose(held)
    raised = [c for c in changes if c.fault == ENGINE_OVERHEAT]
    assert [c.transition.value for c in raised] == ["raised"]
    assert s.ts(120) <= raised[0].ts.timestamp() * 1000 < s.ts(160)
    overheats = [x for x in await alarms_of(pool, machine_id) if x.fault == ENGINE_OVERHEAT]
    assert len(overheats) == 2


async def test_a_batch_diagnosed_again_after_a_restart_under_the_same_id_changes_nothing(
    pool: asyncpg.Pool,
) -> None:
    """Worker A diagnosed a batch (warm readings, then an overheat's onset) and was killed
    before taking it off `diagnosis_pending`; restarted under the same client id, it diagnoses
    the batch again with an empty engine. Rebuilt only up to the batch's first reading with the
    episode open, its warm readings would clear the episode and its onset raise a second one
    (the two-process test saw that); rebuilt up to the latest reading its mark says was
    diagnosed, the batch is late and finds its own episode."""
    machine_id = unique("WR")
    s = Stream(machine_id, start_s=-3600.0)
    s.add(120).add(180, coolant_temp_c=109.0)
    async with pool.acquire() as conn:
        await register(conn, machine_id)
        early = await store(conn, s, 0, 40)
        held = await store(conn, s, 40, 140)  # 80 warm readings, then the onset
    source = unique("gw-a")
    first = worker(pool, source)
    await first.diagnose(early)
    raised = await first.diagnose(held)
    assert [c.transition.value for c in raised if c.fault == ENGINE_OVERHEAT] == ["raised"]
    restarted = worker(pool, source)
    assert await restarted.diagnose(held) == []
    overheats = [x for x in await alarms_of(pool, machine_id) if x.fault == ENGINE_OVERHEAT]
    assert [x.state for x in overheats] == ["open"]
