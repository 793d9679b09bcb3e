"""Assignment: which engineer serves each order of a batch, jointly or greedily.

This module owns the batch: `assign` (every order of a batch at once, serving as many as possible
with the least total arrival time), `assign_greedy` (the baseline it is measured against: one
order at a time, worst severity first), what they return (`Assignment`, `OrderChoice`,
`AssignmentMethod`) and the batch's bookkeeping: an engineer takes at most one order of a batch,
and no warehouse gives out more units than it holds.

It does not rank: every order's options and rejections come from `dispatch.fleet_index`
(`FleetIndex` and its package-internal evaluation, whose values live in `dispatch.evaluation`), and
every route and explanation from `dispatch.matching`; this module imports them and they must never
import it back. Like matching it is pure: it must never read a database, reserve stock, look at the
clock (`now` is passed in) or import `telematics`. The optimisation itself goes through
`dispatch.solvers`, the only scipy import.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Final

import numpy as np
from numpy.typing import NDArray

from diagnosis.events import Severity
from dispatch import solvers
from dispatch.evaluation import _Evaluation, _Option, _Usage
from dispatch.fleet_index import FleetIndex, _check_unique, _now_s
from dispatch.matching import _candidate
from dispatch.needs import OrderNeed
from dispatch.ranking import Candidate

_SEVERITY_ORDER: Final = {s: i for i, s in enumerate(Severity)}

_IntArray = NDArray[np.int64]


# ---------------------------------------------------------------------------------------------
# Values out


class AssignmentMethod(StrEnum):
    """How a batch was assigned."""

    OPTIMAL = "optimal"
    """linear_sum_assignment; no warehouse stock was contended, so optimal."""
    MILP = "milp"
    """Warehouse stock was contended: a mixed-integer program over the best options."""
    GREEDY = "greedy"
    """One order at a time, worst severity first: the baseline."""


@dataclass(frozen=True, slots=True)
class OrderChoice:
    """What a batch assignment gives one order.

    Attributes:
        order_id: The order.
        candidate: The chosen engineer and route, None when nobody is left for it.
        explanation: The candidate's explanation, and what the batch changed for it.
    """

    order_id: str
    candidate: Candidate | None
    explanation: str


@dataclass(frozen=True, slots=True)
class Assignment:
    """The engineers chosen for a batch of orders, in the batch's order.

    Attributes:
        choices: One per order, in the order given.
        method: How they were chosen.
    """

    choices: tuple[OrderChoice, ...]
    method: AssignmentMethod

    @property
    def total_delay_min(self) -> float:
        """Sum of the arrival times of the served orders, in minutes."""
        return sum(c.candidate.eta_min for c in self.choices if c.candidate is not None)

    @property
    def unassigned(self) -> tuple[str, ...]:
        """Orders nobody could be given."""
        return tuple(c.order_id for c in self.choices if c.candidate is None)

    def choice(self, order_id: str) -> OrderChoice:
        """The choice for one order.

        Raises:
            KeyError: The order is not in the batch.
        """
        for c in self.choices:
            if c.order_id == order_id:
                return c
        raise KeyError(order_id)


# ---------------------------------------------------------------------------------------------
# Public functions


def assign(orders: Sequence[OrderNeed], pool: FleetIndex, *, now: datetime) -> Assignment:
    """Assign a batch of orders jointly, minimising the total arrival time.

    Serving as many orders as possible comes first, then the least total delay (sum of ETAs).
    Each order's `len(orders) + 2` fastest engineers are considered: without contention for
    warehouse stock that is exactly optimal (an order given a slower engineer always has a
    faster one left over to swap to), and `scipy.optimize.linear_sum_assignment` solves it. When
    that solution draws more units from a warehouse than it holds, a mixed-integer program over
    the same options, with each engineer's best few warehouses, decides instead; the greedy
    baseline is also computed then, and kept if it happens to be better, so the result is never
    worse than `assign_greedy`.

    Args:
        orders: The batch; order ids must be unique.
        pool: The fleet snapshot.
        now: The current time (aware).

    Returns:
        One choice per order, in the order given.

    Raises:
        MatchingInputError: Duplicate order ids, or `now` is naive.
    """
    _check_unique("order", [o.order_id for o in orders])
    now_s = _now_s(now)
    k = len(orders) + 2
    alternatives = max(1, pool.policy.warehouse_alternatives)
    evaluations = [
        pool._evaluate(o, i, now_s, k, alternatives=alternatives) for i, o in enumerate(orders)
    ]
    picks = _solve_assignment(evaluations)
    method = AssignmentMethod.OPTIMAL
    if _overdrawn(pool, orders, picks):
        contended = _solve_contended(pool, orders, evaluations)
        greedy = _greedy_picks(orders, pool, now_s)
        if contended is not None and _score(contended) <= _score(greedy):
            picks, method = contended, AssignmentMethod.MILP
        else:
            picks, method = greedy, AssignmentMethod.GREEDY
    return _assignment(pool, orders, evaluations, picks, method)


def assign_greedy(orders: Sequence[OrderNeed], pool: FleetIndex, *, now: datetime) -> Assignment:
    """The baseline: worst severity first, then in the order given, each takes its fastest.

    Each order gets the fastest engineer not yet taken, with warehouse units already drawn by
    earlier orders deducted, as a dispatcher working down the queue would.

    Args:
        orders: The batch; order ids must be unique.
        pool: The fleet snapshot.
        now: The current time (aware).

    Returns:
        One choice per order, in the order given.

    Raises:
        MatchingInputError: Duplicate order ids, or `now` is naive.
    """
    _check_unique("order", [o.order_id for o in orders])
    now_s = _now_s(now)
    picks = _greedy_picks(orders, pool, now_s)
    evaluations = [_Evaluation([], {}, {}, [], 0, "") for _ in orders]
    return _assignment(pool, orders, evaluations, picks, AssignmentMethod.GREEDY)


# ---------------------------------------------------------------------------------------------
# Batch internals


def _greedy_picks(
    orders: Sequence[OrderNeed], pool: FleetIndex, now_s: float
) -> list[_Option | None]:
    usage = _Usage(len(pool.engineers))
    picks: list[_Option | None] = [None] * len(orders)
    queue = sorted(range(len(orders)), key=lambda i: (_SEVERITY_ORDER[orders[i].severity], i))
    for i in queue:
        best = pool._evaluate(orders[i], i, now_s, 1, usage=usage).best
        if not best:
            continue
        pick = picks[i] = best[0]
        usage.taken[pick.engineer] = True
        if pick.warehouse >= 0:
            for part in orders[i].parts:
                drawn = usage.drawn.setdefault(
                    part.part_no, np.zeros(len(pool.warehouses), dtype=np.int64)
                )
                drawn[pick.warehouse] += part.quantity
    return picks


def _solve_assignment(evaluations: list[_Evaluation]) -> list[_Option | None]:
    """linear_sum_assignment over each order's best options, with an 'unserved' column each."""
    n = len(evaluations)
    columns = sorted({o.engineer for ev in evaluations for o in ev.best})
    col_of = {eng: j for j, eng in enumerate(columns)}
    cost = np.full((n, len(columns) + n), np.inf)
    for i, ev in enumerate(evaluations):
        for o in ev.best:
            cost[i, col_of[o.engineer]] = o.eta_min
        cost[i, len(columns) + i] = _unserved_cost(evaluations)
    picks: list[_Option | None] = [None] * n
    for i, j in enumerate(solvers.min_cost_assignment(cost).tolist()):
        if j < len(columns):
            picks[i] = next(o for o in evaluations[i].best if o.engineer == columns[j])
    return picks


def _solve_contended(
    pool: FleetIndex, orders: Sequence[OrderNeed], evaluations: list[_Evaluation]
) -> list[_Option | None] | None:
    """A 0/1 program over each order's options, with warehouse units as capacities."""
    options = [o for ev in evaluations for o in _all_options(ev)]
    resources: dict[tuple[int, str], int] = {}
    usage: tuple[list[int], list[int], list[int]] = ([], [], [])
    for index, option in enumerate(options):
        if option.warehouse < 0:
            continue
        for part in orders[option.order].parts:
            resource = resources.setdefault((option.warehouse, part.part_no), len(resources))
            usage[0].append(resource)
            usage[1].append(index)
            usage[2].append(part.quantity)
    chosen = solvers.select_options(
        costs=np.array([o.eta_min for o in options], dtype=np.float64),
        groups=np.array([o.order for o in options], dtype=np.int64),
        n_groups=len(orders),
        unserved_cost=_unserved_cost(evaluations),
        exclusive=np.array([o.engineer for o in options], dtype=np.int64),
        usage=(_ints(usage[0]), _ints(usage[1]), _ints(usage[2])),
        capacity=_ints([pool.warehouse_units(w, p) for w, p in resources]),
    )
    if chosen is None:
        return None
    return [options[c] if c >= 0 else None for c in chosen.tolist()]


def _unserved_cost(evaluations: Sequence[_Evaluation]) -> float:
    # Leaving an order unserved must cost more than serving every order at its worst option.
    return 1.0 + sum(max((o.eta_min for o in _all_options(ev)), default=0.0) for ev in evaluations)


def _ints(values: Sequence[int]) -> _IntArray:
    return np.array(values, dtype=np.int64)


def _all_options(evaluation: _Evaluation) -> list[_Option]:
    options: list[_Option] = []
    for o in evaluation.best:
        options.extend(evaluation.alternatives.get(o.engineer, [o]))
    return options


def _overdrawn(
    pool: FleetIndex, orders: Sequence[OrderNeed], picks: Sequence[_Option | None]
) -> bool:
    drawn: dict[tuple[int, str], int] = {}
    for pick in picks:
        if pick is None or pick.warehouse < 0:
            continue
        for part in orders[pick.order].parts:
            key = (pick.warehouse, part.part_no)
            drawn[key] = drawn.get(key, 0) + part.quantity
    return any(pool.warehouse_units(w, p) < units for (w, p), units in drawn.items())


def _score(picks: Sequence[_Option | None]) -> tuple[int, float]:
    """Unserved orders first, then total delay: lower is better."""
    served = [p.eta_min for p in picks if p is not None]
    return len(picks) - len(served), sum(served)


def _assignment(
    pool: FleetIndex,
    orders: Sequence[OrderNeed],
    evaluations: Sequence[_Evaluation],
    picks: Sequence[_Option | None],
    method: AssignmentMethod,
) -> Assignment:
    order_of_engineer = {p.engineer: p.order for p in picks if p is not None}
    choices: list[OrderChoice] = []
    for i, (order, pick) in enumerate(zip(orders, picks, strict=True)):
        fastest = evaluations[i].best[0] if evaluations[i].best else None
        if pick is None:
            choices.append(OrderChoice(order.order_id, None, _unserved_text(order, evaluations[i])))
            continue
        candidate = _candidate(pool, order, pick, "")
        text = candidate.explanation
        if method is AssignmentMethod.GREEDY:
            text += "; greedy: fastest engineer still free when its turn came"
        elif fastest is not None and fastest.engineer != pick.engineer:
            other = order_of_engineer.get(fastest.engineer)
            who = pool.engineers[fastest.engineer].engineer_id
            where = f"serves {orders[other].order_id}" if other is not None else "was not used"
            text += (
                f"; its fastest, {who} (ETA {fastest.eta_min:.0f} min), {where} instead: "
                "the batch's total delay is lower this way"
            )
        choices.append(OrderChoice(order.order_id, candidate, text))
    return Assignment(tuple(choices), method)


def _unserved_text(order: OrderNeed, evaluation: _Evaluation) -> str:
    if evaluation.best:
        return (
            f"{order.order_id}: no engineer left for this order; its {len(evaluation.best)} "
            "candidates serve other orders of the batch"
        )
    reasons = ", ".join(f"{n} {reason}" for reason, n in evaluation.counts.items())
    return f"{order.order_id}: no engineer left for this order" + (
        f"; nobody can serve it ({reasons})" if reasons else ""
    )
