"""Distances and travel times, deliberately simple: straight line x road factor / average speed.

This module owns the one travel model matching uses, in both a scalar form (for explanations and
tests) and a vectorised form (unit vectors on the sphere, so one matrix product gives the angles
between many engineers and many warehouses). Road distance is the great-circle distance times a
road factor (1.3 is the usual ratio of road to straight-line distance in rural Europe); travel
time is road distance over an average speed, which may come from the road class an engineer
mostly drives on.

It must never call a routing service, read a map or look at the clock: a better travel model
(real road graphs, traffic) replaces this module behind the same functions, not inside matching.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

import numpy as np
from numpy.typing import NDArray

EARTH_RADIUS_KM: Final = 6371.0088
"""Mean Earth radius (IUGG)."""

ROAD_FACTOR: Final = 1.3
"""Road distance per straight-line kilometre."""


class RoadClass(StrEnum):
    """The kind of road a trip mostly uses; it sets the average speed."""

    URBAN = "urban"
    RURAL = "rural"
    MOTORWAY = "motorway"


SPEED_KMH_BY_ROAD_CLASS: Final = {
    RoadClass.URBAN: 30.0,
    RoadClass.RURAL: 60.0,
    RoadClass.MOTORWAY: 90.0,
}
"""Average door-to-door speeds of a service van, stops and junctions included."""

DEFAULT_SPEED_KMH: Final = SPEED_KMH_BY_ROAD_CLASS[RoadClass.RURAL]


@dataclass(frozen=True, slots=True)
class GeoPoint:
    """A position in WGS 84 degrees.

    Attributes:
        lat: Latitude, -90..90.
        lon: Longitude, -180..180.
    """

    lat: float
    lon: float

    def __post_init__(self) -> None:
        if not (-90.0 <= self.lat <= 90.0 and -180.0 <= self.lon <= 180.0):
            raise ValueError(f"not a position: lat {self.lat}, lon {self.lon}")


def haversine_km(a: GeoPoint, b: GeoPoint) -> float:
    """Great-circle distance between two points, in kilometres."""
    lat1, lat2 = math.radians(a.lat), math.radians(b.lat)
    dlat, dlon = lat2 - lat1, math.radians(b.lon - a.lon)
    h = math.sin(dlat / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin(dlon / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def road_km(straight_km: float, road_factor: float = ROAD_FACTOR) -> float:
    """Estimated road distance for a straight-line distance."""
    return straight_km * road_factor


def travel_min(distance_road_km: float, speed_kmh: float) -> float:
    """Minutes to drive a road distance at an average speed."""
    return distance_road_km / speed_kmh * 60.0


def unit_vectors(
    lats_deg: NDArray[np.float64], lons_deg: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Positions as unit vectors on the sphere, shape (n, 3)."""
    lat, lon = np.radians(lats_deg), np.radians(lons_deg)
    cos_lat = np.cos(lat)
    return np.column_stack((cos_lat * np.cos(lon), cos_lat * np.sin(lon), np.sin(lat)))


def point_vector(point: GeoPoint) -> NDArray[np.float64]:
    """One position as a unit vector, shape (3,)."""
    vector: NDArray[np.float64] = unit_vectors(np.array([point.lat]), np.array([point.lon]))[0]
    return vector


def great_circle_km(a_xyz: NDArray[np.float64], b_xyz: NDArray[np.float64]) -> NDArray[np.float64]:
    """Great-circle distances between unit vectors, in kilometres.

    Args:
        a_xyz: Shape (n, 3).
        b_xyz: Shape (m, 3), or (3,) for one point.

    Returns:
        Shape (n, m), or (n,) for one point. The arccosine of the dot product is accurate to well
        under a metre, plenty for travel estimates.
    """
    # Dot products spelt out rather than `a @ b.T`: these matrices are small, and OpenBLAS's
    # threads turned 1 ms rankings into 5 ms ones on a busy two-core machine.
    if b_xyz.ndim == 1:
        cosines = a_xyz[:, 0] * b_xyz[0] + a_xyz[:, 1] * b_xyz[1] + a_xyz[:, 2] * b_xyz[2]
    else:
        cosines = np.multiply.outer(a_xyz[:, 0], b_xyz[:, 0])
        cosines += np.multiply.outer(a_xyz[:, 1], b_xyz[:, 1])
        cosines += np.multiply.outer(a_xyz[:, 2], b_xyz[:, 2])
    distances_km: NDArray[np.float64] = np.arccos(np.clip(cosines, -1.0, 1.0)) * EARTH_RADIUS_KM
    return distances_km
