"""Bulk registration: many checked machine records into `machines` in one statement.

Records are COPYed into a temporary staging table (dropped at commit) and moved with one
`INSERT ... ON CONFLICT (machine_id) DO UPDATE`: COPY is the fastest way in (100,000 machines in
about a second), and the upsert creates new machines and updates known ones. The caller holds
the transaction, so an import is all or nothing. Records are checked before they get here
(`services.machine_csv`): a constraint that still fails aborts the whole import.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import asyncpg

from telematics.base.errors import InvalidRequestError
from telematics.store.registry import RECORD_COLUMNS, MachineRecord, record_values

_STAGE = """
CREATE TEMPORARY TABLE machines_import (
    machine_id     text NOT NULL,
    model          text NOT NULL,
    machine_class  text,
    customer_id    text NOT NULL,
    oem            text,
    serial_number  text,
    fuel_tank_l    double precision,
    delivered_at   date,
    name           text,
    site_lat       double precision,
    site_lon       double precision,
    site_radius_m  double precision
) ON COMMIT DROP
"""

# Columns an update always writes; the others only when the import carries them.
_ALWAYS = ("model", "customer_id")
_SITE = ("site_lat", "site_lon", "site_radius_m")


@dataclass(frozen=True, slots=True)
class ImportCounts:
    """What an import wrote.

    Attributes:
        created: Machines registered by it.
        updated: Machines it changed that were registered before.
    """

    created: int
    updated: int


def _updated_columns(columns: Collection[str]) -> list[str]:
    out = list(_ALWAYS)
    for name in RECORD_COLUMNS:
        if name in columns and name not in out and name != "machine_id":
            out.append(name)
    if any(name in columns for name in _SITE):
        out += [name for name in _SITE if name not in out]
    return out


async def upsert_machines(
    conn: asyncpg.Connection, records: Sequence[MachineRecord], columns: Collection[str]
) -> ImportCounts:
    """Register or update machines, in the caller's transaction.

    Args:
        conn: A connection inside a transaction.
        records: Checked records, one per machine id.
        columns: The fields the import carries. A known machine's other fields keep their
            stored values (a file without an `oem` column leaves every OEM as it was); `model`
            and `customer_id` are always written, and the site's three columns go together.

    Raises:
        InvalidRequestError: A record broke a database constraint after all.
    """
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in _updated_columns(columns))
    names = ", ".join(RECORD_COLUMNS)
    try:
        await conn.execute(_STAGE)
        await conn.copy_records_to_table(
            "machines_import", records=map(record_values, records), columns=RECORD_COLUMNS
        )
        row = await conn.fetchrow(
            f"""WITH up AS (
                    INSERT INTO machines ({names}) SELECT {names} FROM machines_import
                    ON CONFLICT (machine_id) DO UPDATE SET {updates}, updated_at = now()
                    RETURNING xmax = 0 AS created
                )
                SELECT count(*) FILTER (WHERE created) AS created, count(*) AS total FROM up"""
        )
    except (asyncpg.IntegrityConstraintViolationError, asyncpg.CardinalityViolationError) as exc:
        raise InvalidRequestError(f"the machines broke a database constraint: {exc}") from exc
    assert row is not None
    return ImportCounts(created=row["created"], updated=row["total"] - row["created"])
