"""The SQL of the work summaries: slots, days, tails, refuels, meter anomalies.

Owns every statement on the `summary_*` tables (migrations 009 and 016); asyncpg records never
leave it. Slot rows are added to (increments) or replaced (recomputes); day rows and customer
day rows follow in the same transaction, in the owning customer's time zone, read under a share
lock on its settings row so that a time-zone change (which rebuilds the days) never interleaves
with a write.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
import numpy as np
import orjson

from telematics.summaries.usage import COLUMNS, SLOT_MS, MeterAnomaly, Refuel, Slots, Tail
from telematics.summaries.usage_base import TAIL_FIELDS, TAIL_INT_FIELDS, IntArray, TailColumns

_ADD = ", ".join(f"{c} = s.{c} + EXCLUDED.{c}" for c in COLUMNS)
_COLS = ", ".join(COLUMNS)
_SUMS_AS = ", ".join(f"sum({c}) AS {c}" for c in COLUMNS)
_P_SUMS = ", ".join(f"sum(p.{c})" for c in COLUMNS)
_TYPES = ", ".join(
    f"${i + 3}::{'integer' if c == 'meter_anomalies' else 'float8'}[]"
    for i, c in enumerate(COLUMNS)
)
_N = len(COLUMNS)
# Working seconds per local hour as a 24-element array, and two such arrays added: inline
# expressions (a SQL function per row cost several times the rest of the statement).
_BY_HOUR = (
    "ARRAY["
    + ", ".join(f"coalesce(sum(working_s) FILTER (WHERE hr = {h}), 0)" for h in range(24))
    + "]"
)
_P_BY_HOUR = "ARRAY[" + ", ".join(f"sum(p.working_by_hour[{h}])" for h in range(1, 25)) + "]"
_ADD_HOURS = (
    "ARRAY["
    + ", ".join(f"s.working_by_hour[{h}] + EXCLUDED.working_by_hour[{h}]" for h in range(1, 25))
    + "]"
)

_INSERT_SLOTS = f"""
INSERT INTO summary_slots (machine_id, slot, {_COLS}, first_start, last_stop)
SELECT u.machine_id, to_timestamp(u.slot_ms / 1000.0), {", ".join(f"u.{c}" for c in COLUMNS)},
       to_timestamp(nullif(u.fs, -1) / 1000.0), to_timestamp(nullif(u.ls, -1) / 1000.0)
FROM unnest($1::text[], $2::bigint[], {_TYPES}, ${_N + 3}::bigint[], ${_N + 4}::bigint[])
    AS u(machine_id, slot_ms, {_COLS}, fs, ls)
"""

# Slot increments, the day rows they fall in (in each machine's customer's time zone), and the
# same summed per customer and day (migration 016): one statement, its arrays sent once.
_UPSERT = f"""
WITH inc AS (
    SELECT u.machine_id, to_timestamp(u.slot_ms / 1000.0) AS slot, {_COLS},
           to_timestamp(nullif(u.fs, -1) / 1000.0) AS fs,
           to_timestamp(nullif(u.ls, -1) / 1000.0) AS ls
    FROM unnest($1::text[], $2::bigint[], {_TYPES}, ${_N + 3}::bigint[], ${_N + 4}::bigint[])
        AS u(machine_id, slot_ms, {_COLS}, fs, ls)
), machine_slots AS (
    INSERT INTO summary_slots AS s (machine_id, slot, {_COLS}, first_start, last_stop)
    SELECT * FROM inc
    ON CONFLICT (machine_id, slot) DO UPDATE SET {_ADD},
        first_start = LEAST(s.first_start, EXCLUDED.first_start),
        last_stop = GREATEST(s.last_stop, EXCLUDED.last_stop)
), zone AS (
    SELECT m.machine_id, m.customer_id, m.fuel_tank_l, cs.tz
    FROM machines m JOIN customer_settings cs USING (customer_id)
    WHERE m.machine_id = ANY($1::text[]) FOR SHARE OF cs
), local AS (
    SELECT inc.*, (inc.slot AT TIME ZONE zone.tz)::date AS day,
           extract(hour FROM inc.slot AT TIME ZONE zone.tz)::integer AS hr
    FROM inc JOIN zone USING (machine_id)
), per_day AS (
    SELECT machine_id, day, {_SUMS_AS}, min(fs) AS first_start, max(ls) AS last_stop,
           {_BY_HOUR} AS working_by_hour
    FROM local GROUP BY machine_id, day
), machine_days AS (
    INSERT INTO summary_days AS s (machine_id, day, {_COLS}, first_start, last_stop,
                                   working_by_hour)
    SELECT * FROM per_day
    ON CONFLICT (machine_id, day) DO UPDATE SET {_ADD},
        first_start = LEAST(s.first_start, EXCLUDED.first_start),
        last_stop = GREATEST(s.last_stop, EXCLUDED.last_stop),
        working_by_hour = {_ADD_HOURS}
)
INSERT INTO summary_customer_days AS s (customer_id, day, {_COLS}, fuel_used_l, first_start,
                                        last_stop, working_by_hour)
SELECT zone.customer_id, p.day, {_P_SUMS}, sum(p.fuel_used_pct * zone.fuel_tank_l / 100),
       min(p.first_start), max(p.last_stop), {_P_BY_HOUR}
FROM per_day p JOIN zone USING (machine_id) GROUP BY zone.customer_id, p.day
ON CONFLICT (customer_id, day) DO UPDATE SET {_ADD},
    fuel_used_l = coalesce(s.fuel_used_l + EXCLUDED.fuel_used_l, s.fuel_used_l,
                           EXCLUDED.fuel_used_l),
    first_start = LEAST(s.first_start, EXCLUDED.first_start),
    last_stop = GREATEST(s.last_stop, EXCLUDED.last_stop),
    working_by_hour = {_ADD_HOURS}
"""

# Customer days rebuilt over the local days that each (machine, lo, hi) touches, one span per
# customer (migration 016's function; a late batch rebuilds them once, after its machines).
_REBUILD_CUSTOMER_DAYS = """
WITH span AS (
    SELECT cs.customer_id, min((to_timestamp(u.lo / 1000.0) AT TIME ZONE cs.tz)::date) AS d0,
           max((to_timestamp(u.hi / 1000.0) AT TIME ZONE cs.tz)::date) AS d1
    FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS u(machine_id, lo, hi)
    JOIN machines m USING (machine_id) JOIN customer_settings cs USING (customer_id)
    GROUP BY cs.customer_id
)
SELECT summary_rebuild_customer_days(array_agg(customer_id), array_agg(d0), array_agg(d1))
FROM span HAVING count(*) > 0
"""


@dataclass(frozen=True, slots=True)
class MachineFacts:
    """What the rollup needs of a machine: which thresholds apply to it."""

    machine_id: str
    model: str
    machine_class: str


@dataclass(frozen=True, slots=True)
class StoredReadings:
    """One machine's stored readings as columns, oldest first."""

    ts_ms: list[int]
    rpm: list[float]
    load_pct: list[float]
    fuel_pct: list[float]
    hours: list[float]
    lat: list[float]
    lon: list[float]

    def __len__(self) -> int:
        return len(self.ts_ms)


def _ms(ts: datetime) -> int:
    return round(ts.timestamp() * 1000)


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _num(value: object) -> float:
    return float(value) if isinstance(value, int | float) else math.nan


_TAIL_DEFAULTS = tuple(zip(TAIL_FIELDS, Tail(ts_ms=0), strict=True))


def tail_json(tail: Tail) -> str:
    """A tail as JSON (NaN as null)."""
    # Field by field, not `dataclasses.asdict` (which deep-copies): a flush writes a tail
    # for every machine, and asdict was most of the flush's Python. orjson writes NaN as null.
    return orjson.dumps(dict(zip(TAIL_FIELDS, tail, strict=True))).decode()


def tail_of_json(raw: str) -> Tail:
    """A tail back from `tail_json`."""
    data = orjson.loads(raw)
    fields: dict[str, int | float] = {}
    for name, default in _TAIL_DEFAULTS:
        value = data.get(name, default)
        if name not in TAIL_INT_FIELDS:
            fields[name] = _num(value)
        else:
            fields[name] = int(value) if isinstance(value, int) else int(default)
    return Tail(**fields)  # type: ignore[arg-type]


async def machine_facts(conn: asyncpg.Connection, machine_ids: Sequence[str]) -> list[MachineFacts]:
    """Registered machines among `machine_ids`; their customers get default settings rows, so
    that day rows can lock one (docs/customers.md).
    """
    rows = await conn.fetch(
        "SELECT machine_id, model, machine_class, customer_id FROM machines"
        " WHERE machine_id = ANY($1::text[])",
        list(machine_ids),
    )
    customers = sorted({r["customer_id"] for r in rows})
    if customers:
        await conn.execute(
            "INSERT INTO customer_settings (customer_id) SELECT unnest($1::text[])"
            " ON CONFLICT DO NOTHING",
            customers,
        )
    return [MachineFacts(r["machine_id"], r["model"], r["machine_class"]) for r in rows]


async def load_tails(conn: asyncpg.Connection, machine_ids: Sequence[str]) -> dict[str, Tail]:
    """The stored tails of those machines that have one."""
    rows = await conn.fetch(
        "SELECT machine_id, state::text AS state FROM summary_tails"
        " WHERE machine_id = ANY($1::text[])",
        list(machine_ids),
    )
    return {r["machine_id"]: tail_of_json(r["state"]) for r in rows}


class TailMovedError(Exception):
    """A stored tail was not what the writer expected: another writer, or a re-run."""

    def __init__(self, machine_ids: Sequence[str]) -> None:
        super().__init__(f"summary tails moved under us: {', '.join(machine_ids[:5])}")
        self.machine_ids = list(machine_ids)


async def move_tails(
    conn: asyncpg.Connection,
    machine_ids: Sequence[str],
    expected_ts_ms: IntArray,
    new: TailColumns,
) -> None:
    """Set each machine's tail to `new`'s, only where the stored one is at `expected_ts_ms`.

    Args:
        conn: A connection inside the caller's transaction.
        machine_ids: The machines, in the order of the other two.
        expected_ts_ms: Per machine, the time of the tail the caller read (-1: none stored).
        new: Per machine, its new tail.

    Raises:
        TailMovedError: Some tail was not as expected (the caller's transaction must roll back).
    """
    states = new.json()
    ts = new["ts_ms"].tolist()
    prev = expected_ts_ms.tolist()
    known = [k for k, p in enumerate(prev) if p >= 0]
    fresh = [k for k, p in enumerate(prev) if p < 0]
    moved: set[str] = set()
    if known:
        rows = await conn.fetch(
            "UPDATE summary_tails t SET ts = to_timestamp(u.ts / 1000.0), state = u.state::jsonb"
            " FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[])"
            " AS u(m, prev, ts, state)"
            " WHERE t.machine_id = u.m AND t.ts = to_timestamp(u.prev / 1000.0)"
            " RETURNING t.machine_id",
            [machine_ids[k] for k in known],
            [prev[k] for k in known],
            [ts[k] for k in known],
            [states[k] for k in known],
        )
        moved.update(r["machine_id"] for r in rows)
    if fresh:
        rows = await conn.fetch(
            "INSERT INTO summary_tails (machine_id, ts, state)"
            " SELECT u.m, to_timestamp(u.ts / 1000.0), u.state::jsonb"
            " FROM unnest($1::text[], $2::bigint[], $3::text[]) AS u(m, ts, state)"
            " ON CONFLICT DO NOTHING RETURNING machine_id",
            [machine_ids[k] for k in fresh],
            [ts[k] for k in fresh],
            [states[k] for k in fresh],
        )
        moved.update(r["machine_id"] for r in rows)
    missed = [m for m in machine_ids if m not in moved]
    if missed:
        raise TailMovedError(missed)


def _slot_args(machine_ids: Sequence[str], slots: Slots) -> list[object]:
    ids = np.asarray(machine_ids, dtype=object)[slots.machine_idx].tolist()
    cols: list[object] = []
    for name in COLUMNS:
        column = slots.column(name)
        cols.append(
            column.astype(np.int64).tolist() if name == "meter_anomalies" else column.tolist()
        )
    return [ids, slots.slot_ms.tolist(), *cols, slots.first_start_ms.tolist(),
            slots.last_stop_ms.tolist()]  # fmt: skip


async def add_slots(conn: asyncpg.Connection, machine_ids: Sequence[str], slots: Slots) -> None:
    """Add increments to the slot rows and to the day rows they fall in."""
    if not len(slots):
        return
    args = _slot_args(machine_ids, slots)
    await conn.execute(_UPSERT, *args)


async def add_events(
    conn: asyncpg.Connection,
    machine_ids: Sequence[str],
    anomalies: Sequence[MeterAnomaly],
    refuels: Sequence[Refuel],
) -> None:
    """Record meter anomalies and refuels (a repeat is absorbed)."""
    if anomalies:
        await conn.execute(
            "INSERT INTO summary_meter_anomalies (machine_id, ts, previous_h, value_h, reason)"
            " SELECT u.m, to_timestamp(u.ts / 1000.0), u.p, u.v, u.r FROM unnest($1::text[],"
            " $2::bigint[], $3::float8[], $4::float8[], $5::text[]) AS u(m, ts, p, v, r)"
            " ON CONFLICT DO NOTHING",
            [machine_ids[a.machine_idx] for a in anomalies],
            [a.ts_ms for a in anomalies],
            [a.previous_h for a in anomalies],
            [a.value_h for a in anomalies],
            [a.reason for a in anomalies],
        )
    if refuels:
        await conn.execute(
            "INSERT INTO summary_refuels (machine_id, ts, added_pct) SELECT u.m,"
            " to_timestamp(u.ts / 1000.0), u.p FROM unnest($1::text[], $2::bigint[],"
            " $3::float8[]) AS u(m, ts, p) ON CONFLICT (machine_id, ts)"
            " DO UPDATE SET added_pct = EXCLUDED.added_pct",
            [machine_ids[r.machine_idx] for r in refuels],
            [r.ts_ms for r in refuels],
            [r.added_pct for r in refuels],
        )


async def replace_range(
    conn: asyncpg.Connection,
    machine_id: str,
    lo_ms: int,
    hi_ms: int,
    slots: Slots,
    anomalies: Sequence[MeterAnomaly],
    refuels: Sequence[Refuel],
) -> None:
    """Replace one machine's slots and events in [lo_ms, hi_ms), then rebuild its days there.

    Its customer's days are left to the caller (`rebuild_customer_days`).
    """
    lo, hi = _dt(lo_ms), _dt(hi_ms)
    for table, column in (("summary_slots", "slot"), ("summary_refuels", "ts"),
                          ("summary_meter_anomalies", "ts")):  # fmt: skip
        await conn.execute(
            f"DELETE FROM {table} WHERE machine_id = $1 AND {column} >= $2 AND {column} < $3",
            machine_id, lo, hi,
        )  # fmt: skip
    ids = [machine_id]
    if len(slots):
        await conn.execute(_INSERT_SLOTS, *_slot_args(ids, slots))
    await add_events(conn, ids, anomalies, refuels)
    await rebuild_days(conn, ids, lo, _dt(hi_ms - 1), customers=False)


async def rebuild_days(
    conn: asyncpg.Connection,
    machine_ids: Sequence[str],
    lo: datetime,
    hi: datetime,
    *,
    customers: bool = True,
) -> None:
    """Rebuild the day rows of the local days from `lo` to `hi` (inclusive) from the slots.

    With `customers`, their customers' day rows over those local days too; without, the caller
    rebuilds them (`rebuild_customer_days`) once it has rebuilt every machine it had to.
    """
    await conn.execute(
        "SELECT summary_rebuild_days($1::text[], $2, $3, $4)", list(machine_ids), lo, hi, customers
    )


async def rebuild_customer_days(
    conn: asyncpg.Connection, ranges: Sequence[tuple[str, int, int]]
) -> None:
    """Rebuild the customer day rows over the local days each (machine, lo_ms, hi_ms) touches."""
    if ranges:
        await conn.execute(
            _REBUILD_CUSTOMER_DAYS,
            [m for m, _, _ in ranges],
            [lo for _, lo, _ in ranges],
            [hi for _, _, hi in ranges],
        )


_READING_COLS = "ts, engine_speed_rpm, load_pct, fuel_level_pct, engine_hours, lat, lon"


async def readings(
    conn: asyncpg.Connection, machine_id: str, lo_ms: int, hi_ms: int
) -> StoredReadings:
    """A machine's readings with lo_ms <= ts <= hi_ms, oldest first."""
    rows = await conn.fetch(
        f"SELECT {_READING_COLS} FROM readings WHERE machine_id = $1 AND ts >= $2 AND ts <= $3"
        " ORDER BY ts",
        machine_id, _dt(lo_ms), _dt(hi_ms),
    )  # fmt: skip
    return _columns(rows)


async def reading_next_to(
    conn: asyncpg.Connection, machine_id: str, ts_ms: int, *, before: bool, limit_ms: int | None
) -> StoredReadings:
    """The reading just before `ts_ms` (or just after it, not past `limit_ms`), if any."""
    if before:
        sql = (f"SELECT {_READING_COLS} FROM readings WHERE machine_id = $1 AND ts < $2"
               " ORDER BY ts DESC LIMIT 1")  # fmt: skip
        rows = await conn.fetch(sql, machine_id, _dt(ts_ms))
    else:
        sql = (f"SELECT {_READING_COLS} FROM readings WHERE machine_id = $1 AND ts > $2"
               " AND ts <= $3 ORDER BY ts LIMIT 1")  # fmt: skip
        rows = await conn.fetch(sql, machine_id, _dt(ts_ms), _dt(limit_ms or ts_ms))
    return _columns(rows)


async def last_before(
    conn: asyncpg.Connection, machine_ids: Sequence[str], before_ms: Sequence[int]
) -> dict[str, StoredReadings]:
    """Per machine, its newest stored reading before the given time, if any."""
    rows = await conn.fetch(
        f"SELECT u.m, r.{_READING_COLS.replace(', ', ', r.')} FROM unnest($1::text[],"
        " $2::bigint[]) AS u(m, b) CROSS JOIN LATERAL (SELECT * FROM readings WHERE"
        " machine_id = u.m AND ts < to_timestamp(u.b / 1000.0) ORDER BY ts DESC LIMIT 1) r",
        list(machine_ids), list(before_ms),
    )  # fmt: skip
    return {r["m"]: _columns([r]) for r in rows}


def _columns(rows: Sequence[asyncpg.Record]) -> StoredReadings:
    return StoredReadings(
        ts_ms=[_ms(r["ts"]) for r in rows],
        rpm=[_num(r["engine_speed_rpm"]) for r in rows],
        load_pct=[_num(r["load_pct"]) for r in rows],
        fuel_pct=[_num(r["fuel_level_pct"]) for r in rows],
        hours=[_num(r["engine_hours"]) for r in rows],
        lat=[_num(r["lat"]) for r in rows],
        lon=[_num(r["lon"]) for r in rows],
    )


def slot_of(ts_ms: int) -> int:
    """The start of the slot `ts_ms` falls in."""
    return ts_ms // SLOT_MS * SLOT_MS
