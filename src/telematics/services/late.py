"""Engine state from the store, and the diagnosis of late readings.

`restore` rebuilds machines' engine state from their stored readings before a time and their
open episodes. `late_events` diagnoses readings older than what their machine already
reported (a device's store-and-forward, a replayed dead letter), which the live engine skips
because its state has moved past them: a scratch engine is restored from the readings before
them, as the machine stood then, and runs over them with events on. Of what it finds, only the
faults with no episode of their own in the store over that span (and none open now) are kept, so
a late reading adds the alarm nobody saw, at its reading time, and never a second copy of one
the live stream already raised.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import asyncpg

from diagnosis.anomaly import AnomalyScorer
from diagnosis.engine import Engine
from diagnosis.events import AlarmEvent
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
    covered = await alarm_queries.episodes_over(conn, late.machine_ids, _at(first_ms), _at(last_ms))
    return [e for e in events if (e.machine_id, e.fault) not in covered]
