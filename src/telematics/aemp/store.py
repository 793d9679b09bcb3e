"""The SQL of the feed: pages of the fleet with each machine's newest reading, one machine, and
the time series of one machine. asyncpg records never leave this module.

A page costs one backward probe of the readings key `(machine_id, ts)` per machine, first in the
partitions of the last day and, for a machine quiet that long, in all of them (as
`store.machine_status` does), plus one count of the scope's machines for the `last` link. Pages
are OFFSET pages over `machine_id` order: at 10,000 machines the skipped index entries cost
little next to the probes (bench/aemp.py).

A series is the readings of one machine in `[start, end)` that carry its signals, oldest first,
OFFSET-paged by the caller's page size; its count is bounded by the range, which the feed caps.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from telematics.aemp import elements
from telematics.aemp.elements import Element, HeaderValues, LatestValues, Series
from telematics.base.errors import NotFoundError

# Running: engine speed above 0; for a reading pulled from another AEMP feed, which gives no
# engine speed, the feed's own `Running` (kept as `aemp_running` in `extra`).
_RUNNING = """CASE WHEN r.engine_speed_rpm IS NOT NULL THEN r.engine_speed_rpm > 0
    WHEN jsonb_typeof(r.extra->'aemp_running') = 'boolean' THEN (r.extra->'aemp_running') = 'true'
    END"""
_SIGNALS = f"ts, lat, lon, engine_hours, fuel_level_pct, {_RUNNING} AS running"

_WITH_LATEST = f"""
SELECT m.machine_id, m.model, m.oem, m.serial_number, m.fuel_tank_l,
       coalesce(recent.ts, older.ts) AS ts,
       CASE WHEN recent.ts IS NULL THEN older.lat ELSE recent.lat END AS lat,
       CASE WHEN recent.ts IS NULL THEN older.lon ELSE recent.lon END AS lon,
       CASE WHEN recent.ts IS NULL THEN older.engine_hours ELSE recent.engine_hours END
           AS engine_hours,
       CASE WHEN recent.ts IS NULL THEN older.fuel_level_pct ELSE recent.fuel_level_pct END
           AS fuel_level_pct,
       CASE WHEN recent.ts IS NULL THEN older.running ELSE recent.running END AS running
FROM ({{machines}}) m
LEFT JOIN LATERAL (
    SELECT {_SIGNALS} FROM readings r
    WHERE r.machine_id = m.machine_id AND r.ts >= now() - interval '1 day'
    ORDER BY r.ts DESC LIMIT 1
) recent ON true
LEFT JOIN LATERAL (
    SELECT {_SIGNALS} FROM readings r
    WHERE recent.ts IS NULL AND r.machine_id = m.machine_id
    ORDER BY r.ts DESC LIMIT 1
) older ON true
ORDER BY m.machine_id
"""

_PAGE = _WITH_LATEST.format(
    machines="""SELECT * FROM machines WHERE ($1::text IS NULL OR customer_id = $1)
       ORDER BY machine_id LIMIT $2 OFFSET $3"""
)
_ONE = _WITH_LATEST.format(
    machines="SELECT * FROM machines "
    "WHERE machine_id = $1 AND ($2::text IS NULL OR customer_id = $2)"
)
_COUNT = "SELECT count(*) FROM machines WHERE ($1::text IS NULL OR customer_id = $1)"


@dataclass(frozen=True, slots=True)
class MachineSnapshot:
    """A machine as the feed shows it: its header values, tank size and newest reading."""

    header: HeaderValues
    fuel_tank_l: float | None
    latest: LatestValues | None


@dataclass(frozen=True, slots=True)
class SeriesPage:
    """One page of a series: how many points the range holds, and this page's."""

    total: int
    points: list[Element]


def _snapshot(row: asyncpg.Record) -> MachineSnapshot:
    latest = None
    if row["ts"] is not None:
        latest = LatestValues(
            ts=row["ts"],
            lat=row["lat"],
            lon=row["lon"],
            engine_hours=row["engine_hours"],
            fuel_level_pct=row["fuel_level_pct"],
            running=row["running"],
        )
    header = HeaderValues(row["machine_id"], row["model"], row["oem"], row["serial_number"])
    return MachineSnapshot(header, row["fuel_tank_l"], latest)


async def fleet_page(
    conn: asyncpg.Connection, customer_id: str | None, page: int, page_size: int
) -> tuple[int, list[MachineSnapshot]]:
    """How many machines the scope holds, and page `page` (from 1) of them by machine id.

    Args:
        conn: A connection.
        customer_id: Only this customer's machines; None for every machine.
        page: The page number, from 1.
        page_size: Machines a page.
    """
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        total = int(await conn.fetchval(_COUNT, customer_id))
        rows = await conn.fetch(_PAGE, customer_id, page_size, (page - 1) * page_size)
    return total, [_snapshot(row) for row in rows]


async def machine_snapshot(
    conn: asyncpg.Connection, machine_id: str, customer_id: str | None
) -> MachineSnapshot:
    """One machine, if it is in the scope.

    Raises:
        NotFoundError: No such machine, or another customer's (the answer does not tell).
    """
    row = await conn.fetchrow(_ONE, machine_id, customer_id)
    if row is None:
        raise NotFoundError("equipment", machine_id)
    return _snapshot(row)


# Series kept in readings: the columns a point takes, and the condition a reading must meet.
_READING_SERIES: dict[Series, tuple[str, str]] = {
    Series.LOCATIONS: ("lat, lon", "lat IS NOT NULL AND lon IS NOT NULL"),
    Series.OPERATING_HOURS: ("engine_hours", "engine_hours IS NOT NULL"),
    Series.FUEL_REMAINING: ("fuel_level_pct", "fuel_level_pct IS NOT NULL"),
    Series.ENGINE_CONDITION: (f"{_RUNNING} AS running", f"{_RUNNING} IS NOT NULL"),
}

# One point per active code of a reading, in the order the reading listed them.
_FAULTS_FROM = """
FROM readings r CROSS JOIN LATERAL jsonb_array_elements(
    CASE WHEN jsonb_typeof(r.dtc) = 'array' THEN r.dtc ELSE '[]'::jsonb END
) WITH ORDINALITY AS c(code, n)
WHERE r.machine_id = $1 AND r.ts >= $2 AND r.ts < $3
"""

# Alarm episodes open at some time within the range, at the time they were raised.
_CAUTIONS_FROM = """
FROM alarms a
WHERE a.machine_id = $1 AND a.raised_at < $3 AND (a.cleared_at IS NULL OR a.cleared_at >= $2)
"""


async def series_page(
    conn: asyncpg.Connection,
    series: Series,
    machine: MachineSnapshot,
    start: datetime,
    end: datetime,
    page: int,
    page_size: int,
) -> SeriesPage:
    """Page `page` (from 1) of a series of one machine over `[start, end)`, oldest first.

    Raises:
        NotFoundError: A series this module does not keep (those of work summaries).
    """
    machine_id = machine.header.machine_id
    offset = (page - 1) * page_size
    args = (machine_id, start, end)
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        if series in _READING_SERIES:
            columns, where = _READING_SERIES[series]
            base = f"FROM readings r WHERE machine_id = $1 AND ts >= $2 AND ts < $3 AND {where}"
            total = await conn.fetchval(f"SELECT count(*) {base}", *args)
            rows = await conn.fetch(
                f"SELECT ts, {columns} {base} ORDER BY ts LIMIT $4 OFFSET $5",
                *args,
                page_size,
                offset,
            )
            points = [_reading_point(series, row, machine.fuel_tank_l) for row in rows]
        elif series is Series.FAULT_CODES:
            total = await conn.fetchval(f"SELECT count(*) {_FAULTS_FROM}", *args)
            rows = await conn.fetch(
                "SELECT r.ts, (c.code->>'spn')::bigint AS spn, (c.code->>'fmi')::bigint AS fmi, "
                f"coalesce((c.code->>'oc')::bigint, 0) AS oc {_FAULTS_FROM} "
                "ORDER BY r.ts, c.n LIMIT $4 OFFSET $5",
                *args,
                page_size,
                offset,
            )
            points = [elements.fault_code(r["ts"], r["spn"], r["fmi"], r["oc"]) for r in rows]
        elif series is Series.CAUTION_CODES:
            total = await conn.fetchval(f"SELECT count(*) {_CAUTIONS_FROM}", *args)
            rows = await conn.fetch(
                "SELECT a.raised_at, a.fault, a.title, a.severity, a.state "
                f"{_CAUTIONS_FROM} ORDER BY a.raised_at, a.alarm_id LIMIT $4 OFFSET $5",
                *args,
                page_size,
                offset,
            )
            points = [
                elements.caution_code(
                    r["raised_at"],
                    r["fault"],
                    r["title"],
                    r["severity"],
                    active=r["state"] == "open",
                )
                for r in rows
            ]
        else:
            raise NotFoundError("data element", series.value)
    return SeriesPage(int(total), points)


def _reading_point(series: Series, row: asyncpg.Record, tank_l: float | None) -> Element:
    ts = row["ts"]
    if series is Series.LOCATIONS:
        return elements.location(ts, row["lat"], row["lon"])
    if series is Series.OPERATING_HOURS:
        return elements.operating_hours(ts, row["engine_hours"])
    if series is Series.FUEL_REMAINING:
        return elements.fuel_remaining(ts, row["fuel_level_pct"], tank_l)
    return elements.engine("EngineCondition", ts, running=row["running"])
