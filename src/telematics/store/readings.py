"""Reading queries for the API: one machine, a time range keyset-paged by `ts`, or its newest."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from diagnosis.signals import SIGNAL_NAMES


@dataclass(frozen=True, slots=True)
class StoredReading:
    """One stored reading. Signals absent from the reading are None."""

    machine_id: str
    ts: datetime
    signals: dict[str, float | None]
    dtc: list[dict[str, int]]
    extra: dict[str, Any]


_SELECT = f"""
SELECT machine_id, ts, {", ".join(SIGNAL_NAMES)}, dtc::text AS dtc, extra::text AS extra
FROM readings
WHERE machine_id = $1 AND ts >= $2 AND ts < $3
ORDER BY ts
LIMIT $4
"""


_LATEST = f"""
SELECT machine_id, ts, {", ".join(SIGNAL_NAMES)}, dtc::text AS dtc, extra::text AS extra
FROM readings
WHERE machine_id = $1
ORDER BY ts DESC
LIMIT 1
"""


def _stored(row: asyncpg.Record) -> StoredReading:
    return StoredReading(
        machine_id=row["machine_id"],
        ts=row["ts"],
        signals={name: row[name] for name in SIGNAL_NAMES},
        dtc=orjson.loads(row["dtc"]) if row["dtc"] else [],
        extra=orjson.loads(row["extra"]) if row["extra"] else {},
    )


async def readings_between(
    conn: asyncpg.Connection, machine_id: str, start: datetime, end: datetime, limit: int
) -> list[StoredReading]:
    """Readings of one machine with `start <= ts < end`, oldest first, at most `limit`."""
    rows = await conn.fetch(_SELECT, machine_id, start, end, limit)
    return [_stored(row) for row in rows]


async def latest_reading(conn: asyncpg.Connection, machine_id: str) -> StoredReading | None:
    """The newest reading of one machine (by its time), None if it has none."""
    row = await conn.fetchrow(_LATEST, machine_id)
    return None if row is None else _stored(row)


async def count_readings(conn: asyncpg.Connection, machine_ids: list[str]) -> int:
    """How many readings are stored for these machines (tests and benchmarks)."""
    value = await conn.fetchval(
        "SELECT count(*) FROM readings WHERE machine_id = ANY($1::text[])", machine_ids
    )
    return int(value)


@dataclass(frozen=True, slots=True)
class History:
    """Recent readings of several machines as columns, for rebuilding diagnosis state.

    `values` holds one list per signal in catalogue order (NaN where absent); `dtcs` holds per
    reading its active codes as (spn, fmi, oc), or None.
    """

    machine_ids: list[str]
    ts_ms: list[int]
    values: list[list[float]]
    dtcs: list[list[tuple[int, int, int]] | None]


def dtc_codes(raw: str | None) -> list[tuple[int, int, int]] | None:
    """Active fault codes as (spn, fmi, oc) from the JSON text of a `dtc` column, None for none."""
    codes = orjson.loads(raw) if raw else None
    return [(c["spn"], c["fmi"], c.get("oc", 0)) for c in codes] if codes else None


_HISTORY = f"""
SELECT machine_id, (extract(epoch FROM ts) * 1000)::bigint AS ts_ms,
       {", ".join(f"COALESCE({name}, 'NaN') AS {name}" for name in SIGNAL_NAMES)},
       dtc::text AS dtc
FROM readings
WHERE machine_id = ANY($1::text[]) AND ts >= $2 AND ts <= $3
ORDER BY machine_id, ts
"""


async def history(
    conn: asyncpg.Connection, machine_ids: list[str], start: datetime, end: datetime
) -> History:
    """Readings of `machine_ids` with `start <= ts <= end`, sorted by machine and time."""
    rows = await conn.fetch(_HISTORY, machine_ids, start, end)
    dtcs = [dtc_codes(row["dtc"]) for row in rows]
    return History(
        machine_ids=[row["machine_id"] for row in rows],
        ts_ms=[row["ts_ms"] for row in rows],
        values=[[row[name] for row in rows] for name in SIGNAL_NAMES],
        dtcs=dtcs,
    )


_HISTORY_BEFORE = f"""
SELECT r.machine_id, (extract(epoch FROM r.ts) * 1000)::bigint AS ts_ms,
       {", ".join(f"COALESCE(r.{name}, 'NaN') AS {name}" for name in SIGNAL_NAMES)},
       r.dtc::text AS dtc
FROM unnest($1::text[], $2::bigint[]) AS b(machine_id, before_ms)
JOIN readings r ON r.machine_id = b.machine_id
 AND r.ts >= to_timestamp((b.before_ms - $3::bigint) / 1000.0)
 AND r.ts < to_timestamp(b.before_ms / 1000.0)
ORDER BY r.machine_id, r.ts
"""


async def history_before(
    conn: asyncpg.Connection, before_ms: dict[str, int], history_ms: int
) -> History:
    """Per machine, its readings of the `history_ms` before its own `before_ms`, sorted by
    machine and time (one query; each machine's window ends where its batch begins).
    """
    ids = sorted(before_ms)
    rows = await conn.fetch(_HISTORY_BEFORE, ids, [before_ms[m] for m in ids], history_ms)
    return History(
        machine_ids=[row["machine_id"] for row in rows],
        ts_ms=[row["ts_ms"] for row in rows],
        values=[[row[name] for row in rows] for name in SIGNAL_NAMES],
        dtcs=[dtc_codes(row["dtc"]) for row in rows],
    )


_REPORTED_SINCE = """
SELECT m.machine_id FROM machines m
WHERE EXISTS (SELECT 1 FROM readings r WHERE r.machine_id = m.machine_id AND r.ts >= $1)
ORDER BY m.machine_id
"""


async def reported_since(conn: asyncpg.Connection, since: datetime) -> list[str]:
    """Registered machines with a reading at or after `since` (one index probe per machine)."""
    return [row["machine_id"] for row in await conn.fetch(_REPORTED_SINCE, since)]
