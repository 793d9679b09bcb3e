"""Ranking: what matching answers for an order, and the words that explain it.

This module owns the values matching returns: a `Ranking` (candidates fastest first, rejections
counted by reason, engineers outranked, a note), each `Candidate` with its `RouteStop`s, and each
`Rejection` with its `RejectReason`. It also owns the text of every rejection reason (`_WHY`) and
the formatting of parts and shift times that candidate explanations share (package-internal).

It must never compute a route or an ETA (`dispatch.fleet_index` and `dispatch.matching` do), and
never import `dispatch.fleet_index`, `dispatch.matching` or `telematics`: they build on it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Final

from dispatch.fleet import Engineer
from dispatch.geo import GeoPoint
from dispatch.needs import OrderNeed, PartNeed


class StopKind(StrEnum):
    """What happens at a stop."""

    WAREHOUSE = "warehouse"
    SITE = "site"


@dataclass(frozen=True, slots=True)
class RouteStop:
    """One stop of an engineer's route.

    Attributes:
        kind: Warehouse pickup or the order's site.
        place_id: The warehouse id or the order id.
        position: Where the stop is.
        distance_km: Road kilometres driven from the start to this stop.
        arrive_min: Minutes from now to arrival at this stop.
    """

    kind: StopKind
    place_id: str
    position: GeoPoint
    distance_km: float
    arrive_min: float


@dataclass(frozen=True, slots=True)
class Candidate:
    """An engineer who can serve the order, with the route and why.

    Attributes:
        engineer_id: The engineer.
        pickup_warehouse_id: The warehouse to collect parts at, None when the van holds them.
        route: The stops, the site last.
        distance_km: Road kilometres of the whole route.
        direct_km: Road kilometres straight from the engineer to the site.
        detour_km: What the pickup adds (`distance_km - direct_km`), 0 without one.
        eta_min: Minutes from now to arrival at the site, pickup time included.
        explanation: One sentence with the figures, and how it compares to the others.
    """

    engineer_id: str
    pickup_warehouse_id: str | None
    route: tuple[RouteStop, ...]
    distance_km: float
    direct_km: float
    detour_km: float
    eta_min: float
    explanation: str


class RejectReason(StrEnum):
    """Why an engineer cannot serve an order, in the order they are checked."""

    MISSING_SKILLS = "missing_skills"
    OFF_SHIFT = "off_shift"
    AT_CAPACITY = "at_capacity"
    TAKEN_IN_BATCH = "taken_in_batch"
    NO_PARTS_SOURCE = "no_parts_source"
    SHIFT_ENDS_BEFORE_ARRIVAL = "shift_ends_before_arrival"


@dataclass(frozen=True, slots=True)
class Rejection:
    """An engineer that cannot serve the order.

    Attributes:
        engineer_id: The engineer.
        reason: The first failed check.
        text: The figures behind it (`lacks hydraulics`, `2/2 open orders`).
    """

    engineer_id: str
    reason: RejectReason
    text: str


@dataclass(frozen=True, slots=True)
class Ranking:
    """The engineers for one order, fastest first, and why the others are not listed.

    Attributes:
        order_id: The order.
        candidates: Up to `limit` candidates, fastest first (ties by fleet order).
        rejected_counts: Engineers rejected, by reason (only reasons that occurred). Arrival
            after shift end is only checked for engineers whose route was computed.
        rejected_examples: A few rejections per reason, with their figures.
        outranked: Engineers who could serve but are slower than the last one listed.
        note: Anything that limits the ranking as a whole (no warehouse holds the parts).
    """

    order_id: str
    candidates: tuple[Candidate, ...]
    rejected_counts: Mapping[RejectReason, int]
    rejected_examples: tuple[Rejection, ...]
    outranked: int
    note: str = ""

    @property
    def best(self) -> Candidate | None:
        """The fastest candidate, None when nobody can serve the order."""
        return self.candidates[0] if self.candidates else None

    def explain(self) -> str:
        """The whole ranking as a few lines of text, for the dispatcher."""
        lines = [c.explanation for c in self.candidates] or ["no engineer can serve this order"]
        if self.note:
            lines.append(self.note)
        for reason, count in self.rejected_counts.items():
            examples = "; ".join(
                f"{r.engineer_id}: {r.text}" for r in self.rejected_examples if r.reason is reason
            )
            lines.append(
                f"{count} rejected, {reason}" + (f" (e.g. {examples})" if examples else "")
            )
        if self.outranked:
            lines.append(f"{self.outranked} more could serve, all slower")
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Text


def _why_skills(e: Engineer, order: OrderNeed) -> str:
    return "lacks " + ", ".join(sorted(order.skills - e.skills))


def _why_off_shift(e: Engineer, order: OrderNeed) -> str:
    if not e.on_shift:
        return "off shift"
    return f"shift {_hhmm(e.shift_start)}-{_hhmm(e.shift_end)} UTC does not cover now"


def _why_capacity(e: Engineer, order: OrderNeed) -> str:
    return f"{e.open_orders}/{e.max_orders} open orders"


def _why_taken(e: Engineer, order: OrderNeed) -> str:
    return "chosen for another order of this batch"


def _why_no_source(e: Engineer, order: OrderNeed) -> str:
    missing = tuple(p for p in order.parts if e.van_stock.get(p.part_no, 0) < p.quantity)
    return f"van lacks {_parts_text(missing)} and no warehouse holds all parts"


def _why_late(e: Engineer, order: OrderNeed) -> str:
    return f"would arrive after the shift ends at {_hhmm(e.shift_end)} UTC"


_WHY: Final[Mapping[RejectReason, Callable[[Engineer, OrderNeed], str]]] = {
    RejectReason.MISSING_SKILLS: _why_skills,
    RejectReason.OFF_SHIFT: _why_off_shift,
    RejectReason.AT_CAPACITY: _why_capacity,
    RejectReason.TAKEN_IN_BATCH: _why_taken,
    RejectReason.NO_PARTS_SOURCE: _why_no_source,
    RejectReason.SHIFT_ENDS_BEFORE_ARRIVAL: _why_late,
}


def _parts_text(parts: tuple[PartNeed, ...]) -> str:
    return ", ".join(str(p) for p in parts)


def _hhmm(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%H:%M") if moment is not None else "--:--"
