"""Which worker diagnosed each machine last (`diagnosis_marks`), for several gateway workers.

A worker's engine state for a machine is a cache of what it diagnosed itself. With a shared
subscription the machine's next message may go to any worker, so before a batch a worker takes
the machines' advisory locks (one diagnosis of a machine at a time, across processes) and reads
their marks: a machine last diagnosed by another worker has moved, and its state must be
rebuilt from the store. The mark is rewritten only when the worker changes, so a machine that
stays on one worker (EMQX's hash strategies) costs one read a batch and no write.

Everything here runs in the caller's transaction; the locks end with it.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

# Keys of the per-machine advisory locks: hashtextextended(machine_id, seed). The seed keeps
# them apart from other advisory locks of the schema (migrations, jobs) by construction.
_LOCK_SEED = 0x0D1A_6017

_LOCK = f"""
SELECT count(pg_advisory_xact_lock(k)) FROM (
    SELECT DISTINCT hashtextextended(m, {_LOCK_SEED}) AS k FROM unnest($1::text[]) AS m
    ORDER BY 1
) AS keys
"""
_READ = "SELECT machine_id, source FROM diagnosis_marks WHERE machine_id = ANY($1::text[])"
_WRITE = """
INSERT INTO diagnosis_marks (machine_id, source)
SELECT m, $2 FROM unnest($1::text[]) AS m
ON CONFLICT (machine_id) DO UPDATE SET source = EXCLUDED.source, marked_at = now()
"""
_LATEST = """
SELECT machine_id, (extract(epoch FROM max(ts)) * 1000)::bigint AS ts_ms FROM readings
WHERE machine_id = ANY($1::text[]) GROUP BY machine_id
"""


async def claim(
    conn: asyncpg.Connection, machine_ids: Sequence[str], source: str
) -> tuple[list[str], list[str]]:
    """Lock the machines for this transaction and say where they were diagnosed last.

    Locks are taken in key order, so two workers claiming overlapping sets cannot deadlock.

    Returns:
        (moved, unmarked): machines last diagnosed by another worker, and machines with no
        mark yet (never diagnosed with marks on). Both must be marked for `source` once
        diagnosed; a moved machine's state must be rebuilt first.
    """
    ids = sorted(set(machine_ids))
    await conn.fetchval(_LOCK, ids)
    marks = {r["machine_id"]: r["source"] for r in await conn.fetch(_READ, ids)}
    moved = [m for m in ids if m in marks and marks[m] != source]
    unmarked = [m for m in ids if m not in marks]
    return moved, unmarked


async def mark(conn: asyncpg.Connection, machine_ids: Sequence[str], source: str) -> None:
    """Record `source` as the worker that diagnosed the machines last."""
    if machine_ids:
        await conn.execute(_WRITE, sorted(set(machine_ids)), source)


async def latest_ts_ms(conn: asyncpg.Connection, machine_ids: Sequence[str]) -> dict[str, int]:
    """The time of each machine's latest stored reading, epoch milliseconds."""
    rows = await conn.fetch(_LATEST, list(machine_ids))
    return {r["machine_id"]: int(r["ts_ms"]) for r in rows}
