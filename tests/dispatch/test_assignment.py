from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from diagnosis.events import Severity
from dispatch.assignment import Assignment, AssignmentMethod, assign, assign_greedy
from dispatch.errors import MatchingInputError
from dispatch.fleet import Engineer, Warehouse
from dispatch.fleet_index import FleetIndex
from dispatch.geo import GeoPoint
from dispatch.needs import OrderNeed, PartNeed
from tests.dispatch.fleet import NOW, east, engineer, order, road_min, warehouse

PICKUP_MIN = 10.0


def _draws(result: Assignment, orders: Sequence[OrderNeed]) -> Counter[tuple[str, str]]:
    needs = {o.order_id: o.parts for o in orders}
    drawn: Counter[tuple[str, str]] = Counter()
    for choice in result.choices:
        c = choice.candidate
        if c is not None and c.pickup_warehouse_id is not None:
            for part in needs[choice.order_id]:
                drawn[c.pickup_warehouse_id, part.part_no] += part.quantity
    return drawn


def _assert_feasible(result: Assignment, orders: Sequence[OrderNeed], pool: FleetIndex) -> None:
    engineers = [c.candidate.engineer_id for c in result.choices if c.candidate is not None]
    assert len(engineers) == len(set(engineers)), "an engineer got two orders of the batch"
    stock = {w.warehouse_id: w.stock for w in pool.warehouses}
    for (w, part), units in _draws(result, orders).items():
        assert units <= stock[w].get(part, 0), f"{w} gives {units} x {part}"
    assert [c.order_id for c in result.choices] == [o.order_id for o in orders]


def test_batch_gives_the_rare_part_holder_to_the_order_that_needs_it_where_greedy_does_not() -> (
    None
):
    # The critical order comes first and, greedily, takes the nearest engineer, E-rare, whose van
    # holds the only nearby RARE-1; the minor order then waits for a trip via a far warehouse.
    pool = FleetIndex(
        [
            engineer("E-rare", 2, van={"HF-1": 1, "RARE-1": 1}),
            engineer("E-other", -6, van={"HF-1": 1}),
        ],
        [warehouse("W-far", 150, {"RARE-1": 5, "HF-1": 5})],
    )
    critical = OrderNeed("O-crit", east(0), (PartNeed("HF-1"),), severity=Severity.CRITICAL)
    minor = OrderNeed("O-minor", east(4), (PartNeed("RARE-1"),), severity=Severity.MINOR)
    orders = [minor, critical]
    batch = assign(orders, pool, now=NOW)
    greedy = assign_greedy(orders, pool, now=NOW)
    assert batch.method is AssignmentMethod.OPTIMAL
    assert greedy.method is AssignmentMethod.GREEDY
    assert {c.order_id: c.candidate.engineer_id for c in batch.choices if c.candidate} == {
        "O-crit": "E-other",
        "O-minor": "E-rare",
    }
    assert greedy.choice("O-crit").candidate is not None
    assert greedy.choice("O-crit").candidate.engineer_id == "E-rare"  # type: ignore[union-attr]
    assert batch.total_delay_min < 0.2 * greedy.total_delay_min
    text = batch.choice("O-crit").explanation
    assert "its fastest, E-rare (ETA 3 min), serves O-minor instead" in text
    assert "greedy: fastest engineer still free" in greedy.choice("O-minor").explanation
    _assert_feasible(batch, orders, pool)
    _assert_feasible(greedy, orders, pool)


def test_batch_never_draws_more_warehouse_units_than_exist() -> None:
    # Both orders' best routes pass W-near, which has one unit; the second must go elsewhere.
    pool = FleetIndex(
        [engineer("E-1", -2), engineer("E-2", 2)],
        [warehouse("W-near", 0, {"X-1": 1}), warehouse("W-far", 40, {"X-1": 5})],
    )
    orders = [order("O-1", -1, {"X-1": 1}), order("O-2", 1, {"X-1": 1})]
    result = assign(orders, pool, now=NOW)
    assert result.method is AssignmentMethod.MILP
    _assert_feasible(result, orders, pool)
    assert sorted(_draws(result, orders).items()) == [(("W-far", "X-1"), 1), (("W-near", "X-1"), 1)]
    assert result.total_delay_min == pytest.approx(_optimum(orders, pool)[1])


def test_an_order_nobody_can_serve_is_left_unassigned_with_a_reason() -> None:
    pool = FleetIndex([engineer("E-1", 1, van={"HF-1": 1})], [])
    orders = [order("O-1", 0), order("O-2", 2), order("O-3", 0, skills=frozenset({"welding"}))]
    result = assign(orders, pool, now=NOW)
    assert len(result.unassigned) == 2
    assert "O-3" in result.unassigned
    assert result.choice("O-3").explanation == (
        "O-3: no engineer left for this order; nobody can serve it (1 missing_skills)"
    )
    (other,) = set(result.unassigned) - {"O-3"}
    assert result.choice(other).explanation.endswith(
        "its 1 candidates serve other orders of the batch"
    )
    with pytest.raises(KeyError):
        result.choice("O-9")


def test_serving_more_orders_beats_a_lower_total() -> None:
    # E-A is the fastest for O-1 but the only one who can serve O-2 at all.
    pool = FleetIndex(
        [
            engineer("E-A", 1, van={"HF-1": 1}, skills=frozenset({"hydraulics", "electrical"})),
            engineer("E-B", 60, van={"HF-1": 1}),
        ],
        [],
    )
    orders = [order("O-1", 0), order("O-2", 0, skills=frozenset({"electrical"}))]
    result = assign(orders, pool, now=NOW)
    assert result.unassigned == ()
    assert result.choice("O-2").candidate is not None
    assert result.choice("O-2").candidate.engineer_id == "E-A"  # type: ignore[union-attr]


def test_an_empty_batch_and_duplicate_orders() -> None:
    pool = FleetIndex([engineer("E-1", 1)], [])
    assert assign([], pool, now=NOW).choices == ()
    with pytest.raises(MatchingInputError, match="order O-1: id given twice"):
        assign([order("O-1"), order("O-1")], pool, now=NOW)


# --- properties -------------------------------------------------------------------------------

PARTS = ("A", "B")
SKILLS = ("x", "y")
points = st.builds(
    GeoPoint, st.floats(47.8, 48.2, allow_nan=False), st.floats(10.7, 11.3, allow_nan=False)
)
stock = st.fixed_dictionaries({p: st.integers(0, 2) for p in PARTS})
van_stock = st.fixed_dictionaries({p: st.sampled_from([0, 0, 0, 1, 2]) for p in PARTS})
skill_sets = st.frozensets(st.sampled_from(SKILLS), max_size=2)


@st.composite
def batches(draw: st.DrawFn) -> tuple[list[OrderNeed], FleetIndex]:
    # Half the cases: empty vans, so that orders compete for the few warehouse units.
    contended = draw(st.booleans())
    engineers = [
        Engineer(
            f"E-{i}",
            draw(points),
            draw(points),
            frozenset() if contended else draw(skill_sets),
            {} if contended else draw(van_stock),
            open_orders=draw(st.integers(0, 1)),
            max_orders=2,
            speed_kmh=draw(st.sampled_from([30.0, 60.0, 90.0])),
        )
        for i in range(draw(st.integers(1, 4)))
    ]
    n_warehouses = draw(st.integers(1 if contended else 0, 2))
    warehouses = [Warehouse(f"W-{i}", draw(points), draw(stock)) for i in range(n_warehouses)]
    orders = []
    for i in range(draw(st.integers(1, 3))):
        need = draw(st.fixed_dictionaries({p: st.sampled_from([0, 1, 1, 2]) for p in PARTS}))
        parts = tuple(PartNeed(p, q) for p, q in need.items() if q) or (PartNeed("A"),)
        severity = draw(st.sampled_from(list(Severity)))
        skills = frozenset() if contended else draw(skill_sets)
        orders.append(OrderNeed(f"O-{i}", draw(points), parts, skills, severity))
    return orders, FleetIndex(engineers, warehouses)


def _options(o: OrderNeed, pool: FleetIndex) -> list[tuple[str, str | None, float] | None]:
    options: list[tuple[str, str | None, float] | None] = [None]
    for e in pool.engineers:
        if not o.skills <= e.skills or e.open_orders >= e.max_orders:
            continue
        if all(e.van_stock.get(p.part_no, 0) >= p.quantity for p in o.parts):
            options.append((e.engineer_id, None, road_min(e.start, o.site, e.speed_kmh)))
            continue
        for w in pool.warehouses:
            if all(w.stock.get(p.part_no, 0) >= p.quantity for p in o.parts):
                eta = road_min(e.start, w.position, e.speed_kmh)
                eta += road_min(w.position, o.site, e.speed_kmh) + PICKUP_MIN
                options.append((e.engineer_id, w.warehouse_id, eta))
    return options


def _optimum(orders: Sequence[OrderNeed], pool: FleetIndex) -> tuple[int, float]:
    """(unserved, total delay) of the best feasible assignment, by enumeration."""
    stock = {w.warehouse_id: w.stock for w in pool.warehouses}
    best = (len(orders), 0.0)
    for combo in itertools.product(*(_options(o, pool) for o in orders)):
        chosen = [(o, c) for o, c in zip(orders, combo, strict=True) if c is not None]
        if len({c[0] for _, c in chosen}) < len(chosen):
            continue
        drawn: Counter[tuple[str, str]] = Counter()
        for o, (_, w, _) in chosen:
            for p in o.parts if w is not None else ():
                drawn[w, p.part_no] += p.quantity
        if any(units > stock[w].get(p, 0) for (w, p), units in drawn.items()):
            continue
        score = (len(orders) - len(chosen), sum(c[2] for _, c in chosen))
        best = min(best, score)
    return best


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches())
def test_batch_assignment_is_feasible_optimal_and_never_worse_than_greedy(
    batch: tuple[list[OrderNeed], FleetIndex],
) -> None:
    orders, pool = batch
    result = assign(orders, pool, now=NOW)
    greedy = assign_greedy(orders, pool, now=NOW)
    _assert_feasible(result, orders, pool)
    _assert_feasible(greedy, orders, pool)
    assert len(result.unassigned) <= len(greedy.unassigned)
    if len(result.unassigned) == len(greedy.unassigned):
        assert result.total_delay_min <= greedy.total_delay_min + 1e-9
    unserved, total = _optimum(orders, pool)
    assert len(result.unassigned) == unserved
    # Vectorised distances (arccos of a dot product) are within a metre of the haversine.
    assert result.total_delay_min == pytest.approx(total, rel=1e-6, abs=1e-3)
