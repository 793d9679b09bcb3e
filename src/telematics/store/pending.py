"""Committed batches not yet diagnosed (`diagnosis_pending`): written with the batch, taken back
by the diagnoser once their alarm changes are stored, and read again after a crash.

This is the diagnosis position made durable: whatever lies in this table for a source was
committed and may not have been diagnosed, so a diagnoser that starts diagnoses it first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

REPLAY_SOURCE = "replay"
"""The source of readings stored by a dead-letter replay: any running diagnoser claims them."""

_INSERT = """
INSERT INTO diagnosis_pending (source, machine_ids, first_ts_ms, last_ts_ms)
VALUES ($1, $2, $3, $4) RETURNING seq
"""
_TAKE = """
SELECT seq, machine_ids, first_ts_ms, last_ts_ms FROM diagnosis_pending
WHERE source = $1 AND seq <> ALL($2::bigint[]) AND ($3::bigint[] IS NULL OR seq = ANY($3))
ORDER BY seq LIMIT $4
"""
_CLAIM_REPLAYS = f"""
UPDATE diagnosis_pending SET source = $1
WHERE seq IN (
    SELECT seq FROM diagnosis_pending WHERE source = '{REPLAY_SOURCE}'
    ORDER BY seq LIMIT $2 FOR UPDATE SKIP LOCKED
)
RETURNING seq
"""


@dataclass(frozen=True, slots=True)
class Pending:
    """One committed batch waiting for diagnosis: which machines, over which readings' times."""

    seq: int
    machine_ids: tuple[str, ...]
    first_ts_ms: int
    last_ts_ms: int


async def add(
    conn: asyncpg.Connection, source: str, machine_ids: Sequence[str], ts_ms: Sequence[int]
) -> int:
    """Record a batch's readings as waiting for diagnosis, in the batch's transaction."""
    seq: int = await conn.fetchval(
        _INSERT, source, sorted(set(machine_ids)), min(ts_ms), max(ts_ms)
    )
    return seq


async def take(
    conn: asyncpg.Connection,
    source: str,
    *,
    exclude: Sequence[int] = (),
    only: Sequence[int] | None = None,
    limit: int = 100,
) -> list[Pending]:
    """The oldest batches of `source` still waiting, leaving out `exclude`, and if `only` is
    given, among those seqs alone.
    """
    rows = await conn.fetch(
        _TAKE, source, list(exclude), None if only is None else list(only), limit
    )
    return [
        Pending(row["seq"], tuple(row["machine_ids"]), row["first_ts_ms"], row["last_ts_ms"])
        for row in rows
    ]


async def claim_replays(conn: asyncpg.Connection, source: str, limit: int = 100) -> list[int]:
    """Make batches stored by dead-letter replays `source`'s to diagnose; returns their seqs."""
    return [row["seq"] for row in await conn.fetch(_CLAIM_REPLAYS, source, limit)]


async def done(conn: asyncpg.Connection, seqs: Sequence[int]) -> None:
    """Forget batches whose alarm changes are stored."""
    await conn.execute("DELETE FROM diagnosis_pending WHERE seq = ANY($1::bigint[])", list(seqs))
