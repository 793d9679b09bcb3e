"""Field resources: engineers (profile, status, van stock), warehouses, parts, stock, and CSV
import of all four for real fleets.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import asyncpg
from fastapi import APIRouter, Depends, Query, Request, status
from pydantic import BaseModel, Field, model_validator

from telematics.api.context import Admin, Caller, Conn, Staff, allow
from telematics.api.schemas import ID_PATTERN, INT32_MAX, BodyIn, LocalTime
from telematics.base.errors import ConflictError, ForbiddenError
from telematics.services import csvimport
from telematics.store import resources
from telematics.store.resources import EngineerProfile, LocationKind, Part, StockLine, Warehouse
from telematics.store.tokens import Principal, Role

router = APIRouter(prefix="/v1")

SKILL_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"


class EngineerIn(BodyIn):
    """An engineer: who, what they can do, where they start from and when they work."""

    engineer_id: str = Field(pattern=ID_PATTERN)
    name: str = Field(min_length=1, max_length=200)
    skills: list[Annotated[str, Field(pattern=SKILL_PATTERN)]] = Field(default_factory=list)
    home_lat: float | None = Field(default=None, ge=-90, le=90)
    home_lon: float | None = Field(default=None, ge=-180, le=180)
    shift_start: LocalTime | None = Field(default=None, strict=False)
    shift_end: LocalTime | None = Field(default=None, strict=False)
    shift_tz: str = Field(default="UTC", max_length=64)
    status: Literal["available", "busy", "off"] = "available"
    max_orders: int = Field(default=3, ge=0, le=50)
    speed_kmh: float = Field(default=50.0, gt=0, le=200)

    @model_validator(mode="after")
    def _home_is_whole(self) -> EngineerIn:
        if (self.home_lat is None) != (self.home_lon is None):
            raise ValueError("home_lat and home_lon go together: give both or neither")
        return self

    def profile(self) -> EngineerProfile:
        """The store's value."""
        return EngineerProfile(
            engineer_id=self.engineer_id,
            name=self.name,
            skills=tuple(self.skills),
            home_lat=self.home_lat,
            home_lon=self.home_lon,
            shift_start=self.shift_start,
            shift_end=self.shift_end,
            shift_tz=self.shift_tz,
            status=self.status,
            max_orders=self.max_orders,
            speed_kmh=self.speed_kmh,
        )


class StockLineOut(BaseModel):
    """One part at one location."""

    location_kind: LocationKind
    location_id: str
    part_no: str
    quantity: int
    reserved: int
    available: int

    @classmethod
    def of(cls, line: StockLine) -> StockLineOut:
        """From the store's value."""
        return cls(
            location_kind=line.location_kind,
            location_id=line.location_id,
            part_no=line.part_no,
            quantity=line.quantity,
            reserved=line.reserved,
            available=line.available,
        )


class EngineerOut(BaseModel):
    """An engineer with their live position (last report within a day) and open orders."""

    engineer_id: str
    name: str
    skills: list[str]
    home_lat: float | None
    home_lon: float | None
    shift_start: LocalTime | None
    shift_end: LocalTime | None
    shift_tz: str
    status: str
    max_orders: int
    speed_kmh: float
    last_lat: float | None
    last_lon: float | None
    last_seen_at: datetime | None
    open_orders: int
    van_stock: list[StockLineOut] | None = None

    @classmethod
    def of(cls, e: EngineerProfile, van: list[StockLine] | None = None) -> EngineerOut:
        """From the store's values."""
        return cls(
            engineer_id=e.engineer_id,
            name=e.name,
            skills=list(e.skills),
            home_lat=e.home_lat,
            home_lon=e.home_lon,
            shift_start=e.shift_start,
            shift_end=e.shift_end,
            shift_tz=e.shift_tz,
            status=e.status,
            max_orders=e.max_orders,
            speed_kmh=e.speed_kmh,
            last_lat=e.last_lat,
            last_lon=e.last_lon,
            last_seen_at=e.last_seen_at,
            open_orders=e.open_orders,
            van_stock=None if van is None else [StockLineOut.of(s) for s in van],
        )


class StatusIn(BodyIn):
    """An engineer's availability."""

    status: Literal["available", "busy", "off"]


class WarehouseIn(BodyIn):
    """A warehouse."""

    warehouse_id: str = Field(pattern=ID_PATTERN)
    name: str = Field(min_length=1, max_length=200)
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)


class WarehouseOut(WarehouseIn):
    """A warehouse, with its stock when asked for one."""

    stock: list[StockLineOut] | None = None


class PartIn(BodyIn):
    """A part number."""

    part_no: str = Field(pattern=ID_PATTERN)
    name: str = Field(min_length=1, max_length=200)


class StockIn(BodyIn):
    """What is on hand of one part at one location."""

    location_kind: LocationKind = Field(strict=False)
    location_id: str = Field(pattern=ID_PATTERN)
    part_no: str = Field(pattern=ID_PATTERN)
    quantity: int = Field(ge=0, le=INT32_MAX)


class ImportOut(BaseModel):
    """What an import wrote."""

    kind: str
    rows: int


def _engineer_self_or_staff(caller: Principal, engineer_id: str) -> None:
    if caller.role is Role.ENGINEER and caller.subject_id == engineer_id:
        return
    if caller.role not in (Role.ADMIN, Role.EXPERT):
        raise ForbiddenError("only staff or the engineer themself")


@router.post(
    "/engineers", status_code=status.HTTP_201_CREATED, tags=["engineers"], dependencies=[Admin]
)
async def create_engineer(body: EngineerIn, conn: Conn) -> EngineerOut:
    """Register an engineer, so their vehicle's positions are accepted and dispatch can use them."""
    async with conn.transaction():
        taken = await conn.fetchval(
            "SELECT 1 FROM engineers WHERE engineer_id = $1 FOR UPDATE", body.engineer_id
        )
        if taken:
            raise ConflictError("engineer", body.engineer_id)
        await resources.upsert_engineers(conn, [body.profile()])
    return EngineerOut.of(await resources.get_engineer(conn, body.engineer_id))


@router.put("/engineers/{engineer_id}", tags=["engineers"], dependencies=[Admin])
async def update_engineer(engineer_id: str, body: EngineerIn, conn: Conn) -> EngineerOut:
    """Create or replace an engineer's profile."""
    if body.engineer_id != engineer_id:
        raise ConflictError("engineer id in the body", body.engineer_id)
    await resources.upsert_engineers(conn, [body.profile()])
    return EngineerOut.of(await resources.get_engineer(conn, engineer_id))


@router.get("/engineers", tags=["engineers"])
async def list_engineers(conn: Conn, caller: Staff) -> list[EngineerOut]:
    """Every engineer with live position and open orders."""
    return [EngineerOut.of(e) for e in await resources.list_profiles(conn)]


@router.get("/engineers/{engineer_id}", tags=["engineers"])
async def get_engineer(engineer_id: str, conn: Conn, caller: Caller) -> EngineerOut:
    """One engineer with their van stock (staff, or the engineer themself)."""
    _engineer_self_or_staff(caller, engineer_id)
    profile = await resources.get_engineer(conn, engineer_id)
    return EngineerOut.of(profile, await resources.stock_at(conn, LocationKind.VAN, engineer_id))


@router.put("/engineers/{engineer_id}/status", tags=["engineers"])
async def set_status(engineer_id: str, body: StatusIn, conn: Conn, caller: Caller) -> EngineerOut:
    """Set availability (staff, or the engineer themself)."""
    _engineer_self_or_staff(caller, engineer_id)
    await resources.set_engineer_status(conn, engineer_id, body.status)
    return EngineerOut.of(await resources.get_engineer(conn, engineer_id))


@router.post(
    "/warehouses", status_code=status.HTTP_201_CREATED, tags=["stock"], dependencies=[Admin]
)
async def upsert_warehouse(body: WarehouseIn, conn: Conn) -> WarehouseOut:
    """Create or update a warehouse."""
    await resources.upsert_warehouses(
        conn, [Warehouse(body.warehouse_id, body.name, body.lat, body.lon)]
    )
    return WarehouseOut(**body.model_dump())


@router.get("/warehouses", tags=["stock"])
async def list_warehouses(conn: Conn, caller: Annotated[Principal, Depends(allow(
        Role.EXPERT, Role.ENGINEER))]) -> list[WarehouseOut]:  # fmt: skip
    """Every warehouse (engineers need them to pick parts up)."""
    return [
        WarehouseOut(warehouse_id=w.warehouse_id, name=w.name, lat=w.lat, lon=w.lon)
        for w in await resources.list_warehouses(conn)
    ]


@router.get("/warehouses/{warehouse_id}", tags=["stock"])
async def get_warehouse(warehouse_id: str, conn: Conn, caller: Annotated[Principal, Depends(
        allow(Role.EXPERT, Role.ENGINEER))]) -> WarehouseOut:  # fmt: skip
    """One warehouse and what it holds."""
    w = await resources.get_warehouse(conn, warehouse_id)
    stock = await resources.stock_at(conn, LocationKind.WAREHOUSE, warehouse_id)
    return WarehouseOut(
        warehouse_id=w.warehouse_id,
        name=w.name,
        lat=w.lat,
        lon=w.lon,
        stock=[StockLineOut.of(s) for s in stock],
    )


@router.post("/parts", status_code=status.HTTP_201_CREATED, tags=["stock"], dependencies=[Admin])
async def upsert_part(body: PartIn, conn: Conn) -> PartIn:
    """Create or rename a part number."""
    await resources.upsert_parts(conn, [Part(body.part_no, body.name)])
    return body


@router.get("/parts", tags=["stock"])
async def list_parts(
    conn: Conn,
    caller: Annotated[Principal, Depends(allow(Role.EXPERT, Role.ENGINEER))],
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[PartIn]:
    """Part numbers in order, keyset-paged by `after`."""
    found = await resources.list_parts(conn, after=after, limit=limit)
    return [PartIn(part_no=p.part_no, name=p.name) for p in found]


@router.put("/stock", tags=["stock"], dependencies=[Admin])
async def set_stock(body: list[StockIn], conn: Conn) -> list[StockLineOut]:
    """Set what is on hand (after a count or a delivery); reservations are kept."""
    lines = [StockLine(s.location_kind, s.location_id, s.part_no, s.quantity, 0) for s in body]
    await resources.set_stock(conn, lines)
    kept: list[StockLineOut] = []
    for kind, location in sorted({(s.location_kind, s.location_id) for s in lines}):
        kept += [StockLineOut.of(x) for x in await resources.stock_at(conn, kind, location)]
    return kept


async def _write_import(conn: asyncpg.Connection, kind: str, text: str) -> int:
    # Parse the whole file first: nothing is written unless every line is good.
    if kind == "engineers":
        return await resources.upsert_engineers(conn, csvimport.parse_engineers(text))
    if kind == "warehouses":
        return await resources.upsert_warehouses(conn, csvimport.parse_warehouses(text))
    if kind == "parts":
        return await resources.upsert_parts(conn, csvimport.parse_parts(text))
    return await resources.set_stock(conn, csvimport.parse_stock(text))


@router.post(
    "/import/{kind}",
    tags=["stock"],
    dependencies=[Admin],
    openapi_extra={
        "requestBody": {"required": True, "content": {"text/csv": {"schema": {"type": "string"}}}}
    },
)
async def import_csv(
    kind: Literal["engineers", "warehouses", "parts", "stock"], conn: Conn, request: Request
) -> ImportOut:
    """Bulk create or update from CSV (`text/csv`, header row first). All or nothing: a file
    with any bad line imports nothing and the answer lists every problem with its line number.
    """
    try:
        text = (await request.body()).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise csvimport.CsvImportError([f"the file is not UTF-8: {exc}"]) from exc
    async with conn.transaction():
        count = await _write_import(conn, kind, text)
    return ImportOut(kind=kind, rows=count)
