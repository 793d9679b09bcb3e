"""Machines and engineers: registration, lookup, and the directory the gateway checks sources
against.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from telematics.base.errors import ConflictError, NotFoundError


@dataclass(frozen=True, slots=True)
class Site:
    """Where a machine works: a centre and a radius."""

    lat: float
    lon: float
    radius_m: float


@dataclass(frozen=True, slots=True)
class Machine:
    """A registered machine."""

    machine_id: str
    model: str
    customer_id: str
    site: Site | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Engineer:
    """A registered service engineer."""

    engineer_id: str
    name: str
    created_at: datetime


def _machine(row: asyncpg.Record) -> Machine:
    site = None
    if row["site_lat"] is not None:
        site = Site(row["site_lat"], row["site_lon"], row["site_radius_m"] or 0.0)
    return Machine(row["machine_id"], row["model"], row["customer_id"], site, row["created_at"])


async def add_machine(
    conn: asyncpg.Connection, machine_id: str, model: str, customer_id: str, site: Site | None
) -> Machine:
    """Register a machine.

    Raises:
        ConflictError: The machine id is taken.
    """
    try:
        row = await conn.fetchrow(
            """INSERT INTO machines (machine_id, model, customer_id, site_lat, site_lon,
                                     site_radius_m)
               VALUES ($1, $2, $3, $4, $5, $6) RETURNING *""",
            machine_id,
            model,
            customer_id,
            site.lat if site else None,
            site.lon if site else None,
            site.radius_m if site else None,
        )
    except asyncpg.UniqueViolationError as exc:
        raise ConflictError("machine", machine_id) from exc
    assert row is not None
    return _machine(row)


async def get_machine(conn: asyncpg.Connection, machine_id: str) -> Machine:
    """One machine.

    Raises:
        NotFoundError: No such machine.
    """
    row = await conn.fetchrow("SELECT * FROM machines WHERE machine_id = $1", machine_id)
    if row is None:
        raise NotFoundError("machine", machine_id)
    return _machine(row)


async def machines_by_id(conn: asyncpg.Connection, machine_ids: Iterable[str]) -> list[Machine]:
    """The registered machines among `machine_ids` (unknown ids are left out)."""
    rows = await conn.fetch(
        "SELECT * FROM machines WHERE machine_id = ANY($1::text[]) ORDER BY machine_id",
        list(machine_ids),
    )
    return [_machine(row) for row in rows]


async def list_machines(
    conn: asyncpg.Connection,
    *,
    customer_id: str | None = None,
    model: str | None = None,
    after: str | None = None,
    limit: int = 100,
) -> list[Machine]:
    """Machines ordered by id, filtered, paged by keyset (`after`: last id of the page before)."""
    rows = await conn.fetch(
        """SELECT * FROM machines
           WHERE ($1::text IS NULL OR customer_id = $1)
             AND ($2::text IS NULL OR model = $2)
             AND ($3::text IS NULL OR machine_id > $3)
           ORDER BY machine_id LIMIT $4""",
        customer_id,
        model,
        after,
        limit,
    )
    return [_machine(row) for row in rows]


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
