"""Which worker diagnosed each machine last (`diagnosis_marks`), for several gateway workers.

A worker's engine state for a machine is a cache of what it diagnosed itself. With a shared
subscription the machine's next message may go to any worker, so before a batch a worker takes
the machines' row locks on their marks (one diagnosis of a machine at a time, across processes)
and reads them: a machine last diagnosed by another worker has moved, and its state must be
rebuilt from the store. The mark is rewritten only when the worker changes, so a machine that
stays on one worker (EMQX's hash strategies) is never rebuilt. The mark also holds the latest
reading time diagnosed: a worker rebuilding a machine replays the store up to it, so that its
own older readings (a batch that waited while another worker diagnosed newer ones) are late.

Everything here runs in the caller's transaction; the locks end with it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import asyncpg

# Row locks on the marks, not advisory locks: a batch may hold a thousand machines, and
# advisory locks share one lock table of max_locks_per_transaction x max_connections slots
# (6,400 by default) across the whole server; row locks live in the rows. A machine seen for the
# first time gets its row first (a placeholder, ts_ms -1, source '' matching no worker), so
# that every machine of the batch has a row to lock. Both statements go in machine id order, so
# two workers with overlapping batches wait for each other instead of deadlocking.
_ENSURE = """
INSERT INTO diagnosis_marks (machine_id, source, ts_ms)
SELECT m, '', -1 FROM unnest($1::text[]) AS m ORDER BY m
ON CONFLICT (machine_id) DO NOTHING
"""
_LOCK = """
SELECT machine_id, source, ts_ms FROM diagnosis_marks
WHERE machine_id = ANY($1::text[]) ORDER BY machine_id FOR UPDATE
"""
_WRITE = """
INSERT INTO diagnosis_marks (machine_id, source, ts_ms)
SELECT m, $3, t FROM unnest($1::text[], $2::bigint[]) AS u(m, t)
ON CONFLICT (machine_id) DO UPDATE
SET source = EXCLUDED.source, ts_ms = GREATEST(diagnosis_marks.ts_ms, EXCLUDED.ts_ms),
    marked_at = now()
"""
_MARKED = """
SELECT machine_id, ts_ms FROM diagnosis_marks WHERE machine_id = ANY($1::text[]) AND source <> ''
"""
_LATEST = """
SELECT machine_id, (extract(epoch FROM max(ts)) * 1000)::bigint AS ts_ms FROM readings
WHERE machine_id = ANY($1::text[]) GROUP BY machine_id
"""


@dataclass(frozen=True, slots=True)
class Mark:
    """Who diagnosed a machine last, and its latest reading time diagnosed (epoch ms)."""

    source: str
    ts_ms: int


async def claim(conn: asyncpg.Connection, machine_ids: Sequence[str]) -> dict[str, Mark]:
    """Lock the machines' marks for this transaction and return them (a machine never marked
    has none: its placeholder row is left out).
    """
    ids = sorted(set(machine_ids))
    await conn.execute(_ENSURE, ids)
    rows = await conn.fetch(_LOCK, ids)
    return {r["machine_id"]: Mark(r["source"], int(r["ts_ms"])) for r in rows if r["source"]}


async def mark(conn: asyncpg.Connection, last_ts_ms: Mapping[str, int], source: str) -> None:
    """Record `source` as the worker that diagnosed the machines last, up to `last_ts_ms`."""
    if last_ts_ms:
        ids = sorted(last_ts_ms)
        await conn.execute(_WRITE, ids, [last_ts_ms[m] for m in ids], source)


async def marked_ts_ms(conn: asyncpg.Connection, machine_ids: Sequence[str]) -> dict[str, int]:
    """The latest reading time marked diagnosed for each machine that has a mark, without
    locking it (one diagnoser alone).
    """
    rows = await conn.fetch(_MARKED, list(machine_ids))
    return {r["machine_id"]: int(r["ts_ms"]) for r in rows}


async def latest_ts_ms(conn: asyncpg.Connection, machine_ids: Sequence[str]) -> dict[str, int]:
    """The time of each machine's latest stored reading, epoch milliseconds."""
    rows = await conn.fetch(_LATEST, list(machine_ids))
    return {r["machine_id"]: int(r["ts_ms"]) for r in rows}
