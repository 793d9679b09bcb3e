"""The one query of the live alarm feed: a mark that changes whenever an alarm in scope does.

It must never write. Rows are read through `alarms_updated_idx` (migration 014).
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

# Changes are looked for among alarms updated within this window, not only after the last
# mark: `updated_at` is the writing transaction's start time, so a transaction that commits
# after a later one would carry a time older than a mark already seen. Its row still enters the
# window, and changes the digest.
WINDOW_S = 600

_MARK = """
SELECT coalesce(max(a.alarm_id), 0) AS newest,
       count(*) AS recent,
       coalesce(sum(hashtext(a.alarm_id::text || '@' || a.updated_at::text)::bigint), 0) AS digest
FROM alarms a JOIN machines m USING (machine_id)
WHERE a.updated_at > now() - make_interval(secs => $2)
  AND ($1::text IS NULL OR m.customer_id = $1)
"""


@dataclass(frozen=True, slots=True)
class AlarmMark:
    """What the recent alarms in scope look like; a different mark means something changed.

    Attributes:
        newest: The newest recently changed alarm's id (0 when none).
        recent: How many alarms changed within the window.
        digest: A sum of hashes of (alarm, time of change) within the window.
    """

    newest: int
    recent: int
    digest: int


async def alarm_mark(conn: asyncpg.Connection, customer_id: str | None) -> AlarmMark:
    """The mark of the alarms `customer_id` may see (every alarm when None)."""
    row = await conn.fetchrow(_MARK, customer_id, float(WINDOW_S))
    assert row is not None
    return AlarmMark(int(row["newest"]), int(row["recent"]), int(row["digest"]))
