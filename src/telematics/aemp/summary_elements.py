"""The data elements that come from work summaries (package `summaries`, table `summary_slots`):
`CumulativeIdleHours`, `FuelUsed` (litres), `FuelUsedLast24` and `Distance`, in the snapshot
and as time series. The SQL is here; the elements are built by `elements.summary`.

Cumulative means summed over every slot the rollup kept for the machine, i.e. since its first
rolled-up slot, not the machine's lifetime counters. `FuelUsedLast24` sums the 96 slots (24 h)
that end with the newest one summed. Fuel is points of the tank times the machine's
`fuel_tank_l` (its current one) / 100; no tank size, no fuel elements.

An element's `datetime` is the end of the newest slot summed, or the rollup tail's reading time
when that lies inside the slot (the slot is still filling). A series has one point per UTC hour
the machine has slots starting in `[start, end)`: the cumulative values at the end of its newest
such slot in that hour.

Cost: the snapshot of a page is one query over the page's machines (`machine_id = ANY`): the
totals from their `summary_days` rows (one a day of reporting; equal to the slots' sums, see
`_SNAPSHOT`), the newest slot by one backward probe of the primary key `(machine_id, slot)`
each, and at most 96 slot rows each for the last 24 h. A series reads the machine's slots up
to its page's last point once, with running sums (window functions).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import asyncpg

from telematics.aemp import elements
from telematics.aemp.elements import Element, Series, SummaryValues

SUMMARY_SERIES = frozenset(
    {Series.IDLE_HOURS, Series.FUEL_USED, Series.FUEL_USED_LAST24, Series.DISTANCE}
)
"""The series that come from work summaries."""

# The instant the figures of a slot `s` hold at: its end, or the tail's reading inside it.
_AT = """CASE WHEN t.ts >= {s} AND t.ts < {s} + interval '15 minutes' THEN t.ts
    ELSE {s} + interval '15 minutes' END"""

# The totals are read from `summary_days`: the rollup writes them in the same transactions as
# the slots, as the slots summed per local day (docs/customers.md, tested as "days equal to
# slots"), so their sum over all days is the sum over all slots, at a 96th of the rows. The
# newest slot is one backward probe of the slots' key; the last 24 h at most 96 slot rows.
_SNAPSHOT = f"""
WITH newest AS (
    SELECT ids.machine_id, n.slot AS newest
    FROM unnest($1::text[]) AS ids(machine_id)
    CROSS JOIN LATERAL (
        SELECT slot FROM summary_slots s WHERE s.machine_id = ids.machine_id
        ORDER BY slot DESC LIMIT 1
    ) n
), totals AS (
    SELECT machine_id, sum(idle_s) AS idle_s, sum(fuel_used_pct) AS fuel_used_pct,
           sum(distance_m) AS distance_m
    FROM summary_days WHERE machine_id = ANY($1::text[])
    GROUP BY machine_id
)
SELECT newest.machine_id, totals.idle_s, totals.fuel_used_pct, totals.distance_m, m.fuel_tank_l,
       {_AT.format(s="newest.newest")} AS at, last24.fuel_used_pct AS fuel_used_last24_pct
FROM newest
JOIN totals USING (machine_id)
JOIN machines m USING (machine_id)
LEFT JOIN summary_tails t USING (machine_id)
CROSS JOIN LATERAL (
    SELECT coalesce(sum(s.fuel_used_pct), 0) AS fuel_used_pct FROM summary_slots s
    WHERE s.machine_id = newest.machine_id
      AND s.slot > newest.newest - interval '24 hours' AND s.slot <= newest.newest
) last24
"""

_HOURS = """
SELECT max(slot) AS newest FROM summary_slots
WHERE machine_id = $1 AND slot >= $2 AND slot < $3
GROUP BY date_trunc('hour', slot, 'UTC')
"""

# The running sums are one ordered pass over the machine's slots up to the page's last point;
# the last 24 h of each point at most 96 slot rows (a RANGE window frame costs ten times more).
_SERIES = f"""
WITH points AS ({_HOURS} ORDER BY 1 LIMIT $4 OFFSET $5),
running AS (
    SELECT slot,
           sum(idle_s) OVER upto AS idle_s,
           sum(fuel_used_pct) OVER upto AS fuel_used_pct,
           sum(distance_m) OVER upto AS distance_m
    FROM summary_slots
    WHERE machine_id = $1 AND slot <= (SELECT max(newest) FROM points)
    WINDOW upto AS (ORDER BY slot ROWS UNBOUNDED PRECEDING)
)
SELECT running.*, {_AT.format(s="running.slot")} AS at,
       last24.fuel_used_pct AS fuel_used_last24_pct
FROM points JOIN running ON running.slot = points.newest
LEFT JOIN summary_tails t ON t.machine_id = $1
CROSS JOIN LATERAL (
    SELECT sum(s.fuel_used_pct) AS fuel_used_pct FROM summary_slots s
    WHERE s.machine_id = $1
      AND s.slot > running.slot - interval '24 hours' AND s.slot <= running.slot
) last24
ORDER BY running.slot
"""


def _values(row: asyncpg.Record, tank_l: float | None) -> SummaryValues:
    return SummaryValues(
        ts=row["at"],
        idle_s=row["idle_s"],
        fuel_used_pct=row["fuel_used_pct"],
        fuel_used_last24_pct=row["fuel_used_last24_pct"],
        distance_m=row["distance_m"],
        tank_l=tank_l,
    )


async def work_summary_elements(
    conn: asyncpg.Connection, machine_ids: Sequence[str]
) -> dict[str, list[Element]]:
    """The summary elements of each machine's snapshot, by machine id, in one query; a machine
    without summary slots is absent.

    Args:
        conn: A connection.
        machine_ids: The machines (already scoped to the caller).
    """
    if not machine_ids:
        return {}
    rows = await conn.fetch(_SNAPSHOT, list(machine_ids))
    return {row["machine_id"]: elements.summary(_values(row, row["fuel_tank_l"])) for row in rows}


async def summary_series_page(
    conn: asyncpg.Connection,
    series: Series,
    machine_id: str,
    tank_l: float | None,
    start: datetime,
    end: datetime,
    page: int,
    page_size: int,
) -> tuple[int, list[Element]]:
    """How many points a work-summary series of one machine holds over `[start, end)` (one per
    UTC hour with slots), and page `page` (from 1) of them, oldest first. A fuel series of a
    machine without a tank size holds none.

    Args:
        conn: A connection.
        series: One of `SUMMARY_SERIES`.
        machine_id: The machine (already scoped to the caller).
        tank_l: Its tank size in litres, or None.
        start: The range's start (inclusive).
        end: The range's end (exclusive).
        page: The page number, from 1.
        page_size: Points a page.
    """
    fuel = series in (Series.FUEL_USED, Series.FUEL_USED_LAST24)
    if fuel and (tank_l is None or tank_l <= 0):
        return 0, []
    args = (machine_id, start, end)
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        total = await conn.fetchval(f"SELECT count(*) FROM ({_HOURS}) h", *args)
        rows = await conn.fetch(_SERIES, *args, page_size, (page - 1) * page_size)
    points = [elements.summary_point(series, _values(row, tank_l)) for row in rows]
    return int(total), [p for p in points if p is not None]
