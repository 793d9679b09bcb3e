"""Fleet: the engineers and warehouses matching chooses from, and the travel model's figures.

This module owns the values a fleet snapshot is made of: `Engineer` (position, skills, van stock,
load and shift), `Warehouse` (position and stock) and `MatchingPolicy` (road factor, pickup time,
warehouse alternatives for batches). Stock in these values is what was available (not reserved)
when the snapshot was taken; matching takes it as given.

They are plain frozen values: this module must never read a database, look at the clock or
import `telematics`. Arranging them for fast search is `dispatch.fleet_index`'s job.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from dispatch import geo
from dispatch.geo import GeoPoint


@dataclass(frozen=True, slots=True)
class Engineer:
    """A field service engineer as matching sees them.

    Attributes:
        engineer_id: The engineer.
        position: Last known position of the van, None when unknown (then `home_base`).
        home_base: Where the van starts its day.
        skills: Skills from the knowledge base's vocabulary (`hydraulics`, ...).
        van_stock: Part number -> units in the van, not reserved by another order.
        open_orders: Orders assigned and not yet completed.
        max_orders: Open orders the engineer may carry at once.
        on_shift: False when the engineer is off (sick, on leave, signed off).
        shift_start: Start of the current shift (aware), None when not tracked.
        shift_end: End of the current shift (aware), None when not tracked; the engineer must
            reach the site before it.
        speed_kmh: Average door-to-door speed (see `geo.SPEED_KMH_BY_ROAD_CLASS`).
    """

    engineer_id: str
    position: GeoPoint | None
    home_base: GeoPoint
    skills: frozenset[str]
    van_stock: Mapping[str, int] = field(default_factory=dict)
    open_orders: int = 0
    max_orders: int = 1
    on_shift: bool = True
    shift_start: datetime | None = None
    shift_end: datetime | None = None
    speed_kmh: float = geo.DEFAULT_SPEED_KMH

    @property
    def start(self) -> GeoPoint:
        """Where a trip starts: the last known position, else the home base."""
        return self.position if self.position is not None else self.home_base


@dataclass(frozen=True, slots=True)
class Warehouse:
    """A parts warehouse.

    Attributes:
        warehouse_id: The warehouse.
        position: Where it is.
        stock: Part number -> units available (not reserved).
    """

    warehouse_id: str
    position: GeoPoint
    stock: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class MatchingPolicy:
    """Tunable figures of the travel model.

    Attributes:
        road_factor: Road kilometres per straight-line kilometre.
        pickup_min: Minutes spent at a warehouse counter collecting parts.
        warehouse_alternatives: Warehouses per engineer a batch may fall back to when its best
            warehouse runs short because other orders of the batch draw on it.
    """

    road_factor: float = geo.ROAD_FACTOR
    pickup_min: float = 10.0
    warehouse_alternatives: int = 3
