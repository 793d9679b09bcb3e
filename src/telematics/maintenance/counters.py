"""The engine-hours counter from `readings`: its last value on each UTC day of a window, and
its newest value.

Only readings that carry `engine_hours` count. Each (machine, day) is one backward probe of the
readings key `(machine_id, ts)` within that day (`LATERAL ... ORDER BY ts DESC LIMIT 1`), so the
cost is machines x days index probes, whatever the reading rate: a machine reporting every second
costs what one reporting every hour does (bench/maintenance_counters.py). The newest value is the
probe of the latest day that has one; a machine with no engine hours in the window has none.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

import asyncpg

from telematics.maintenance.usage import DayCounter


@dataclass(slots=True)
class Counter:
    """One machine's counter over the window.

    Attributes:
        days: The last value of each UTC day that has one, oldest first.
        newest: The newest value and the time of its reading; None when the window has none.
    """

    days: list[DayCounter] = field(default_factory=list)
    newest: tuple[float, datetime] | None = None


_PROBES = """
SELECT m.id AS machine_id, d.day, r.engine_hours, r.ts
FROM unnest($1::text[]) AS m(id)
CROSS JOIN (SELECT $2::date + i AS day FROM generate_series(0, $3::int) AS g(i)) d
CROSS JOIN LATERAL (
    SELECT engine_hours, ts FROM readings
    WHERE machine_id = m.id
      AND ts >= (d.day::timestamp AT TIME ZONE 'UTC')
      AND ts < ((d.day + 1)::timestamp AT TIME ZONE 'UTC')
      AND engine_hours IS NOT NULL
    ORDER BY ts DESC LIMIT 1
) r
ORDER BY m.id, d.day
"""


async def counters(
    conn: asyncpg.Connection, machine_ids: Sequence[str], first_day: date, last_day: date
) -> dict[str, Counter]:
    """Each machine's counter on the UTC days `first_day..last_day` (machines without a value
    in the window get an empty `Counter`).
    """
    # JIT off: the plan has a probe per partition, and compiling it (seconds with a few dozen
    # partitions) costs a hundred times what running it does (bench/maintenance_counters.py).
    async with conn.transaction():
        await conn.execute("SET LOCAL jit = off")
        rows = await conn.fetch(_PROBES, list(machine_ids), first_day, (last_day - first_day).days)
    found = {m: Counter() for m in machine_ids}
    for row in rows:
        counter = found[row["machine_id"]]
        counter.days.append(DayCounter(row["day"], row["engine_hours"]))
        counter.newest = (row["engine_hours"], row["ts"])
    return found
