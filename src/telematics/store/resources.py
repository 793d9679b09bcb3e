"""Field resources: engineers' profiles and live positions, warehouses, parts, stock.

Stock is kept per location (`van` of an engineer, or `warehouse`) and part: on hand and
reserved. Writes here set what is on hand; reservations belong to orders (`store.orders`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time
from enum import StrEnum

import asyncpg

from telematics.base.errors import ConflictError, NotFoundError, RefusedError


class LocationKind(StrEnum):
    """Where stock is kept."""

    VAN = "van"
    WAREHOUSE = "warehouse"


@dataclass(frozen=True, slots=True)
class EngineerProfile:
    """An engineer as dispatch sees them."""

    engineer_id: str
    name: str
    skills: tuple[str, ...]
    home_lat: float | None
    home_lon: float | None
    shift_start: time | None
    shift_end: time | None
    shift_tz: str
    status: str
    max_orders: int
    speed_kmh: float
    last_lat: float | None = None
    last_lon: float | None = None
    last_seen_at: datetime | None = None
    open_orders: int = 0


@dataclass(frozen=True, slots=True)
class Warehouse:
    """A warehouse."""

    warehouse_id: str
    name: str
    lat: float
    lon: float


@dataclass(frozen=True, slots=True)
class Part:
    """A part number."""

    part_no: str
    name: str


@dataclass(frozen=True, slots=True)
class StockLine:
    """One part at one location."""

    location_kind: LocationKind
    location_id: str
    part_no: str
    quantity: int
    reserved: int

    @property
    def available(self) -> int:
        """On hand and not promised to an order."""
        return self.quantity - self.reserved


OPEN_STATES = ("dispatched", "accepted", "en_route", "on_site")
"""Order states that count against an engineer's `max_orders`."""


class EngineerFullError(RefusedError):
    """The engineer carries `max_orders` open orders already: another dispatch got there first.

    Attributes:
        engineer_id: The engineer.
        open_orders: Open orders they carry.
        max_orders: What they may carry.
    """

    def __init__(self, engineer_id: str, open_orders: int, max_orders: int) -> None:
        super().__init__(f"{engineer_id} is at capacity: {open_orders} of {max_orders} open orders")
        self.engineer_id = engineer_id
        self.open_orders = open_orders
        self.max_orders = max_orders


_PROFILE = """
SELECT e.*, p.lat AS last_lat, p.lon AS last_lon, p.ts AS last_seen_at,
       (SELECT count(*) FROM orders o
        WHERE o.engineer_id = e.engineer_id
          AND o.state IN ('dispatched', 'accepted', 'en_route', 'on_site')) AS open_orders
FROM engineers e
LEFT JOIN LATERAL (
    SELECT lat, lon, ts FROM engineer_positions ep
    WHERE ep.engineer_id = e.engineer_id AND ep.ts > now() - interval '1 day'
    ORDER BY ts DESC LIMIT 1
) p ON true
"""


def _profile(row: asyncpg.Record) -> EngineerProfile:
    return EngineerProfile(
        engineer_id=row["engineer_id"],
        name=row["name"],
        skills=tuple(row["skills"]),
        home_lat=row["home_lat"],
        home_lon=row["home_lon"],
        shift_start=row["shift_start"],
        shift_end=row["shift_end"],
        shift_tz=row["shift_tz"],
        status=row["status"],
        max_orders=row["max_orders"],
        speed_kmh=row["speed_kmh"],
        last_lat=row["last_lat"],
        last_lon=row["last_lon"],
        last_seen_at=row["last_seen_at"],
        open_orders=row["open_orders"],
    )


async def upsert_engineers(conn: asyncpg.Connection, engineers: Sequence[EngineerProfile]) -> int:
    """Create or update engineers (bulk import and single edits alike); returns how many."""
    await conn.executemany(
        """
        INSERT INTO engineers (engineer_id, name, skills, home_lat, home_lon, shift_start,
                               shift_end, shift_tz, status, max_orders, speed_kmh)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
        ON CONFLICT (engineer_id) DO UPDATE SET
            name = EXCLUDED.name, skills = EXCLUDED.skills, home_lat = EXCLUDED.home_lat,
            home_lon = EXCLUDED.home_lon, shift_start = EXCLUDED.shift_start,
            shift_end = EXCLUDED.shift_end, shift_tz = EXCLUDED.shift_tz,
            status = EXCLUDED.status, max_orders = EXCLUDED.max_orders,
            speed_kmh = EXCLUDED.speed_kmh
        """,
        [
            (
                e.engineer_id,
                e.name,
                list(e.skills),
                e.home_lat,
                e.home_lon,
                e.shift_start,
                e.shift_end,
                e.shift_tz,
                e.status,
                e.max_orders,
                e.speed_kmh,
            )
            for e in engineers
        ],
    )
    return len(engineers)


async def get_engineer(conn: asyncpg.Connection, engineer_id: str) -> EngineerProfile:
    """One engineer with their last position and open orders.

    Raises:
        NotFoundError: No such engineer.
    """
    row = await conn.fetchrow(_PROFILE + " WHERE e.engineer_id = $1", engineer_id)
    if row is None:
        raise NotFoundError("engineer", engineer_id)
    return _profile(row)


async def claim_capacity(conn: asyncpg.Connection, engineer_id: str) -> None:
    """Check, for the rest of the caller's transaction, that the engineer can take one more order.

    The engineer's row stays locked until the transaction ends, and the open orders are counted
    after the lock is granted (a fresh snapshot under READ COMMITTED), so two transactions giving
    the same engineer an order cannot both see room for it. Call before the order is saved as
    assigned; lock several engineers in sorted order.

    Raises:
        NotFoundError: No such engineer.
        EngineerFullError: They already carry `max_orders` open orders.
    """
    max_orders = await conn.fetchval(
        "SELECT max_orders FROM engineers WHERE engineer_id = $1 FOR UPDATE", engineer_id
    )
    if max_orders is None:
        raise NotFoundError("engineer", engineer_id)
    open_orders = await conn.fetchval(
        "SELECT count(*) FROM orders WHERE engineer_id = $1 AND state = ANY($2::text[])",
        engineer_id,
        list(OPEN_STATES),
    )
    if open_orders >= max_orders:
        raise EngineerFullError(engineer_id, open_orders, max_orders)


async def list_profiles(conn: asyncpg.Connection) -> list[EngineerProfile]:
    """Every engineer with their last position and open orders."""
    return [_profile(r) for r in await conn.fetch(_PROFILE + " ORDER BY e.engineer_id")]


async def set_engineer_status(conn: asyncpg.Connection, engineer_id: str, status: str) -> None:
    """Set an engineer's status (available, busy, off).

    Raises:
        NotFoundError: No such engineer.
    """
    done = await conn.execute(
        "UPDATE engineers SET status = $2 WHERE engineer_id = $1", engineer_id, status
    )
    if done == "UPDATE 0":
        raise NotFoundError("engineer", engineer_id)


async def upsert_warehouses(conn: asyncpg.Connection, warehouses: Sequence[Warehouse]) -> int:
    """Create or update warehouses."""
    await conn.executemany(
        "INSERT INTO warehouses (warehouse_id, name, lat, lon) VALUES ($1, $2, $3, $4) "
        "ON CONFLICT (warehouse_id) DO UPDATE SET name = EXCLUDED.name, lat = EXCLUDED.lat, "
        "lon = EXCLUDED.lon",
        [(w.warehouse_id, w.name, w.lat, w.lon) for w in warehouses],
    )
    return len(warehouses)


async def list_warehouses(conn: asyncpg.Connection) -> list[Warehouse]:
    """Every warehouse."""
    rows = await conn.fetch("SELECT * FROM warehouses ORDER BY warehouse_id")
    return [Warehouse(r["warehouse_id"], r["name"], r["lat"], r["lon"]) for r in rows]


async def get_warehouse(conn: asyncpg.Connection, warehouse_id: str) -> Warehouse:
    """One warehouse.

    Raises:
        NotFoundError: No such warehouse.
    """
    r = await conn.fetchrow("SELECT * FROM warehouses WHERE warehouse_id = $1", warehouse_id)
    if r is None:
        raise NotFoundError("warehouse", warehouse_id)
    return Warehouse(r["warehouse_id"], r["name"], r["lat"], r["lon"])


async def upsert_parts(conn: asyncpg.Connection, parts: Sequence[Part]) -> int:
    """Create or rename parts."""
    await conn.executemany(
        "INSERT INTO parts (part_no, name) VALUES ($1, $2) "
        "ON CONFLICT (part_no) DO UPDATE SET name = EXCLUDED.name",
        [(p.part_no, p.name) for p in parts],
    )
    return len(parts)


async def list_parts(conn: asyncpg.Connection, *, after: str | None, limit: int) -> list[Part]:
    """Parts by number, keyset-paged."""
    rows = await conn.fetch(
        "SELECT * FROM parts WHERE ($1::text IS NULL OR part_no > $1) ORDER BY part_no LIMIT $2",
        after,
        limit,
    )
    return [Part(r["part_no"], r["name"]) for r in rows]


async def set_stock(conn: asyncpg.Connection, lines: Sequence[StockLine]) -> int:
    """Set what is on hand; reservations stay. A count below what is reserved is refused.

    Raises:
        NotFoundError: A location or part does not exist.
        ConflictError: A count would fall below the units reserved for orders.
    """
    async with conn.transaction():
        for line in lines:
            await _check_location(conn, line.location_kind, line.location_id)
            try:
                await conn.execute(
                    """
                    INSERT INTO stock (location_kind, location_id, part_no, quantity)
                    VALUES ($1, $2, $3, $4)
                    ON CONFLICT (location_kind, location_id, part_no) DO UPDATE
                    SET quantity = EXCLUDED.quantity, updated_at = now()
                    """,
                    line.location_kind.value,
                    line.location_id,
                    line.part_no,
                    line.quantity,
                )
            except asyncpg.ForeignKeyViolationError as exc:
                raise NotFoundError("part", line.part_no) from exc
            except asyncpg.CheckViolationError as exc:
                raise ConflictError(
                    "stock reservation", f"{line.location_id}/{line.part_no}"
                ) from exc
    return len(lines)


async def _check_location(conn: asyncpg.Connection, kind: LocationKind, location_id: str) -> None:
    table, column = ("engineers", "engineer_id") if kind is LocationKind.VAN else (
        "warehouses", "warehouse_id")  # fmt: skip
    found = await conn.fetchval(f"SELECT 1 FROM {table} WHERE {column} = $1", location_id)
    if found is None:
        raise NotFoundError("engineer" if kind is LocationKind.VAN else "warehouse", location_id)


async def stock_at(
    conn: asyncpg.Connection, kind: LocationKind, location_id: str
) -> list[StockLine]:
    """Everything kept at one location."""
    rows = await conn.fetch(
        "SELECT * FROM stock WHERE location_kind = $1 AND location_id = $2 ORDER BY part_no",
        kind.value,
        location_id,
    )
    return [_line(r) for r in rows]


async def available_stock(conn: asyncpg.Connection, part_nos: Sequence[str]) -> list[StockLine]:
    """Every location with units of `part_nos` not reserved."""
    rows = await conn.fetch(
        "SELECT * FROM stock WHERE part_no = ANY($1::text[]) AND quantity > reserved",
        list(part_nos),
    )
    return [_line(r) for r in rows]


def _line(r: asyncpg.Record) -> StockLine:
    return StockLine(
        LocationKind(r["location_kind"]),
        r["location_id"],
        r["part_no"],
        r["quantity"],
        r["reserved"],
    )
