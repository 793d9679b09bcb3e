"""The engine-hours counter from `readings`: its newest value and its last value per UTC day.

Only readings that carry `engine_hours` count. The newest value is one backward probe of the
readings key per machine; the daily values are one `DISTINCT ON` pass over the window's
readings of the machines asked for (partitions outside the window are pruned).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import asyncpg

from telematics.maintenance.usage import DayCounter


async def current_hours(
    conn: asyncpg.Connection, machine_ids: Sequence[str]
) -> dict[str, tuple[float, datetime]]:
    """Each machine's newest engine hours and the time of that reading (machines without any are
    left out).
    """
    rows = await conn.fetch(
        """
        SELECT m.id AS machine_id, r.engine_hours, r.ts
        FROM unnest($1::text[]) AS m(id)
        CROSS JOIN LATERAL (
            SELECT engine_hours, ts FROM readings
            WHERE machine_id = m.id AND engine_hours IS NOT NULL
            ORDER BY ts DESC LIMIT 1
        ) r
        """,
        list(machine_ids),
    )
    return {row["machine_id"]: (row["engine_hours"], row["ts"]) for row in rows}


async def day_counters(
    conn: asyncpg.Connection, machine_ids: Sequence[str], since: datetime
) -> dict[str, list[DayCounter]]:
    """Each machine's last engine-hours value on every UTC day since `since`, oldest first."""
    rows = await conn.fetch(
        """
        SELECT DISTINCT ON (machine_id, day) machine_id, day, engine_hours
        FROM (SELECT machine_id, ts, (ts AT TIME ZONE 'UTC')::date AS day, engine_hours
              FROM readings
              WHERE machine_id = ANY($1::text[]) AND ts >= $2 AND engine_hours IS NOT NULL) r
        ORDER BY machine_id, day, ts DESC
        """,
        list(machine_ids),
        since,
    )
    found: dict[str, list[DayCounter]] = {}
    for row in rows:
        found.setdefault(row["machine_id"], []).append(DayCounter(row["day"], row["engine_hours"]))
    return found
