from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from dispatch import geo
from dispatch.errors import MatchingInputError
from dispatch.fleet import Engineer, Warehouse
from dispatch.fleet_index import FleetIndex
from dispatch.geo import GeoPoint
from dispatch.matching import rank
from dispatch.needs import OrderNeed, PartNeed
from dispatch.ranking import RejectReason, StopKind
from tests.dispatch.fleet import NOW, east, engineer, order, road_min, warehouse

PICKUP_MIN = 10.0


def test_holder_farther_away_wins_when_the_pickup_detour_costs_more() -> None:
    pool = FleetIndex(
        [engineer("E-near", 5), engineer("E-holder", -30, van={"HF-1": 1})],
        [warehouse("W-far", 40, {"HF-1": 5})],
    )
    ranking = rank(order(), pool, now=NOW)
    assert [c.engineer_id for c in ranking.candidates] == ["E-holder", "E-near"]
    holder, near = ranking.candidates
    assert holder.pickup_warehouse_id is None
    assert holder.detour_km == 0.0
    assert holder.eta_min == pytest.approx(road_min(east(-30), east(0)), rel=1e-6)
    assert near.pickup_warehouse_id == "W-far"
    expected = road_min(east(5), east(40)) + road_min(east(40), east(0)) + PICKUP_MIN
    assert near.eta_min == pytest.approx(expected, rel=1e-6)


def test_nearer_engineer_wins_through_a_short_detour_to_a_warehouse() -> None:
    pool = FleetIndex(
        [engineer("E-near", 5), engineer("E-holder", -30, van={"HF-1": 1})],
        [warehouse("W-close", 6, {"HF-1": 5})],
    )
    ranking = rank(order(), pool, now=NOW)
    assert [c.engineer_id for c in ranking.candidates] == ["E-near", "E-holder"]
    best = ranking.candidates[0]
    assert best.pickup_warehouse_id == "W-close"
    assert [s.kind for s in best.route] == [StopKind.WAREHOUSE, StopKind.SITE]
    assert best.route[0].distance_km == pytest.approx(geo.road_km(1.0), rel=1e-3)
    assert best.distance_km == pytest.approx(geo.road_km(1.0 + 6.0), rel=1e-3)
    assert best.detour_km == pytest.approx(best.distance_km - best.direct_km)
    assert best.detour_km == pytest.approx(geo.road_km(2.0), rel=1e-3)


def test_without_any_van_stock_the_warehouse_adding_least_detour_is_chosen() -> None:
    # From E-1, 20 km east of the site, in straight-line km: W-behind (30 km east) adds 20,
    # W-west (5 km past the site) adds 10, W-north (3 km north of the site) adds about 3.2.
    pool = FleetIndex(
        [engineer("E-1", 20)],
        [
            warehouse("W-behind", 30, {"HF-1": 2}),
            Warehouse("W-north", east(0, north_km=3), {"HF-1": 2}),
            warehouse("W-west", -5, {"HF-1": 2}),
        ],
    )
    best = rank(order(), pool, now=NOW).best
    assert best is not None
    assert best.pickup_warehouse_id == "W-north"
    straight = geo.haversine_km(east(20), east(0, 3)) + geo.haversine_km(east(0, 3), east(0))
    assert best.detour_km == pytest.approx(geo.road_km(straight - 20.0), rel=1e-4)


def test_a_warehouse_must_hold_every_part_in_the_quantity_needed() -> None:
    pool = FleetIndex(
        [engineer("E-1", 10, van={"HF-1": 1, "HO-2": 1})],
        [
            warehouse("W-partial", 1, {"HF-1": 9}),
            warehouse("W-short", 2, {"HF-1": 9, "HO-2": 1}),
            warehouse("W-full", 30, {"HF-1": 9, "HO-2": 2}),
        ],
    )
    ranking = rank(order(parts={"HF-1": 1, "HO-2": 2}), pool, now=NOW)
    best = ranking.best
    assert best is not None
    assert best.pickup_warehouse_id == "W-full"
    assert "van lacks HO-2 x2" in best.explanation


def test_when_no_warehouse_holds_all_parts_only_full_vans_serve_and_the_ranking_says_so() -> None:
    pool = FleetIndex(
        [
            engineer("E-empty", 1),
            engineer("E-holder", 50, van={"HF-1": 1, "HO-2": 1}),
        ],
        [warehouse("W-1", 1, {"HF-1": 9}), warehouse("W-2", 2, {"HO-2": 9})],
    )
    ranking = rank(order(parts={"HF-1": 1, "HO-2": 1}), pool, now=NOW)
    assert [c.engineer_id for c in ranking.candidates] == ["E-holder"]
    assert ranking.rejected_counts == {RejectReason.NO_PARTS_SOURCE: 1}
    assert "no warehouse holds all of HF-1 x1, HO-2 x1" in ranking.note
    assert "split pickups" in ranking.note
    assert ranking.rejected_examples[0].text.startswith("van lacks HF-1 x1, HO-2 x1")


def test_skills_shift_and_load_filter_candidates_with_reasons() -> None:
    pool = FleetIndex(
        [
            engineer("E-ok", 40, van={"HF-1": 1}),
            engineer("E-unskilled", 1, skills=frozenset({"electrical"}), van={"HF-1": 1}),
            engineer("E-off", 1, van={"HF-1": 1}, on_shift=False),
            engineer(
                "E-later",
                1,
                van={"HF-1": 1},
                shift_start=NOW + timedelta(hours=2),
                shift_end=NOW + timedelta(hours=10),
            ),
            engineer("E-busy", 1, van={"HF-1": 1}, open_orders=2, max_orders=2),
            engineer("E-leaving", 2, van={"HF-1": 1}, shift_end=NOW + timedelta(minutes=1)),
        ],
        [],
    )
    ranking = rank(order(skills=frozenset({"hydraulics"})), pool, now=NOW)
    assert [c.engineer_id for c in ranking.candidates] == ["E-ok"]
    assert ranking.rejected_counts == {
        RejectReason.MISSING_SKILLS: 1,
        RejectReason.OFF_SHIFT: 2,
        RejectReason.AT_CAPACITY: 1,
        RejectReason.SHIFT_ENDS_BEFORE_ARRIVAL: 1,
    }
    texts = {r.engineer_id: r.text for r in ranking.rejected_examples}
    assert texts == {
        "E-unskilled": "lacks hydraulics",
        "E-off": "off shift",
        "E-later": "shift 11:00-19:00 UTC does not cover now",
        "E-busy": "2/2 open orders",
        "E-leaving": "would arrive after the shift ends at 09:01 UTC",
    }
    assert "rejected, at_capacity (e.g. E-busy: 2/2 open orders)" in ranking.explain()


def test_an_engineer_needs_every_skill_of_the_order() -> None:
    skills = frozenset({"hydraulics", "electrical"})
    pool = FleetIndex(
        [
            engineer("E-both", 30, skills=skills, van={"HF-1": 1}),
            engineer("E-one", 1, van={"HF-1": 1}),
        ],
        [],
    )
    ranking = rank(order(skills=skills), pool, now=NOW)
    assert [c.engineer_id for c in ranking.candidates] == ["E-both"]
    assert ranking.rejected_examples[0].text == "lacks electrical"


def test_a_skill_nobody_has_rejects_everyone() -> None:
    pool = FleetIndex([engineer("E-1", 1, van={"HF-1": 1})], [])
    ranking = rank(order(skills=frozenset({"welding"})), pool, now=NOW)
    assert ranking.candidates == ()
    assert ranking.rejected_counts == {RejectReason.MISSING_SKILLS: 1}
    assert ranking.explain().startswith("no engineer can serve this order")


def test_explanations_name_distance_detour_eta_and_why_others_lost() -> None:
    pool = FleetIndex(
        [engineer("E-near", 5), engineer("E-holder", -30, van={"HF-1": 1})],
        [warehouse("W-close", 6, {"HF-1": 5})],
    )
    first, second = rank(order(), pool, now=NOW).candidates
    assert first.explanation.startswith("E-near: van lacks HF-1 x1; pickup at W-close (detour 2.6")
    assert "km in all against 6.5 km direct, ETA 19 min" in first.explanation
    assert first.explanation.endswith("fastest, 20 min ahead of E-holder")
    assert second.explanation == (
        "E-holder: van holds HF-1 x1; straight to site, 39.0 km, ETA 39 min; 20 min behind E-near"
    )


def test_a_van_holding_too_few_units_does_not_count_as_holding() -> None:
    pool = FleetIndex([engineer("E-1", 5, van={"HF-1": 1})], [warehouse("W", 8, {"HF-1": 3})])
    best = rank(order(parts={"HF-1": 2}), pool, now=NOW).best
    assert best is not None
    assert best.pickup_warehouse_id == "W"


def test_position_falls_back_to_home_base_and_speed_sets_the_eta() -> None:
    base = east(30)
    slow = Engineer("E-1", None, base, frozenset({"hydraulics"}), {"HF-1": 1}, speed_kmh=30.0)
    best = rank(order(), FleetIndex([slow], []), now=NOW).best
    assert best is not None
    assert best.eta_min == pytest.approx(road_min(base, east(0), 30.0), rel=1e-6)


def test_limit_caps_candidates_and_counts_the_rest_as_outranked() -> None:
    pool = FleetIndex([engineer(f"E-{i}", i + 1, van={"HF-1": 1}) for i in range(10)], [])
    ranking = rank(order(), pool, now=NOW, limit=3)
    assert [c.engineer_id for c in ranking.candidates] == ["E-0", "E-1", "E-2"]
    assert ranking.outranked == 7


def test_orders_without_parts_go_straight_to_site() -> None:
    pool = FleetIndex([engineer("E-1", 3)], [])
    best = rank(order(parts={}), pool, now=NOW).best
    assert best is not None
    assert best.pickup_warehouse_id is None
    assert "no parts needed" in best.explanation


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_ranking_equals_brute_force_on_a_random_fleet(seed: int) -> None:
    """The lower-bound search returns exactly the fastest routes a full scan finds."""
    rng = np.random.default_rng(seed)
    parts = [f"P-{i}" for i in range(12)]
    skills = ["a", "b", "c"]

    def point() -> GeoPoint:
        return GeoPoint(float(rng.uniform(47, 49)), float(rng.uniform(10, 13)))

    engineers = [
        Engineer(
            f"E-{i}",
            point(),
            point(),
            frozenset(s for s in skills if rng.random() < 0.7),
            {p: int(rng.integers(1, 3)) for p in rng.choice(parts, 3, replace=False)},
            open_orders=int(rng.integers(0, 3)),
            max_orders=2,
            speed_kmh=float(rng.uniform(40, 80)),
            shift_end=NOW + timedelta(minutes=float(rng.uniform(30, 600))),
        )
        for i in range(700)
    ]
    warehouses = [
        Warehouse(f"W-{i}", point(), {p: int(rng.integers(0, 4)) for p in parts}) for i in range(25)
    ]
    pool = FleetIndex(engineers, warehouses)
    for n in range(5):
        needs = tuple(PartNeed(str(p)) for p in rng.choice(parts, n % 3 + 1, replace=False))
        need = OrderNeed(f"O-{n}", point(), needs, frozenset({skills[n % 3]}))
        got = rank(need, pool, now=NOW, limit=8)
        expected = _brute_force(need, engineers, warehouses)[:8]
        assert [c.eta_min for c in got.candidates] == pytest.approx([e for e, _ in expected])
        assert got.outranked + len(got.candidates) + sum(got.rejected_counts.values()) <= 700


def _brute_force(
    need: OrderNeed, engineers: list[Engineer], warehouses: list[Warehouse]
) -> list[tuple[float, str]]:
    found = []
    for e in engineers:
        if not need.skills <= e.skills or e.open_orders >= e.max_orders:
            continue
        holds = all(e.van_stock.get(p.part_no, 0) >= p.quantity for p in need.parts)
        if holds:
            eta = road_min(e.start, need.site, e.speed_kmh)
        else:
            etas = [
                road_min(e.start, w.position, e.speed_kmh)
                + road_min(w.position, need.site, e.speed_kmh)
                + PICKUP_MIN
                for w in warehouses
                if all(w.stock.get(p.part_no, 0) >= p.quantity for p in need.parts)
            ]
            if not etas:
                continue
            eta = min(etas)
        assert e.shift_end is not None
        if NOW + timedelta(minutes=eta) <= e.shift_end:
            found.append((eta, e.engineer_id))
    return sorted(found)


def test_bad_input_is_refused() -> None:
    with pytest.raises(MatchingInputError, match="engineer E-1: id given twice"):
        FleetIndex([engineer("E-1", 1), engineer("E-1", 2)], [])
    with pytest.raises(MatchingInputError, match="warehouse W: -1 units of HF-1"):
        FleetIndex([], [warehouse("W", 1, {"HF-1": -1})])
    with pytest.raises(MatchingInputError, match="naive"):
        rank(order(), FleetIndex([], []), now=NOW.replace(tzinfo=None))
    with pytest.raises(MatchingInputError, match="quantity 0"):
        PartNeed("HF-1", 0)
    with pytest.raises(MatchingInputError, match="appears twice"):
        OrderNeed("O", east(0), (PartNeed("A"), PartNeed("A")))
    with pytest.raises(MatchingInputError, match="speed"):
        FleetIndex([engineer("E-1", 1, speed_kmh=0.0)], [])


def test_an_empty_fleet_ranks_nobody() -> None:
    ranking = rank(order(), FleetIndex([], []), now=NOW)
    assert ranking.candidates == ()
    assert ranking.outranked == 0
