"""Summary buckets from the rollup tables, for one machine or a customer's fleet, in any zone.

In the owning customer's own time zone the day rows answer: a fleet's buckets from its customer
day rows (a month is 30 rows), its per-machine table from the machine day rows (30,000 for
1,000 machines); in any other zone the 15-minute slots are summed (every offset in use is a
multiple of 15 minutes, so local days and hours are exact unions of slots), which reads ~96
times as many rows. Litres are level points x `machines.fuel_tank_l` / 100, at query time.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from datetime import date, datetime
from zoneinfo import ZoneInfo

import asyncpg

from telematics.summaries.periods import Bucket, Period
from telematics.summaries.usage import COLUMNS

_HOURS_DAYS = ", ".join(f"sum(src.working_by_hour[{h + 1}])" for h in range(24))
_SUMS = ", ".join(f"sum(src.{c}) AS {c}" for c in COLUMNS)

_FROM_DAYS = """
    SELECT d.*, m.fuel_tank_l FROM summary_days d JOIN machines m USING (machine_id)
    WHERE {scope} AND d.day >= $2 AND d.day <= $3
"""
_FROM_CUSTOMER_DAYS = """
    SELECT c.* FROM summary_customer_days c WHERE c.customer_id = $1 AND c.day >= $2
    AND c.day <= $3
"""
# No time-zone conversion per row: the buckets' UTC bounds are exact, and each slot's local
# day and hour are found here, once per distinct slot (converting 1.2 M rows took seconds).
_FROM_SLOTS = """
    SELECT s.*, m.fuel_tank_l FROM summary_slots s JOIN machines m USING (machine_id)
    WHERE {scope} AND s.slot >= $2 AND s.slot < $3
"""


@dataclass(frozen=True, slots=True)
class Scope:
    """Whose summaries: one machine, or every machine of a customer."""

    machine_id: str | None = None
    customer_id: str | None = None

    def sql(self) -> tuple[str, str]:
        """The condition on `machines m` and its parameter ($1)."""
        if self.machine_id is not None:
            return "m.machine_id = $1", self.machine_id
        assert self.customer_id is not None
        return "m.customer_id = $1", self.customer_id


@dataclass(slots=True)
class Totals:
    """Sums over a bucket (or a whole range), before they are turned into hours and litres."""

    values: dict[str, float] = field(default_factory=lambda: dict.fromkeys(COLUMNS, 0.0))
    fuel_used_l: float | None = None
    first_start: datetime | None = None
    last_stop: datetime | None = None
    working_by_hour: list[float] = field(default_factory=lambda: [0.0] * 24)
    refuels: list[tuple[str, datetime, float | None]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Found:
    """Totals per bucket and, for a fleet, per machine over the whole range."""

    buckets: list[Totals]
    machines: dict[str, Totals]


async def summarise(
    conn: asyncpg.Connection,
    scope: Scope,
    period: Period,
    tz_name: str,
    use_days: bool,
    buckets: list[Bucket],
    per_machine: bool,
) -> Found:
    """Sum the rollups over `buckets` (contiguous, in `tz_name`).

    Args:
        conn: A connection.
        scope: The machine or the fleet.
        period: The bucket length (buckets are cut at the range's first day).
        tz_name: The zone of the buckets.
        use_days: Read the day rows (only right when `tz_name` is the customer's own zone).
        buckets: The buckets, as `periods.buckets` made them.
        per_machine: Also answer totals per machine over the whole range.
    """
    where, key = scope.sql()
    starts = [b.first for b in buckets]
    totals = [Totals() for _ in buckets]
    machines: dict[str, Totals] = {}
    if use_days:
        first, last = buckets[0].first, date.fromordinal(buckets[-1].after.toordinal() - 1)
        args: list[object] = [key, first, last, period.value]
        await _from_days(conn, where, args, starts, totals, machines if per_machine else None)
    else:
        args = [key, buckets[0].start, buckets[-1].end]
        zi = ZoneInfo(tz_name)
        await _from_slots(conn, where, args, zi, starts, totals, machines if per_machine else None)
    refuels = await conn.fetch(
        f"SELECT r.machine_id, r.ts, r.added_pct * m.fuel_tank_l / 100 AS litres"
        f" FROM summary_refuels r JOIN machines m USING (machine_id)"
        f" WHERE {where} AND r.ts >= $2 AND r.ts < $3 ORDER BY r.ts, r.machine_id",
        key,
        buckets[0].start,
        buckets[-1].end,
    )
    ends = [b.start for b in buckets]
    for row in refuels:
        i = bisect.bisect_right(ends, row["ts"]) - 1
        litres = None if row["litres"] is None else float(row["litres"])
        totals[i].refuels.append((row["machine_id"], row["ts"], litres))
    return Found(totals, machines)


_FUEL_L = "sum(src.fuel_used_pct * src.fuel_tank_l / 100)"


async def _from_days(
    conn: asyncpg.Connection,
    where: str,
    args: list[object],
    starts: list[date],
    totals: list[Totals],
    machines: dict[str, Totals] | None,
) -> None:
    """Bucket totals (and per-machine ones into `machines`) from the day rows.

    A fleet's buckets come from its customer day rows (one a day, with the 24-hour map), its
    per-machine table from the machine day rows without the map: the 24 per-hour sums over
    every machine's rows were about half of the SQL when both came from the machine rows.
    """
    if machines is None:
        await _buckets(conn, _FROM_DAYS.format(scope=where), _FUEL_L, args, starts, totals)
        return
    await _buckets(conn, _FROM_CUSTOMER_DAYS, "sum(src.fuel_used_l)", args, starts, totals)
    rows = await conn.fetch(
        f"WITH src AS ({_FROM_DAYS.format(scope=where)}) SELECT src.machine_id, {_SUMS},"
        f" {_FUEL_L} AS fuel_l, min(src.first_start) AS first_start,"
        " max(src.last_stop) AS last_stop FROM src GROUP BY src.machine_id",
        *args[:3],
    )
    for row in rows:
        machines[row["machine_id"]] = _fill(Totals(), row)


async def _buckets(
    conn: asyncpg.Connection,
    source: str,
    fuel_l: str,
    args: list[object],
    starts: list[date],
    totals: list[Totals],
) -> None:
    """Bucket totals with the 24-hour map from day rows (a machine's, or a customer's)."""
    bucket_sql = "GREATEST(date_trunc($4, src.day::timestamp)::date, $2)"
    rows = await conn.fetch(
        f"WITH src AS ({source}) SELECT {bucket_sql} AS bucket, {_SUMS},"
        f" {fuel_l} AS fuel_l, min(src.first_start) AS first_start,"
        f" max(src.last_stop) AS last_stop, ARRAY[{_HOURS_DAYS}] AS by_hour"
        " FROM src GROUP BY 1",
        *args,
    )
    for row in rows:
        i = bisect.bisect_right(starts, row["bucket"]) - 1
        if 0 <= i < len(totals):
            _fill(totals[i], row)
            totals[i].working_by_hour = [float(x) for x in row["by_hour"]]


async def _from_slots(
    conn: asyncpg.Connection,
    where: str,
    args: list[object],
    zi: ZoneInfo,
    starts: list[date],
    totals: list[Totals],
    machines: dict[str, Totals] | None,
) -> None:
    """Bucket totals (and per-machine ones into `machines`) from the slot rows, in one scan.

    A fleet's month is ~1.2 M slot rows: one `GROUPING SETS` query groups them both by slot
    (placed in local days and hours here) and by machine, instead of scanning them twice.
    """
    source = _FROM_SLOTS.format(scope=where)
    kind, sets = "NULL::text AS machine_id, false AS by_machine", "src.slot"
    if machines is not None:
        kind = "src.machine_id, grouping(src.machine_id) = 0 AS by_machine"
        sets = "GROUPING SETS ((src.slot), (src.machine_id))"
    rows = await conn.fetch(
        f"WITH src AS ({source}) SELECT src.slot, {kind}, {_SUMS}, {_FUEL_L} AS fuel_l,"
        f" min(src.first_start) AS first_start, max(src.last_stop) AS last_stop"
        f" FROM src GROUP BY {sets}",
        *args,
    )
    for row in rows:
        if row["by_machine"]:
            assert machines is not None
            machines[row["machine_id"]] = _fill(Totals(), row)
            continue
        local = row["slot"].astimezone(zi)
        i = bisect.bisect_right(starts, local.date()) - 1
        if 0 <= i < len(totals):
            _add(totals[i], row)
            totals[i].working_by_hour[local.hour] += float(row["working_s"] or 0.0)


def _add(t: Totals, row: asyncpg.Record) -> None:
    """Add a partial row (one local hour of a bucket) to a bucket's totals."""
    for c in COLUMNS:
        t.values[c] += float(row[c] or 0.0)
    if row["fuel_l"] is not None:
        t.fuel_used_l = (t.fuel_used_l or 0.0) + float(row["fuel_l"])
    if row["first_start"] is not None and (
        t.first_start is None or row["first_start"] < t.first_start
    ):
        t.first_start = row["first_start"]
    if row["last_stop"] is not None and (t.last_stop is None or row["last_stop"] > t.last_stop):
        t.last_stop = row["last_stop"]


def _fill(t: Totals, row: asyncpg.Record) -> Totals:
    for c in COLUMNS:
        t.values[c] = float(row[c] or 0.0)
    t.fuel_used_l = None if row["fuel_l"] is None else float(row["fuel_l"])
    t.first_start = row["first_start"]
    t.last_stop = row["last_stop"]
    return t


async def fleet_size(conn: asyncpg.Connection, customer_id: str) -> list[str]:
    """The machine ids of a customer's fleet."""
    rows = await conn.fetch(
        "SELECT machine_id FROM machines WHERE customer_id = $1 ORDER BY machine_id", customer_id
    )
    return [r["machine_id"] for r in rows]


async def tank_of(conn: asyncpg.Connection, machine_id: str) -> float | None:
    """A machine's fuel tank in litres, if registered."""
    value = await conn.fetchval(
        "SELECT fuel_tank_l FROM machines WHERE machine_id = $1", machine_id
    )
    return None if value is None else float(value)
