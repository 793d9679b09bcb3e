"""Machines handed over between gateway workers: when a worker's state for one can be trusted.

With several workers on one shared subscription, a machine's readings reach whichever worker
the broker picks. A worker's engine state for a machine is right only while no other worker
diagnosed it since; `store.diagnosis_marks` records who did, and up to which reading. This
module holds the two decisions the diagnoser takes from it, and never runs the engine itself:

* `claim`, in the diagnosis transaction: lock the batch's machines' marks, forget the machines
  another worker diagnosed since (or that nobody marked), and say up to when each must be
  rebuilt from the store, so that readings older than what was diagnosed elsewhere count as
  late;
* `silent_in_store`: a machine this engine thinks silent may be reporting to another worker;
  the store's newest reading decides.

A diagnoser alone (no shared group, but a `source`) uses the marks only across its own restarts:
`mark_changed` in the transaction that stores a batch's alarm changes, `floor_alone` when it
rebuilds a machine. A batch it diagnosed and had not yet taken off `diagnosis_pending` when it
died comes round again on restart; rebuilt only up to the batch's first reading with the
episodes open now, its older readings would clear them and its newer ones raise them a second
time. Rebuilt up to the mark, the batch is late and finds its own episodes. Only batches that
changed a machine's alarms mark it: up to the next such batch the store's episodes stay what
they were, so readings after the mark diagnosed again live find them unchanged too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import asyncpg
import numpy as np

from diagnosis.engine import Engine
from diagnosis.events import AlarmEvent
from diagnosis.frame import Frame
from telematics.base.db import acquire, with_retry
from telematics.base.errors import StoreUnavailableError
from telematics.store import diagnosis_marks as marks_store

_NO_MARK = marks_store.Mark("", 0)


def per_machine(frame: Frame, reduce: np.ufunc) -> dict[str, int]:
    """Per machine of `frame`, its first (`np.minimum`) or last (`np.maximum`) reading time."""
    start = np.iinfo(np.int64).max if reduce is np.minimum else np.iinfo(np.int64).min
    out = np.full(len(frame.machine_ids), start, np.int64)
    reduce.at(out, frame.machine_idx, frame.ts_ms)
    return dict(zip(frame.machine_ids, out.tolist(), strict=True))


async def claim(
    conn: asyncpg.Connection, engine: Engine, frame: Frame, source: str
) -> dict[str, int]:
    """Lock the batch's machines for this transaction and forget those this worker cannot
    vouch for (diagnosed elsewhere since, or never marked).

    Returns:
        Per machine to be rebuilt that was diagnosed before, the time its rebuild must reach
        (one past the latest reading diagnosed): its readings up to then are late here. That
        is every machine the engine does not know now, not only those forgotten here: after a
        restart under the same client id the mark is this worker's own, and a batch the dead
        process diagnosed but had not yet taken off `diagnosis_pending` comes round again; rebuilt
        only up to its first reading with the episodes open now, its older readings would clear
        them and its newer ones raise them a second time.
    """
    marks = await marks_store.claim(conn, frame.machine_ids)
    stale = [m for m in frame.machine_ids if marks.get(m, _NO_MARK).source != source]
    engine.forget(stale)
    return {m: marks[m].ts_ms + 1 for m in engine.unknown(frame.machine_ids) if m in marks}


async def mark(conn: asyncpg.Connection, frame: Frame, source: str) -> None:
    """Record, in the diagnosis transaction, that `source` diagnosed the batch's machines."""
    await marks_store.mark(conn, per_machine(frame, np.maximum), source)


async def floor_alone(conn: asyncpg.Connection, engine: Engine, frame: Frame) -> dict[str, int]:
    """Per machine of the batch the engine does not know and that was marked, the time its
    rebuild must reach (one past the latest reading marked diagnosed); a diagnoser alone.
    """
    unknown = engine.unknown(frame.machine_ids)
    if not unknown:
        return {}
    return {m: t + 1 for m, t in (await marks_store.marked_ts_ms(conn, unknown)).items()}


async def mark_changed(
    conn: asyncpg.Connection, frame: Frame, events: Sequence[AlarmEvent], source: str
) -> None:
    """Record, in the transaction storing a diagnoser alone's alarm changes, that the machines
    they are about were diagnosed up to the batch's latest reading of each.
    """
    changed = {e.machine_id for e in events}
    last = per_machine(frame, np.maximum)
    await marks_store.mark(conn, {m: t for m, t in last.items() if m in changed}, source)


async def silent_in_store(
    pool: asyncpg.Pool,
    engine: Engine,
    events: Sequence[AlarmEvent],
    stop: asyncio.Event | None,
) -> list[AlarmEvent]:
    """Of silence events, those the store agrees with. A machine whose newest stored reading
    is newer than the engine's last one reports to another worker: its state here is stale
    and is forgotten (rebuilt if it comes back to this worker), and it is not silent.
    """
    ids = [e.machine_id for e in events]

    async def once() -> dict[str, int]:
        async with acquire(pool) as conn:
            return await marks_store.latest_ts_ms(conn, ids)

    try:
        latest = await with_retry(once, what="silence check", stop=stop)
    except StoreUnavailableError:  # stopping with the database away
        engine.forget(ids)
        return []
    last = engine.last_ts_ms(ids)
    elsewhere = [m for m in ids if latest.get(m, -1) > last[m]]
    engine.forget(elsewhere)
    return [e for e in events if e.machine_id not in elsewhere]
