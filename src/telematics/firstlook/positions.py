"""The autopilot's service vans on the map: positions published as a van's tracker would, on
`engineers/{engineer_id}/position` (wire contract v1), along the order's route.

One client, connected on first use and again after a failure; a position that cannot be published
is skipped (the next one follows within seconds), never retried. The route is the order's own
(`route.stops`: the pickup warehouse, then the site), walked from the engineer's home at an even
pace over the autopilot's travel step, so the order's tracking (distance, recomputed ETA, arrival
on site) shows what a real van would give it.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections.abc import Sequence

import aiomqtt
import orjson

from telematics.ingest.mqtt import LazyPublisher, MqttEndpoint

log = logging.getLogger(__name__)

Point = tuple[float, float]


def along(points: Sequence[Point], fraction: float) -> Point:
    """The point `fraction` (0..1) of the way along a path of (lat, lon) points, by length on a
    flat projection (good to metres over a city's distances).
    """
    if len(points) == 1 or fraction <= 0:
        return points[0]
    legs = [_metres(a, b) for a, b in itertools.pairwise(points)]
    goal = min(1.0, fraction) * sum(legs)
    for (a, b), leg in zip(itertools.pairwise(points), legs, strict=True):
        if goal <= leg and leg > 0:
            f = goal / leg
            return a[0] + f * (b[0] - a[0]), a[1] + f * (b[1] - a[1])
        goal -= leg
    return points[-1]


def _metres(a: Point, b: Point) -> float:
    dy = (b[0] - a[0]) * 111_320.0
    dx = (b[1] - a[1]) * 111_320.0 * math.cos(math.radians((a[0] + b[0]) / 2))
    return math.hypot(dx, dy)


class PositionPublisher:
    """Publishes van positions at QoS 1; connects lazily, reconnects after a failure."""

    def __init__(
        self, endpoint: MqttEndpoint, client_id: str, *, protocol: str = "5", timeout_s: float = 5
    ) -> None:
        """Create the publisher; nothing connects until the first `publish`."""
        self._publisher = LazyPublisher(endpoint, client_id, protocol=protocol, timeout_s=timeout_s)

    async def publish(self, engineer_id: str, at: Point) -> bool:
        """Publish one position stamped now; False if the broker did not take it."""
        payload = orjson.dumps(
            {"ts": int(time.time() * 1000), "lat": float(at[0]), "lon": float(at[1])}
        )
        try:
            await self._publisher.publish(f"engineers/{engineer_id}/position", payload)
        except (aiomqtt.MqttError, TimeoutError, OSError) as exc:
            log.warning("van position of %s not published: %s", engineer_id, exc)
            return False
        return True

    async def close(self) -> None:
        """Disconnect (if connected)."""
        await self._publisher.close()
