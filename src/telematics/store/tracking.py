"""Engineer tracking on orders: the engineer's last reported position, the distance and ETA to
the site recomputed from it, and whether the arrival was reported far from the site.

Positions come from `engineer_positions` (MQTT `engineers/{engineer_id}/position`). The travel
model is matching's (`dispatch.geo`: straight line x road factor / the engineer's speed), so a
recomputed ETA and a planned one are comparable. `arrived_off_site` compares the last position
reported at or before the arrival with the site: farther than the machine's site radius, or the
setting's distance when the machine has none, is flagged.

It must never decide who may see a position (the routers').
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from dispatch import geo


@dataclass(frozen=True, slots=True)
class Tracking:
    """Where an order's engineer is, as last reported.

    Attributes:
        engineer_id: The engineer.
        at: When the position was reported; None when they never reported one.
        lat: Latitude of the last position.
        lon: Longitude of the last position.
        distance_km: Road kilometres from there to the site.
        eta: When they would arrive, leaving from there at `now`.
        arrived_off_site: The arrival was reported farther from the site than allowed;
            None before an arrival, or when no position preceded it.
        arrival_distance_m: Straight-line metres from the site at the arrival.
    """

    engineer_id: str
    at: datetime | None
    lat: float | None
    lon: float | None
    distance_km: float | None
    eta: datetime | None
    arrived_off_site: bool | None
    arrival_distance_m: float | None


_QUERY = """
    WITH wanted AS (
        SELECT order_id, state, engineer_id, machine_id, site_lat, site_lon, arrived_at
        FROM orders WHERE order_id = ANY($1::bigint[]) AND engineer_id IS NOT NULL
    ), last AS (  -- once per engineer, however many of the orders are theirs
        SELECT e.engineer_id, p.ts, p.lat, p.lon
        FROM (SELECT DISTINCT engineer_id FROM wanted) e
        LEFT JOIN LATERAL (
            SELECT ts, lat, lon FROM engineer_positions p
            WHERE p.engineer_id = e.engineer_id ORDER BY ts DESC LIMIT 1) p ON true
    )
    SELECT o.order_id, o.state, o.engineer_id, o.site_lat, o.site_lon, o.arrived_at,
           e.speed_kmh, m.site_radius_m, last.ts, last.lat, last.lon,
           arr.lat AS arr_lat, arr.lon AS arr_lon
    FROM wanted o
    JOIN engineers e ON e.engineer_id = o.engineer_id
    JOIN machines m ON m.machine_id = o.machine_id
    JOIN last ON last.engineer_id = o.engineer_id
    LEFT JOIN LATERAL (
        SELECT lat, lon FROM engineer_positions p
        WHERE p.engineer_id = o.engineer_id AND o.arrived_at IS NOT NULL
          AND p.ts <= o.arrived_at AND p.ts >= o.arrived_at - interval '1 hour'
        ORDER BY ts DESC LIMIT 1) arr ON true
"""

_MOVING = ("dispatched", "accepted", "en_route")


async def track(
    conn: asyncpg.Connection, order_ids: Sequence[int], *, now: datetime, off_site_m: float
) -> dict[int, Tracking]:
    """Tracking of each order that has an engineer (orders without one are left out).

    Args:
        conn: A connection.
        order_ids: The orders.
        now: The time an ETA leaves from.
        off_site_m: Arrival distance beyond which `arrived_off_site` is set, for machines
            without a site radius of their own.
    """
    if not order_ids:
        return {}
    rows = await conn.fetch(_QUERY, list(order_ids))
    found: dict[int, Tracking] = {}
    for r in rows:
        site = geo.GeoPoint(r["site_lat"], r["site_lon"])
        distance_km = eta = None
        if r["ts"] is not None:
            here = geo.GeoPoint(r["lat"], r["lon"])
            distance_km = geo.road_km(geo.haversine_km(here, site))
            if r["state"] in _MOVING:
                eta = now + timedelta(minutes=geo.travel_min(distance_km, r["speed_kmh"]))
        off_site = arrival_m = None
        if r["arr_lat"] is not None:
            arrival_m = geo.haversine_km(geo.GeoPoint(r["arr_lat"], r["arr_lon"]), site) * 1000
            off_site = arrival_m > (r["site_radius_m"] or off_site_m)
        found[r["order_id"]] = Tracking(
            engineer_id=r["engineer_id"], at=r["ts"], lat=r["lat"], lon=r["lon"],
            distance_km=None if distance_km is None else round(distance_km, 3), eta=eta,
            arrived_off_site=off_site,
            arrival_distance_m=None if arrival_m is None else round(arrival_m, 1),
        )  # fmt: skip
    return found
