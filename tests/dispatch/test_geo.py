from __future__ import annotations

import numpy as np
import pytest

from dispatch import geo
from dispatch.geo import GeoPoint

MUNICH = GeoPoint(48.1374, 11.5755)
BERLIN = GeoPoint(52.5200, 13.4050)


def test_haversine_matches_a_known_distance() -> None:
    assert geo.haversine_km(MUNICH, BERLIN) == pytest.approx(504.2, abs=0.5)
    assert geo.haversine_km(MUNICH, MUNICH) == 0.0


def test_vectorised_distances_agree_with_the_haversine() -> None:
    rng = np.random.default_rng(3)
    points = [GeoPoint(float(a), float(b)) for a, b in rng.uniform([-60, -170], [60, 170], (40, 2))]
    xyz = geo.unit_vectors(np.array([p.lat for p in points]), np.array([p.lon for p in points]))
    matrix = geo.great_circle_km(xyz, xyz)
    expected = [[geo.haversine_km(a, b) for b in points] for a in points]
    np.testing.assert_allclose(matrix, expected, rtol=1e-9, atol=1e-3)
    np.testing.assert_allclose(geo.great_circle_km(xyz, xyz[5]), matrix[:, 5])


def test_travel_time_is_road_distance_over_speed() -> None:
    assert geo.road_km(100.0) == pytest.approx(130.0)
    assert geo.travel_min(geo.road_km(100.0), geo.SPEED_KMH_BY_ROAD_CLASS[geo.RoadClass.URBAN]) == (
        pytest.approx(260.0)
    )


def test_positions_out_of_range_are_refused() -> None:
    with pytest.raises(ValueError, match="not a position"):
        GeoPoint(91.0, 0.0)
