"""The SQL of pulling: AEMP sources (other manufacturers' feeds) and which registry machine
each of their machines is. asyncpg records never leave this module.

A pulled machine is found, in order, by the source's own mapping (`aemp_source_machines`), by
a machine of the same customer with the same serial number/PIN, or registered anew under the
customer with the feed's OEM and model (`unknown` when the feed gives none), with an id made
from the source and the machine's key. Either way the mapping is written, so a machine is
registered once and keeps its id across polls.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from telematics.aemp.dialects import PulledEquipment
from telematics.base.errors import ConflictError, NotFoundError

_NOT_ID = re.compile(r"[^A-Za-z0-9._:-]+")


@dataclass(frozen=True, slots=True)
class Source:
    """A feed to pull (its secret is only for the puller)."""

    source_id: str
    customer_id: str
    base_url: str
    auth: str
    token_url: str | None
    username: str | None
    secret: str | None
    poll_interval_s: int
    enabled: bool
    next_poll_at: datetime
    last_polled_at: datetime | None
    last_result: str | None
    created_at: datetime


def _source(row: asyncpg.Record) -> Source:
    return Source(**{name: row[name] for name in Source.__dataclass_fields__})


async def add_source(conn: asyncpg.Connection, source: dict[str, object]) -> Source:
    """Store a new source (the columns of `aemp_sources` the admin gives).

    Raises:
        ConflictError: The source id is taken.
    """
    columns = list(source)
    marks = ", ".join(f"${i + 1}" for i in range(len(columns)))
    try:
        row = await conn.fetchrow(
            f"INSERT INTO aemp_sources ({', '.join(columns)}) VALUES ({marks}) RETURNING *",
            *source.values(),
        )
    except asyncpg.UniqueViolationError as exc:
        raise ConflictError("AEMP source", str(source["source_id"])) from exc
    assert row is not None
    return _source(row)


async def list_sources(conn: asyncpg.Connection) -> list[Source]:
    """Every source, by id."""
    return [_source(r) for r in await conn.fetch("SELECT * FROM aemp_sources ORDER BY source_id")]


async def get_source(conn: asyncpg.Connection, source_id: str) -> Source:
    """One source.

    Raises:
        NotFoundError: No such source.
    """
    row = await conn.fetchrow("SELECT * FROM aemp_sources WHERE source_id = $1", source_id)
    if row is None:
        raise NotFoundError("AEMP source", source_id)
    return _source(row)


async def delete_source(conn: asyncpg.Connection, source_id: str) -> Source:
    """Delete a source and its mapping (its machines and readings stay).

    Raises:
        NotFoundError: No such source.
    """
    row = await conn.fetchrow(
        "DELETE FROM aemp_sources WHERE source_id = $1 RETURNING *", source_id
    )
    if row is None:
        raise NotFoundError("AEMP source", source_id)
    return _source(row)


async def claim_due(conn: asyncpg.Connection) -> Source | None:
    """The enabled source due longest, its next poll moved one interval on; None if none is due.

    Claimed under `FOR UPDATE SKIP LOCKED`, so two pullers never take the same source at once.
    """
    row = await conn.fetchrow(
        """UPDATE aemp_sources s
           SET next_poll_at = now() + make_interval(secs => s.poll_interval_s)
           WHERE s.source_id = (
               SELECT source_id FROM aemp_sources
               WHERE enabled AND next_poll_at <= now()
               ORDER BY next_poll_at FOR UPDATE SKIP LOCKED LIMIT 1)
           RETURNING s.*"""
    )
    return None if row is None else _source(row)


async def record_result(conn: asyncpg.Connection, source_id: str, result: str) -> None:
    """Note a poll's outcome on its source."""
    await conn.execute(
        "UPDATE aemp_sources SET last_polled_at = now(), last_result = $2 WHERE source_id = $1",
        source_id,
        result[:2000],
    )


def _new_machine_id(source_id: str, key: str, salted: bool) -> str:
    digest = hashlib.sha256(f"{source_id}\x1f{key}".encode()).hexdigest()[:12]
    readable = _NOT_ID.sub("-", key).strip("-._:")[:30]
    if salted or not readable:
        return f"{source_id}.{readable[:16]}.{digest}".replace("..", ".")[:64]
    return f"{source_id}.{readable}"[:64]


async def machine_for(
    conn: asyncpg.Connection, source: Source, equipment: PulledEquipment
) -> tuple[str, bool]:
    """The registry machine of a pulled machine, registered if new: (machine_id, registered)."""
    known = await conn.fetchval(
        "SELECT machine_id FROM aemp_source_machines WHERE source_id = $1 AND source_key = $2",
        source.source_id,
        equipment.key,
    )
    registered = False
    if known is None:
        known = await conn.fetchval(
            "SELECT machine_id FROM machines WHERE customer_id = $1 AND serial_number = $2 "
            "ORDER BY machine_id LIMIT 1",
            source.customer_id,
            equipment.key,
        )
    if known is None:
        for salted in (False, True):
            candidate = _new_machine_id(source.source_id, equipment.key, salted)
            known = await conn.fetchval(
                "INSERT INTO machines (machine_id, model, customer_id, oem, serial_number, "
                "fuel_tank_l) VALUES ($1, $2, $3, $4, $5, $6) "
                "ON CONFLICT (machine_id) DO NOTHING RETURNING machine_id",
                candidate,
                equipment.model or "unknown",
                source.customer_id,
                equipment.oem,
                equipment.serial_number or equipment.key,
                equipment.fuel_tank_l,
            )
            if known is not None:
                registered = True
                break
        else:
            raise ConflictError("machine", _new_machine_id(source.source_id, equipment.key, True))
    await conn.execute(
        "INSERT INTO aemp_source_machines (source_id, source_key, machine_id) VALUES ($1, $2, $3) "
        "ON CONFLICT DO NOTHING",
        source.source_id,
        equipment.key,
        known,
    )
    return str(known), registered
