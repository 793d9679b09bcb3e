"""One diagnoser alone (no shared group) killed between diagnosing batches and taking them off
`diagnosis_pending`: the restart's catch-up feeds them to a fresh engine again, and the alarms
end up as if the process had never died, neither doubled nor lost.

Each scenario's machine is compared with a twin whose readings one diagnoser saw straight.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import asyncpg

from diagnosis.engine import Engine
from diagnosis.events import ENGINE_OVERHEAT
from diagnosis.knowledge import KnowledgeBase
from diagnosis.rules import RuleBook
from telematics.base.metrics import Metrics
from telematics.services.diagnose import Diagnoser, DiagnoserConfig
from telematics.store import alarms as alarm_store
from tests.conftest import unique
from tests.diagnosis.test_engine import Stream
from tests.telematics.test_diagnose import overheating, register, store
from tests.telematics.test_workers_diagnosis import alarms_of, shape, worker

# Of `overheating`: 40 warm readings; 80 warm, then the overheat's onset; the rest of the
# overheat and its cooling down (the clear).
_EARLY, _ONSET, _REST = (0, 40), (40, 140), (140, 480)


async def straight_twin(pool: asyncpg.Pool) -> list[tuple[object, ...]]:
    """The alarms of the same readings in the same batches diagnosed by one diagnoser that
    never died."""
    twin = unique("RT")
    s = overheating(twin, start_s=-3600.0)
    async with pool.acquire() as conn:
        await register(conn, twin)
        frames = [await store(conn, s, lo, hi) for lo, hi in (_EARLY, _ONSET, _REST)]
    one = worker(pool, None)
    for frame in frames:
        await one.diagnose(frame)
    return shape(await alarms_of(pool, twin))


async def restart(pool: asyncpg.Pool, source: str) -> list[alarm_store.AlarmChange]:
    """A fresh process under the same client id: catches up, returns what it published."""
    published: list[alarm_store.AlarmChange] = []

    def notify(changes: Sequence[alarm_store.AlarmChange]) -> None:
        published.extend(changes)

    config = DiagnoserConfig(source=source)
    d = Diagnoser(pool, Engine(RuleBook.load()), KnowledgeBase.load(), Metrics(), config, notify)
    stop = asyncio.Event()
    stop.set()  # catch up, and return once nothing is queued
    await asyncio.wait_for(d.run(stop), 60)
    left = await pool.fetchval("SELECT count(*) FROM diagnosis_pending WHERE source = $1", source)
    assert left == 0
    return published


async def scenario(
    pool: asyncpg.Pool, diagnosed: int, pending: Sequence[tuple[int, int]] = (_ONSET, _REST)
) -> tuple[str, str, list[str]]:
    """Early readings diagnosed and taken off; the `pending` batches committed pending, the
    first `diagnosed` of them diagnosed by the process before it was killed.

    Returns: the machine, the source, and the overheat transitions the dead process stored.
    """
    machine_id, source = unique("RP"), unique("gw")
    s: Stream = overheating(machine_id, start_s=-3600.0)
    async with pool.acquire() as conn:
        await register(conn, machine_id)
        early = await store(conn, s, *_EARLY)
        held = [await store(conn, s, lo, hi, pending_source=source) for lo, hi in pending]
    first = worker(pool, source, shared=False)
    await first.diagnose(early)
    stored: list[str] = []
    for frame in held[:diagnosed]:
        changes = await first.diagnose(frame)
        stored += [c.transition.value for c in changes if c.fault == ENGINE_OVERHEAT]
    return machine_id, source, stored


async def test_a_batch_diagnosed_before_the_kill_is_diagnosed_again_to_no_effect(
    pool: asyncpg.Pool,
) -> None:
    """The onset batch was diagnosed (the overheat raised) and is still pending. Rebuilt from the
    readings before the batch with the episode open now, its warm readings would clear the
    episode and its onset raise a second one."""
    machine_id, source, stored = await scenario(pool, diagnosed=1, pending=[_ONSET])
    assert stored == ["raised"]
    before = shape(await alarms_of(pool, machine_id))
    assert [(c.fault, c.transition.value) for c in await restart(pool, source)] == []
    overheats = [x for x in await alarms_of(pool, machine_id) if x.fault == ENGINE_OVERHEAT]
    assert [x.state for x in overheats] == ["open"]
    assert shape(await alarms_of(pool, machine_id)) == before


async def test_a_batch_never_diagnosed_raises_its_alarm_on_the_restart(pool: asyncpg.Pool) -> None:
    machine_id, source, stored = await scenario(pool, diagnosed=0)
    assert stored == []
    published = await restart(pool, source)
    assert [c.transition.value for c in published if c.fault == ENGINE_OVERHEAT] == [
        "raised",
        "cleared",
    ]
    assert shape(await alarms_of(pool, machine_id)) == await straight_twin(pool)


async def test_the_clear_after_a_batch_diagnosed_again_is_at_its_reading_time(
    pool: asyncpg.Pool,
) -> None:
    """The onset batch was diagnosed before the kill, the next one (the clear) never was: the
    first changes nothing again, and the second clears the episode when its readings did, not
    later (a clear the late path would drop, the episode being open)."""
    machine_id, source, stored = await scenario(pool, diagnosed=1)
    assert stored == ["raised"]
    published = await restart(pool, source)
    assert [c.transition.value for c in published if c.fault == ENGINE_OVERHEAT] == ["cleared"]
    assert shape(await alarms_of(pool, machine_id)) == await straight_twin(pool)
