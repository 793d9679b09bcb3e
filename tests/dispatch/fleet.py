"""Builders for small fleets on a line of latitude, where distances are easy to reason about."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from dispatch import geo
from dispatch.fleet import Engineer, Warehouse
from dispatch.geo import GeoPoint
from dispatch.needs import OrderNeed, PartNeed

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
ORIGIN = GeoPoint(48.0, 11.0)
KM_PER_DEG_LON = geo.haversine_km(ORIGIN, GeoPoint(48.0, 12.0))


def east(km: float, north_km: float = 0.0) -> GeoPoint:
    """A point `km` east (negative: west) and `north_km` north of the origin."""
    return GeoPoint(48.0 + north_km / 111.2, 11.0 + km / KM_PER_DEG_LON)


def engineer(
    engineer_id: str,
    km: float,
    *,
    skills: frozenset[str] = frozenset({"hydraulics"}),
    van: Mapping[str, int] | None = None,
    **kwargs: object,
) -> Engineer:
    where = east(km)
    return Engineer(engineer_id, where, where, skills, van_stock=dict(van or {}), **kwargs)  # type: ignore[arg-type]


def warehouse(warehouse_id: str, km: float, stock: Mapping[str, int]) -> Warehouse:
    return Warehouse(warehouse_id, east(km), dict(stock))


def order(
    order_id: str = "O-1",
    km: float = 0.0,
    parts: Mapping[str, int] | None = None,
    skills: frozenset[str] = frozenset({"hydraulics"}),
) -> OrderNeed:
    needs = tuple(PartNeed(p, q) for p, q in (parts if parts is not None else {"HF-1": 1}).items())
    return OrderNeed(order_id, east(km), needs, skills)


def road_min(a: GeoPoint, b: GeoPoint, speed_kmh: float = geo.DEFAULT_SPEED_KMH) -> float:
    return geo.travel_min(geo.road_km(geo.haversine_km(a, b)), speed_kmh)
