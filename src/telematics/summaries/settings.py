"""Each customer's summary settings: its IANA time zone and its shift hours per day.

Owns `customer_settings`. Changing a customer's time zone rebuilds its machines' day rows from
the slots in the same transaction, under the settings row's lock, which the rollup's day writes
share (summaries.store): no write lands in the old zone after the rebuild.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

from telematics.summaries import store

DEFAULT_TZ = "UTC"
DEFAULT_SHIFT_H = 8.0


@dataclass(frozen=True, slots=True)
class CustomerSettings:
    """How a customer's summaries are cut and measured."""

    customer_id: str
    tz: str = DEFAULT_TZ
    shift_hours_per_day: float = DEFAULT_SHIFT_H


async def get_settings(conn: asyncpg.Connection, customer_id: str) -> CustomerSettings:
    """A customer's settings (the defaults when it never set any)."""
    row = await conn.fetchrow(
        "SELECT tz, shift_hours_per_day FROM customer_settings WHERE customer_id = $1",
        customer_id,
    )
    if row is None:
        return CustomerSettings(customer_id)
    return CustomerSettings(customer_id, row["tz"], float(row["shift_hours_per_day"]))


async def customer_of(conn: asyncpg.Connection, machine_id: str) -> str | None:
    """The customer a machine belongs to."""
    value = await conn.fetchval(
        "SELECT customer_id FROM machines WHERE machine_id = $1", machine_id
    )
    return None if value is None else str(value)


_KNOWN_ZONES: set[str] = set()
"""Zones the database has accepted (a few hundred at most; refusals are not kept)."""


async def known_zone(conn: asyncpg.Connection, tz: str) -> bool:
    """Whether the database knows the zone too (its zone data can differ from Python's).

    Asked with a conversion, not `pg_timezone_names` (which reads every zone file: ~0.3 s).
    """
    if tz in _KNOWN_ZONES:
        return True
    try:
        await conn.fetchval("SELECT now() AT TIME ZONE $1", tz)
    except asyncpg.InvalidParameterValueError:
        return False
    _KNOWN_ZONES.add(tz)
    return True


async def put_settings(conn: asyncpg.Connection, new: CustomerSettings) -> CustomerSettings:
    """Store a customer's settings; a new time zone rebuilds its day rows from the slots."""
    async with conn.transaction():
        old = await conn.fetchval(
            "SELECT tz FROM customer_settings WHERE customer_id = $1 FOR UPDATE", new.customer_id
        )
        await conn.execute(
            "INSERT INTO customer_settings (customer_id, tz, shift_hours_per_day)"
            " VALUES ($1, $2, $3)"
            " ON CONFLICT (customer_id) DO UPDATE SET tz = EXCLUDED.tz,"
            " shift_hours_per_day = EXCLUDED.shift_hours_per_day, updated_at = now()",
            new.customer_id,
            new.tz,
            new.shift_hours_per_day,
        )
        if (old or DEFAULT_TZ) != new.tz:
            ids = [
                r["machine_id"]
                for r in await conn.fetch(
                    "SELECT machine_id FROM machines WHERE customer_id = $1", new.customer_id
                )
            ]
            await conn.execute(
                "DELETE FROM summary_customer_days WHERE customer_id = $1", new.customer_id
            )
            if ids:
                await conn.execute(
                    "DELETE FROM summary_days WHERE machine_id = ANY($1::text[])", ids
                )
                await store.rebuild_days(
                    conn, ids, datetime(2000, 1, 1, tzinfo=UTC), datetime(2199, 12, 31, tzinfo=UTC)
                )
    return new
