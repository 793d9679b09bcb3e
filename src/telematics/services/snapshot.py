"""The fleet as matching sees it, read from the store: engineers with their position, skills,
load and today's shift, warehouses, and the unreserved stock of the parts an order needs.

It only reads, in the caller's transaction, and never decides: ranking and assignment are the
pure `dispatch` package's, writing the result is `services.dispatching`'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import asyncpg

from dispatch.fleet import Engineer, Warehouse
from dispatch.fleet_index import FleetIndex
from dispatch.geo import GeoPoint
from dispatch.needs import PartNeed
from dispatch.orders import SourceKind, StockMovement
from telematics.store import resources


def _shift_window(p: resources.EngineerProfile, now: datetime) -> tuple[datetime, datetime] | None:
    """Today's shift in the engineer's time zone, as aware UTC times; None when not tracked."""
    if p.shift_start is None or p.shift_end is None:
        return None
    try:
        tz = ZoneInfo(p.shift_tz)
    except (ZoneInfoNotFoundError, ValueError):
        tz = ZoneInfo("UTC")
    local = now.astimezone(tz)
    start = datetime.combine(local.date(), p.shift_start, tz)
    end = datetime.combine(local.date(), p.shift_end, tz)
    if end <= start:  # a night shift: it ends tomorrow, or began yesterday
        if local < end:
            start -= timedelta(days=1)
        else:
            end += timedelta(days=1)
    return start.astimezone(UTC), end.astimezone(UTC)


def _point(lat: float | None, lon: float | None) -> GeoPoint | None:
    return None if lat is None or lon is None else GeoPoint(lat, lon)


async def fleet_snapshot(
    conn: asyncpg.Connection,
    parts: Sequence[PartNeed],
    now: datetime,
    *,
    engineer_id: str | None = None,
    warehouse_id: str | None = None,
    released: Sequence[StockMovement] = (),
) -> FleetIndex:
    """Engineers and warehouses as matching sees them, with the stock of `parts` available now.

    Args:
        conn: The connection (of the caller's transaction).
        parts: The parts whose stock matters.
        now: The current time (aware).
        engineer_id: Only this engineer (a dispatcher's choice, or a transfer's).
        warehouse_id: Only this warehouse, and vans count as empty: the parts are collected there.
        released: Units the same transaction releases first (a transferred order's reservation),
            counted as available.

    Raises:
        NotFoundError: `engineer_id` or `warehouse_id` does not exist.
    """
    part_nos = [p.part_no for p in parts]
    vans: dict[str, dict[str, int]] = {}
    stores: dict[str, dict[str, int]] = {}
    for line in await resources.available_stock(conn, part_nos):
        target = vans if line.location_kind is resources.LocationKind.VAN else stores
        target.setdefault(line.location_id, {})[line.part_no] = line.available
    for m in released:
        target = vans if m.source.kind is SourceKind.VAN else stores
        held = target.setdefault(m.source.holder_id, {})
        held[m.part_no] = held.get(m.part_no, 0) + m.quantity
    if warehouse_id is not None:
        vans = {}
    profiles = (
        [await resources.get_engineer(conn, engineer_id)]
        if engineer_id is not None
        else await resources.list_profiles(conn)
    )
    engineers = [e for p in profiles if (e := _engineer(p, vans, now)) is not None]
    sites = (
        [await resources.get_warehouse(conn, warehouse_id)]
        if warehouse_id is not None
        else await resources.list_warehouses(conn)
    )
    warehouses = [
        Warehouse(w.warehouse_id, GeoPoint(w.lat, w.lon), stores.get(w.warehouse_id, {}))
        for w in sites
    ]
    return FleetIndex(engineers, warehouses)


def _engineer(
    p: resources.EngineerProfile, vans: dict[str, dict[str, int]], now: datetime
) -> Engineer | None:
    home = _point(p.home_lat, p.home_lon)
    last = _point(p.last_lat, p.last_lon)
    if home is None and last is None:
        return None  # nowhere to start from: cannot be routed
    shift = _shift_window(p, now)
    return Engineer(
        engineer_id=p.engineer_id,
        position=last,
        home_base=home or last or GeoPoint(0.0, 0.0),
        skills=frozenset(p.skills),
        van_stock=vans.get(p.engineer_id, {}),
        open_orders=p.open_orders,
        max_orders=p.max_orders,
        on_shift=p.status == "available",
        shift_start=shift[0] if shift else None,
        shift_end=shift[1] if shift else None,
        speed_kmh=p.speed_kmh,
    )
