"""Machines and engineers: registration, lookup, and the directory the gateway checks sources
against.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import asyncpg

from telematics.base.errors import ConflictError, NotFoundError


@dataclass(frozen=True, slots=True)
class Site:
    """Where a machine works: a centre and a radius."""

    lat: float
    lon: float
    radius_m: float


@dataclass(frozen=True, slots=True)
class MachineRecord:
    """A machine as it is registered or imported (the fields a client writes).

    Attributes:
        machine_id: Identity on the wire.
        model: Model designation as the manufacturer writes it (`SY215C`).
        customer_id: Owning customer.
        site: Where it works, if known.
        machine_class: One of `machine_fields.MACHINE_CLASSES`; None lets the database derive it
            from `model` (`machine_class_of`, migration 008).
        oem: Manufacturer.
        serial_number: Serial number or PIN.
        fuel_tank_l: Fuel tank size.
        delivered_at: Delivery date, the start of the warranty.
        name: A name people know the machine by.
    """

    machine_id: str
    model: str
    customer_id: str
    site: Site | None = None
    machine_class: str | None = None
    oem: str | None = None
    serial_number: str | None = None
    fuel_tank_l: float | None = None
    delivered_at: date | None = None
    name: str | None = None


@dataclass(frozen=True, slots=True)
class Machine:
    """A registered machine."""

    machine_id: str
    model: str
    machine_class: str
    customer_id: str
    site: Site | None
    oem: str | None
    serial_number: str | None
    fuel_tank_l: float | None
    delivered_at: date | None
    name: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Engineer:
    """A registered service engineer."""

    engineer_id: str
    name: str
    created_at: datetime


def machine_of(row: asyncpg.Record) -> Machine:
    """A `Machine` from a row with the columns of `machines`."""
    site = None
    if row["site_lat"] is not None:
        site = Site(row["site_lat"], row["site_lon"], row["site_radius_m"] or 0.0)
    return Machine(
        machine_id=row["machine_id"],
        model=row["model"],
        machine_class=row["machine_class"],
        customer_id=row["customer_id"],
        site=site,
        oem=row["oem"],
        serial_number=row["serial_number"],
        fuel_tank_l=row["fuel_tank_l"],
        delivered_at=row["delivered_at"],
        name=row["name"],
        created_at=row["created_at"],
    )


def record_values(r: MachineRecord) -> tuple[object, ...]:
    """The record in `RECORD_COLUMNS` order."""
    site = r.site
    return (
        r.machine_id,
        r.model,
        r.machine_class,
        r.customer_id,
        r.oem,
        r.serial_number,
        r.fuel_tank_l,
        r.delivered_at,
        r.name,
        site.lat if site else None,
        site.lon if site else None,
        site.radius_m if site else None,
    )


RECORD_COLUMNS = (
    "machine_id",
    "model",
    "machine_class",
    "customer_id",
    "oem",
    "serial_number",
    "fuel_tank_l",
    "delivered_at",
    "name",
    "site_lat",
    "site_lon",
    "site_radius_m",
)
"""The columns a `MachineRecord` writes, in `record_values` order."""


async def add_machine(
    conn: asyncpg.Connection,
    machine_id: str,
    model: str,
    customer_id: str,
    site: Site | None,
    **details: Any,
) -> Machine:
    """Register a machine; `details` are the other fields of `MachineRecord`.

    Raises:
        ConflictError: The machine id is taken.
    """
    return await register_machine(
        conn, MachineRecord(machine_id, model, customer_id, site, **details)
    )


async def register_machine(conn: asyncpg.Connection, record: MachineRecord) -> Machine:
    """Register a machine.

    Raises:
        ConflictError: The machine id is taken.
    """
    marks = ", ".join(f"${i + 1}" for i in range(len(RECORD_COLUMNS)))
    try:
        row = await conn.fetchrow(
            f"INSERT INTO machines ({', '.join(RECORD_COLUMNS)}) VALUES ({marks}) RETURNING *",
            *record_values(record),
        )
    except asyncpg.UniqueViolationError as exc:
        raise ConflictError("machine", record.machine_id) from exc
    assert row is not None
    return machine_of(row)


async def get_machine(conn: asyncpg.Connection, machine_id: str) -> Machine:
    """One machine.

    Raises:
        NotFoundError: No such machine.
    """
    row = await conn.fetchrow("SELECT * FROM machines WHERE machine_id = $1", machine_id)
    if row is None:
        raise NotFoundError("machine", machine_id)
    return machine_of(row)


async def machines_by_id(conn: asyncpg.Connection, machine_ids: Iterable[str]) -> list[Machine]:
    """The registered machines among `machine_ids` (unknown ids are left out)."""
    rows = await conn.fetch(
        "SELECT * FROM machines WHERE machine_id = ANY($1::text[]) ORDER BY machine_id",
        list(machine_ids),
    )
    return [machine_of(row) for row in rows]


async def add_engineer(conn: asyncpg.Connection, engineer_id: str, name: str) -> Engineer:
    """Register an engineer.

    Raises:
        ConflictError: The engineer id is taken.
    """
    try:
        row = await conn.fetchrow(
            "INSERT INTO engineers (engineer_id, name) VALUES ($1, $2) RETURNING *",
            engineer_id,
            name,
        )
    except asyncpg.UniqueViolationError as exc:
        raise ConflictError("engineer", engineer_id) from exc
    assert row is not None
    return Engineer(row["engineer_id"], row["name"], row["created_at"])


async def list_engineers(conn: asyncpg.Connection) -> list[Engineer]:
    """All engineers, ordered by id."""
    rows = await conn.fetch("SELECT * FROM engineers ORDER BY engineer_id")
    return [Engineer(row["engineer_id"], row["name"], row["created_at"]) for row in rows]


class SourceDirectory:
    """Which machine and engineer ids are registered, cached for the ingest path.

    Known ids are cached for good (machines are not deleted while they report). An id that was
    looked up and not found is remembered for `miss_ttl_s`, so a flood from one unregistered device
    costs one query per interval rather than one per message, and a newly registered machine is
    accepted within that interval, even by a gateway in another process.
    """

    def __init__(self, miss_ttl_s: float = 2.0) -> None:
        self.machines: set[str] = set()
        self.engineers: set[str] = set()
        self._misses: dict[tuple[str, str], float] = {}
        self._miss_ttl_s = miss_ttl_s

    def forget_misses(self) -> None:
        """Drop the negative cache, e.g. right before a replay after registrations."""
        self._misses.clear()

    async def resolve(
        self, conn: asyncpg.Connection, machine_ids: Iterable[str], engineer_ids: Iterable[str]
    ) -> None:
        """Make sure the cache knows about these ids, querying only for those it cannot tell."""
        now = time.monotonic()
        await self._resolve(conn, "machines", "machine_id", self.machines, machine_ids, now)
        await self._resolve(conn, "engineers", "engineer_id", self.engineers, engineer_ids, now)

    async def _resolve(
        self,
        conn: asyncpg.Connection,
        table: str,
        column: str,
        known: set[str],
        ids: Iterable[str],
        now: float,
    ) -> None:
        unknown = [
            i
            for i in set(ids)
            if i not in known and self._misses.get((table, i), -1e18) + self._miss_ttl_s < now
        ]
        if not unknown:
            return
        rows = await conn.fetch(
            f"SELECT {column} FROM {table} WHERE {column} = ANY($1::text[])", unknown
        )
        found = {row[column] for row in rows}
        known.update(found)
        for i in unknown:
            if i not in found:
                self._misses[(table, i)] = now
        if len(self._misses) > 100_000:  # bound memory under a flood of random ids
            self._misses.clear()
