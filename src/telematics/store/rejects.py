"""Dead letters: listing, and the bookkeeping of replays."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A refused payload or reading, as stored."""

    reject_id: int
    received_at: datetime
    topic: str
    source_id: str | None
    payload: bytes
    reason: str
    detail: str
    replay_of: int | None
    replay_attempts: int
    replayed_at: datetime | None


def _dead_letter(row: asyncpg.Record) -> DeadLetter:
    return DeadLetter(
        reject_id=row["reject_id"],
        received_at=row["received_at"],
        topic=row["topic"],
        source_id=row["source_id"],
        payload=bytes(row["payload"]),
        reason=row["reason"],
        detail=row["detail"],
        replay_of=row["replay_of"],
        replay_attempts=row["replay_attempts"],
        replayed_at=row["replayed_at"],
    )


async def list_rejects(
    conn: asyncpg.Connection,
    *,
    reason: str | None = None,
    source_id: str | None = None,
    pending_only: bool = False,
    before_id: int | None = None,
    limit: int = 100,
) -> list[DeadLetter]:
    """Dead letters, newest first, paged by keyset (`before_id` = last id of the previous page)."""
    rows = await conn.fetch(
        """SELECT * FROM ingest_rejects
           WHERE ($1::text IS NULL OR reason = $1)
             AND ($2::text IS NULL OR source_id = $2)
             AND (NOT $3 OR replayed_at IS NULL)
             AND ($4::bigint IS NULL OR reject_id < $4)
           ORDER BY reject_id DESC LIMIT $5""",
        reason,
        source_id,
        pending_only,
        before_id,
        limit,
    )
    return [_dead_letter(row) for row in rows]


async def claim_for_replay(
    conn: asyncpg.Connection,
    *,
    reject_ids: list[int] | None,
    reason: str | None,
    source_id: str | None,
    limit: int,
) -> list[DeadLetter]:
    """Lock pending dead letters for a replay (call inside a transaction).

    `SKIP LOCKED` lets two replays run at once without replaying the same letter twice.
    """
    rows = await conn.fetch(
        """SELECT * FROM ingest_rejects
           WHERE replayed_at IS NULL
             AND ($1::bigint[] IS NULL OR reject_id = ANY($1))
             AND ($2::text IS NULL OR reason = $2)
             AND ($3::text IS NULL OR source_id = $3)
           ORDER BY reject_id LIMIT $4
           FOR UPDATE SKIP LOCKED""",
        reject_ids,
        reason,
        source_id,
        limit,
    )
    return [_dead_letter(row) for row in rows]


async def mark_replayed(
    conn: asyncpg.Connection, accepted_ids: list[int], refused: list[tuple[int, str, str]]
) -> None:
    """Record a replay's outcome.

    Args:
        conn: Connection, inside the replay's transaction.
        accepted_ids: Letters whose content is now stored (or re-dead-lettered piecewise).
        refused: `(reject_id, reason, detail)` for letters refused again as a whole.
    """
    await conn.execute(
        """UPDATE ingest_rejects
           SET replayed_at = now(), last_replay_at = now(), replay_attempts = replay_attempts + 1
           WHERE reject_id = ANY($1::bigint[])""",
        accepted_ids,
    )
    if refused:
        await conn.executemany(
            """UPDATE ingest_rejects
               SET reason = $2, detail = $3, last_replay_at = now(),
                   replay_attempts = replay_attempts + 1
               WHERE reject_id = $1""",
            refused,
        )


async def reject_counts(conn: asyncpg.Connection) -> dict[str, int]:
    """Pending dead letters by reason."""
    rows = await conn.fetch(
        "SELECT reason, count(*) AS n FROM ingest_rejects WHERE replayed_at IS NULL GROUP BY 1"
    )
    return {row["reason"]: int(row["n"]) for row in rows}
