"""Matching: which engineer, with which parts source, reaches an order's site first.

This module owns the ranking of engineers for one order (`rank`) and the turning of the fleet
index's options into explained `Candidate`s (`_candidate`, shared package-internal with
`dispatch.assignment`, which assigns whole batches on top of it; this module must never import
`dispatch.assignment` back). The values it reads live in `dispatch.needs` and `dispatch.fleet`,
the values it returns in `dispatch.ranking`, and the search itself in `dispatch.fleet_index`.

It is pure: values in, values out. It must never read a database, reserve stock, look at the
clock (`now` is passed in) or import `telematics`. Stock is taken as given: the store reserves
the chosen parts under row locks when an order is dispatched, so two concurrent calls may both
propose the same van; the store's reservation is what settles it.

The model, kept simple on purpose:

* An engineer whose van holds every needed part (number and quantity) drives straight to the
  site. Any other engineer drives to the warehouse holding all of them that adds the least
  detour, spends `pickup_min` at the counter, then drives to the site. Splitting a pickup over
  several warehouses, or topping up a van that holds some of the parts, is out of scope: an
  order whose parts no single warehouse holds can only go to engineers whose vans hold them all,
  and the ranking says so.
* Travel is straight-line distance x road factor / the engineer's average speed (`dispatch.geo`).
* Skills (all of the order's), shift (on shift now, and arriving before the shift ends) and load
  (open orders below the maximum) filter engineers; each rejection has a reason code and text.
* In a batch, an engineer takes at most one order: a second visit would start after the first,
  whose duration we do not model.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from dispatch import geo
from dispatch.errors import MatchingInputError
from dispatch.evaluation import _Option
from dispatch.fleet_index import FleetIndex, _now_s, _speed
from dispatch.needs import OrderNeed
from dispatch.ranking import Candidate, Ranking, RouteStop, StopKind, _parts_text

# ---------------------------------------------------------------------------------------------
# Public functions


def rank(order: OrderNeed, pool: FleetIndex, *, now: datetime, limit: int = 5) -> Ranking:
    """Rank the engineers who can serve an order by estimated arrival, fastest first.

    Args:
        order: What the order needs and where.
        pool: The fleet snapshot.
        now: The current time (aware); shifts are judged against it.
        limit: How many candidates to return.

    Returns:
        Up to `limit` candidates with routes and explanations, and why the others are not listed.

    Raises:
        MatchingInputError: `now` is naive or `limit` is below 1.
    """
    if limit < 1:
        raise MatchingInputError("rank", f"limit {limit} < 1")
    evaluation = pool._evaluate(order, 0, _now_s(now), limit)
    candidates = _ranked_candidates(pool, order, evaluation.best)
    return Ranking(
        order_id=order.order_id,
        candidates=candidates,
        rejected_counts=dict(evaluation.counts),
        rejected_examples=tuple(evaluation.examples),
        outranked=evaluation.outranked,
        note=evaluation.note,
    )


# ---------------------------------------------------------------------------------------------
# Candidates and text


def _ranked_candidates(
    pool: FleetIndex, order: OrderNeed, best: Sequence[_Option]
) -> tuple[Candidate, ...]:
    candidates: list[Candidate] = []
    for pos, option in enumerate(best):
        if pos == 0:
            runner_up = best[1] if len(best) > 1 else None
            versus = (
                f"; fastest, {runner_up.eta_min - option.eta_min:.0f} min ahead of "
                f"{pool.engineers[runner_up.engineer].engineer_id}"
                if runner_up is not None
                else "; the only candidate"
            )
        else:
            leader = best[0]
            versus = (
                f"; {option.eta_min - leader.eta_min:.0f} min behind "
                f"{pool.engineers[leader.engineer].engineer_id}"
            )
        candidates.append(_candidate(pool, order, option, versus))
    return tuple(candidates)


def _candidate(pool: FleetIndex, order: OrderNeed, option: _Option, versus: str) -> Candidate:
    engineer = pool.engineers[option.engineer]
    site = RouteStop(StopKind.SITE, order.order_id, order.site, option.total_km, option.eta_min)
    if option.warehouse < 0:
        held = f"van holds {_parts_text(order.parts)}" if order.parts else "no parts needed"
        text = (
            f"{engineer.engineer_id}: {held}; straight to site, {option.direct_km:.1f} km, "
            f"ETA {option.eta_min:.0f} min{versus}"
        )
        return Candidate(
            engineer_id=engineer.engineer_id,
            pickup_warehouse_id=None,
            route=(site,),
            distance_km=option.total_km,
            direct_km=option.direct_km,
            detour_km=0.0,
            eta_min=option.eta_min,
            explanation=text,
        )
    warehouse = pool.warehouses[option.warehouse]
    to_warehouse_km = geo.road_km(
        geo.haversine_km(engineer.start, warehouse.position), pool.policy.road_factor
    )
    pickup = RouteStop(
        StopKind.WAREHOUSE,
        warehouse.warehouse_id,
        warehouse.position,
        to_warehouse_km,
        geo.travel_min(to_warehouse_km, _speed(engineer)),
    )
    detour_km = option.total_km - option.direct_km
    missing = [p for p in order.parts if engineer.van_stock.get(p.part_no, 0) < p.quantity]
    text = (
        f"{engineer.engineer_id}: van lacks {_parts_text(tuple(missing))}; pickup at "
        f"{warehouse.warehouse_id} (detour {detour_km:.1f} km, "
        f"{pool.policy.pickup_min:.0f} min at the counter), {option.total_km:.1f} km in all "
        f"against {option.direct_km:.1f} km direct, ETA {option.eta_min:.0f} min{versus}"
    )
    return Candidate(
        engineer_id=engineer.engineer_id,
        pickup_warehouse_id=warehouse.warehouse_id,
        route=(pickup, site),
        distance_km=option.total_km,
        direct_km=option.direct_km,
        detour_km=detour_km,
        eta_min=option.eta_min,
        explanation=text,
    )
