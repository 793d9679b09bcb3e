"""Engine state from the store, and the diagnosis of late readings.

`restore` rebuilds machines' engine state from their stored readings before a time and their
open episodes. `late_events` diagnoses readings older than what their machine already
reported (a device's store-and-forward, a replayed dead letter), which the live engine skips
because its state has moved past them: a scratch engine is restored from the readings before
them, as the machine stood then, and runs over them with events on. Of what it finds, only the
faults with no episode of their own in the store over that span (and none open now) are kept, so
a late reading adds the alarm nobody saw, at its reading time, and never a second copy of one
the live stream already raised. A fault still active at the last late reading goes on into the
readings stored after them: the scratch engine runs on over those until it clears, and an
episode anywhere in that longer span is the same one. That is the case of a worker killed
between committing the batch where a fault began and diagnosing it: the worker that took the
machine over opened the episode at its own first reading, after the batch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import asyncpg

from diagnosis.anomaly import AnomalyScorer
from diagnosis.engine import Engine
from diagnosis.events import AlarmEvent, Transition
from diagnosis.frame import Frame, MachineInfo
from diagnosis.rules import RuleBook
from telematics.store import alarm_queries
from telematics.store import alarms as alarm_store
from telematics.store import readings as readings_store
from telematics.store.registry import Machine, machines_by_id


def _at(ts_ms: int) -> datetime:
    return datetime.fromtimestamp(ts_ms / 1000, UTC)


async def restore(
    conn: asyncpg.Connection,
    engine: Engine,
    machine_ids: Sequence[str],
    before_ms: int,
    history_s: float,
    *,
    with_open_episodes: bool = True,
) -> None:
    """Register machines in `engine` and replay their readings of the `history_s` before
    `before_ms` (events off); then, if asked, take their open episodes from the store.
    """
    machines = await machines_by_id(conn, list(machine_ids))
    infos = [_info(m) for m in machines]
    ids = [i.machine_id for i in infos]
    start, end = _at(before_ms - round(history_s * 1000)), _at(before_ms - 1)
    past = await readings_store.history(conn, ids, start, end)
    history = Frame.build(past.machine_ids, past.ts_ms, past.values, past.dtcs)
    open_faults = await alarm_store.open_faults(conn, ids) if with_open_episodes else {}
    engine.restore(infos, history, open_faults)


async def restore_each(
    conn: asyncpg.Connection, engine: Engine, before_ms: dict[str, int], history_s: float
) -> None:
    """Like `restore`, each machine replayed up to its own `before_ms` (its batch's first
    reading): readings another worker stored between two machines' first readings are then
    part of the state, not skipped.
    """
    machines = await machines_by_id(conn, list(before_ms))
    infos = [_info(m) for m in machines]
    known = {i.machine_id: before_ms[i.machine_id] for i in infos}
    past = await readings_store.history_before(conn, known, round(history_s * 1000))
    history = Frame.build(past.machine_ids, past.ts_ms, past.values, past.dtcs)
    engine.restore(infos, history, await alarm_store.open_faults(conn, list(known)))


def _info(m: Machine) -> MachineInfo:
    return MachineInfo(
        m.machine_id,
        m.model,
        m.site.lat if m.site else None,
        m.site.lon if m.site else None,
        m.site.radius_m if m.site else None,
        machine_class=m.machine_class,
    )


async def late_events(
    conn: asyncpg.Connection,
    late: Frame,
    rules: RuleBook,
    scorers: tuple[Mapping[str, AnomalyScorer], Mapping[str, AnomalyScorer]],
    history_s: float,
) -> list[AlarmEvent]:
    """The alarm events late readings show that the store has no episode for.

    Args:
        conn: A connection.
        late: The late readings.
        rules: The live engine's rule book.
        scorers: The live engine's anomaly scorers, by designation and by class.
        history_s: How far back the scratch engine is restored.
    """
    scratch = Engine(rules)
    scratch.set_models(*scorers)
    first_ms, last_ms = int(late.ts_ms.min()), int(late.ts_ms.max())
    await restore(conn, scratch, late.machine_ids, first_ms, history_s, with_open_episodes=False)
    if scratch.unknown(late.machine_ids):
        return []  # a machine deregistered meanwhile: nothing to say of it
    events = scratch.process(late)
    if not events:
        return []
    ends = {(e.machine_id, e.fault): last_ms for e in events}
    ongoing = {
        (e.machine_id, e.fault)
        for e in _last_of_each(events)
        if e.transition is not Transition.CLEARED
    }
    if ongoing:
        ends.update(await _ongoing_until(conn, scratch, late, ongoing, round(history_s * 1000)))
    spans = await alarm_queries.episodes_over(
        conn, late.machine_ids, _at(first_ms), _at(max(ends.values()))
    )
    covered = {
        (x.machine_id, x.fault)
        for x in spans
        if x.cleared_at is None
        or (
            x.raised_at <= _at(ends.get((x.machine_id, x.fault), last_ms))
            and x.cleared_at >= _at(first_ms)
        )
    }
    return [e for e in events if (e.machine_id, e.fault) not in covered]


def _last_of_each(events: Sequence[AlarmEvent]) -> list[AlarmEvent]:
    last: dict[tuple[str, str], AlarmEvent] = {}
    for e in events:  # ordered by (machine, time)
        last[(e.machine_id, e.fault)] = e
    return list(last.values())


async def _ongoing_until(
    conn: asyncpg.Connection,
    scratch: Engine,
    late: Frame,
    ongoing: set[tuple[str, str]],
    history_ms: int,
) -> dict[tuple[str, str], int]:
    """Until when the faults still active at the end of the late readings go on, from the
    stored readings after them (diagnosed already, live or by another worker): up to their
    clear, or at most `history_ms` on. An episode the store has anywhere in that span is the
    same one, opened later by whoever diagnosed the readings after these without them (a
    worker that took the machine over while these waited to be diagnosed).
    """
    last_of: dict[str, int] = {}
    for m, t in zip(late.machine_idx.tolist(), late.ts_ms.tolist(), strict=True):
        machine = late.machine_ids[m]
        last_of[machine] = max(t, last_of.get(machine, t))
    ids = sorted({m for m, _ in ongoing})
    start = min(last_of[m] for m in ids) + 1
    end = max(last_of[m] for m in ids) + history_ms
    past = await readings_store.history(conn, ids, _at(start), _at(end))
    after = Frame.build(past.machine_ids, past.ts_ms, past.values, past.dtcs)
    ends = {pair: last_of[pair[0]] + history_ms for pair in ongoing}
    if len(after):
        for e in scratch.process(after):  # each machine's readings up to its last are skipped
            pair = (e.machine_id, e.fault)
            if e.transition is Transition.CLEARED and pair in ongoing:
                ends[pair] = min(ends[pair], e.ts_ms)
    return ends
