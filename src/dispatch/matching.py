"""Matching: which engineer, with which parts source, reaches an order's site first.

This module owns the ranking of engineers for one order (`rank`, `Ranking`), the values matching
reads (`Engineer`, `Warehouse`, `OrderNeed`, `MatchingPolicy`) and returns (`Candidate`, its
`RouteStop`s, `Rejection`s), and the `FleetIndex` that makes it fast: the fleet and its stock as
numpy arrays, built once per snapshot and read by every order. Its evaluation of one order (the
fastest options, the rejections and their text) is shared, package-internal, with
`dispatch.assignment`, which assigns whole batches on top of it; this module must never import
`dispatch.assignment` back.

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

Speed: candidates are filtered with boolean masks over all engineers (skills as bitmasks),
distances to the site come from one matrix-vector product over unit vectors, and detours are only
computed for engineers in increasing order of a lower bound on their arrival time (by the
triangle inequality) until the best `k` are certain.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Final

import numpy as np
from numpy.typing import NDArray

from diagnosis.events import Severity
from dispatch import geo
from dispatch.errors import MatchingInputError
from dispatch.geo import GeoPoint

_CHUNK: Final = 64
"""Engineers whose exact route is computed at a time, in lower-bound order."""

_FIRST_SORTED: Final = 256
"""Engineers sorted by lower bound up front; the rest only if the best are not yet certain."""

_EXAMPLES_PER_REASON: Final = 2

_IntArray = NDArray[np.int64]
_FloatArray = NDArray[np.float64]
_BoolArray = NDArray[np.bool_]


# ---------------------------------------------------------------------------------------------
# Values in


@dataclass(frozen=True, slots=True)
class PartNeed:
    """A part number and how many of it.

    Attributes:
        part_no: The part number, as in the knowledge base (`OF-2010`).
        quantity: How many, at least 1.
    """

    part_no: str
    quantity: int = 1

    def __post_init__(self) -> None:
        if self.quantity < 1:
            raise MatchingInputError(f"part {self.part_no}", f"quantity {self.quantity} < 1")

    def __str__(self) -> str:
        return f"{self.part_no} x{self.quantity}"


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
class OrderNeed:
    """What an order needs from an engineer.

    Attributes:
        order_id: The order.
        site: Where the machine stands.
        parts: Parts to bring, each part number once.
        skills: Skills the job needs; an engineer must have all of them.
        severity: The alarm's severity; the greedy baseline serves the worst first.
    """

    order_id: str
    site: GeoPoint
    parts: tuple[PartNeed, ...] = ()
    skills: frozenset[str] = frozenset()
    severity: Severity = Severity.MAJOR

    def __post_init__(self) -> None:
        numbers = [p.part_no for p in self.parts]
        if len(set(numbers)) != len(numbers):
            raise MatchingInputError(f"order {self.order_id}", "a part number appears twice")


Site = GeoPoint
"""An order's site is a position."""


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


# ---------------------------------------------------------------------------------------------
# Values out


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
# The index


@dataclass(frozen=True, slots=True)
class _Option:
    """One way to serve one order: an engineer and a pickup warehouse (-1: the van)."""

    order: int
    engineer: int
    warehouse: int
    total_km: float
    direct_km: float
    eta_min: float


@dataclass(slots=True)
class _Context:
    """The arrays of one evaluation, restricted to engineers who could serve the order."""

    engineers: _IntArray
    direct_km: _FloatArray
    holds: _BoolArray
    speeds_kmh: _FloatArray
    warehouses: _IntArray
    warehouse_site_km: _FloatArray
    now_s: float

    def subset(self, keep: _BoolArray) -> _Context:
        """The same evaluation over the engineers `keep` selects."""
        return replace(
            self,
            engineers=self.engineers[keep],
            direct_km=self.direct_km[keep],
            holds=self.holds[keep],
            speeds_kmh=self.speeds_kmh[keep],
        )


@dataclass(slots=True)
class _Evaluation:
    """Top options of one order and what was rejected."""

    best: list[_Option]
    alternatives: dict[int, list[_Option]]
    counts: dict[RejectReason, int]
    examples: list[Rejection]
    outranked: int
    note: str
    late_in_search: int = 0


class _Usage:
    """Engineers taken and warehouse units drawn by earlier orders of a batch."""

    __slots__ = ("drawn", "taken")

    def __init__(self, engineers: int) -> None:
        self.taken: _BoolArray = np.zeros(engineers, dtype=np.bool_)
        self.drawn: dict[str, _IntArray] = {}


class FleetIndex:
    """A snapshot of engineers, warehouses and their stock, arranged for fast matching.

    Build it once per snapshot (about a second for 10,000 engineers) and share it between orders;
    it is never modified. Positions are unit vectors, skills bitmasks over the fleet's vocabulary,
    and each part number maps to the engineers and warehouses holding it with their quantities.

    Attributes:
        engineers: The engineers, in index order.
        warehouses: The warehouses, in index order.
        policy: The travel model's figures.
    """

    __slots__ = (
        "_eng_xyz",
        "_free_slots",
        "_on_shift",
        "_shift_end_s",
        "_shift_start_s",
        "_skill_bit",
        "_skill_masks",
        "_speeds_kmh",
        "_van",
        "_wh_stock",
        "_wh_xyz",
        "engineers",
        "policy",
        "warehouses",
    )

    def __init__(
        self,
        engineers: Iterable[Engineer],
        warehouses: Iterable[Warehouse],
        *,
        policy: MatchingPolicy | None = None,
    ) -> None:
        """Index a fleet.

        Raises:
            MatchingInputError: Duplicate ids, negative stock, naive shift times, a speed that
                is not positive.
        """
        self.engineers: tuple[Engineer, ...] = tuple(engineers)
        self.warehouses: tuple[Warehouse, ...] = tuple(warehouses)
        self.policy: MatchingPolicy = policy or MatchingPolicy()
        _check_unique("engineer", [e.engineer_id for e in self.engineers])
        _check_unique("warehouse", [w.warehouse_id for w in self.warehouses])
        starts = [e.start for e in self.engineers]
        self._eng_xyz = _vectors(starts)
        self._speeds_kmh = _array([_speed(e) for e in self.engineers])
        self._free_slots = np.array(
            [e.max_orders - e.open_orders for e in self.engineers], dtype=np.int64
        )
        self._on_shift = np.array([e.on_shift for e in self.engineers], dtype=np.bool_)
        self._shift_start_s = _array([_epoch_s(e.shift_start, -np.inf) for e in self.engineers])
        self._shift_end_s = _array([_epoch_s(e.shift_end, np.inf) for e in self.engineers])
        self._skill_bit, self._skill_masks = _skill_masks(self.engineers)
        self._van = _stock_index("engineer", [(e.engineer_id, e.van_stock) for e in self.engineers])
        self._wh_xyz = _vectors([w.position for w in self.warehouses])
        self._wh_stock = _stock_index(
            "warehouse", [(w.warehouse_id, w.stock) for w in self.warehouses]
        )

    def warehouse_units(self, warehouse: int, part_no: str) -> int:
        """Units of a part in a warehouse, by warehouse index."""
        entry = self._wh_stock.get(part_no)
        if entry is None:
            return 0
        idx, qty = entry
        hit = np.flatnonzero(idx == warehouse)
        return int(qty[hit[0]]) if hit.size else 0

    # -- masks over all engineers ------------------------------------------------------------

    def _skilled(self, skills: frozenset[str]) -> _BoolArray:
        need = np.zeros(self._skill_masks.shape[1], dtype=np.uint64)
        for skill in skills:
            bit = self._skill_bit.get(skill)
            if bit is None:
                return np.zeros(len(self.engineers), dtype=np.bool_)
            need[bit // 64] |= np.uint64(1) << np.uint64(bit % 64)
        is_skilled: _BoolArray = np.all((self._skill_masks & need) == need, axis=1)
        return is_skilled

    def _van_holds(self, parts: tuple[PartNeed, ...]) -> _BoolArray:
        holds = np.ones(len(self.engineers), dtype=np.bool_)
        for part in parts:
            has = np.zeros(len(self.engineers), dtype=np.bool_)
            entry = self._van.get(part.part_no)
            if entry is not None:
                idx, qty = entry
                has[idx[qty >= part.quantity]] = True
            holds &= has
        return holds

    def _warehouses_holding(self, parts: tuple[PartNeed, ...], usage: _Usage | None) -> _IntArray:
        if not parts:
            return np.zeros(0, dtype=np.int64)
        holds = np.ones(len(self.warehouses), dtype=np.bool_)
        for part in parts:
            has = np.zeros(len(self.warehouses), dtype=np.bool_)
            entry = self._wh_stock.get(part.part_no)
            if entry is not None:
                idx, qty = entry
                drawn = usage.drawn.get(part.part_no) if usage is not None else None
                left = qty - drawn[idx] if drawn is not None else qty
                has[idx[left >= part.quantity]] = True
            holds &= has
        return np.flatnonzero(holds).astype(np.int64)

    # -- one order ---------------------------------------------------------------------------

    def _evaluate(
        self,
        order: OrderNeed,
        order_pos: int,
        now_s: float,
        k: int,
        *,
        usage: _Usage | None = None,
        alternatives: int = 1,
    ) -> _Evaluation:
        """The `k` fastest options of an order, with rejections counted by reason."""
        skilled = self._skilled(order.skills)
        on_shift = self._on_shift & (self._shift_start_s <= now_s) & (now_s < self._shift_end_s)
        free = self._free_slots > 0
        taken = usage.taken if usage is not None else np.zeros_like(free)
        holds = self._van_holds(order.parts)
        warehouses = self._warehouses_holding(order.parts, usage)
        can_pick_up = warehouses.size > 0
        masks = {
            RejectReason.MISSING_SKILLS: ~skilled,
            RejectReason.OFF_SHIFT: skilled & ~on_shift,
            RejectReason.AT_CAPACITY: skilled & on_shift & ~free,
            RejectReason.TAKEN_IN_BATCH: skilled & on_shift & free & taken,
        }
        eligible = skilled & on_shift & free & ~taken
        masks[RejectReason.NO_PARTS_SOURCE] = (
            np.zeros_like(eligible) if can_pick_up else eligible & ~holds
        )
        routable = eligible & holds if not can_pick_up else eligible
        evaluation = _Evaluation([], {}, {}, [], 0, "")
        for reason, mask in masks.items():
            self._reject(evaluation, order, reason, mask)
        if order.parts and not can_pick_up:
            evaluation.note = (
                f"no warehouse holds all of {_parts_text(order.parts)}; only engineers whose "
                "vans hold them all can serve (split pickups are not planned)"
            )
        routable_idx = np.flatnonzero(routable).astype(np.int64)
        ctx = self._context(order, routable_idx, holds, warehouses, now_s)
        self._search(evaluation, ctx, order, order_pos, k, alternatives)
        return evaluation

    def _context(
        self,
        order: OrderNeed,
        engineers: _IntArray,
        holds: _BoolArray,
        warehouses: _IntArray,
        now_s: float,
    ) -> _Context:
        site = geo.point_vector(order.site)
        factor = self.policy.road_factor
        return _Context(
            engineers=engineers,
            direct_km=geo.great_circle_km(self._eng_xyz[engineers], site) * factor,
            holds=holds[engineers],
            speeds_kmh=self._speeds_kmh[engineers],
            warehouses=warehouses,
            warehouse_site_km=geo.great_circle_km(self._wh_xyz[warehouses], site) * factor,
            now_s=now_s,
        )

    def _search(
        self,
        evaluation: _Evaluation,
        ctx: _Context,
        order: OrderNeed,
        order_pos: int,
        k: int,
        alternatives: int,
    ) -> None:
        """Exact routes in lower-bound order until the `k` fastest are certain."""
        lower = self._lower_bound_min(ctx)
        ends_s = self._shift_end_s[ctx.engineers]
        # Whoever cannot arrive before their shift ends even by the lower bound is out at once.
        surely_late = ctx.now_s + lower * 60.0 > ends_s
        self._reject(evaluation, order, RejectReason.SHIFT_ENDS_BEFORE_ARRIVAL, surely_late, ctx)
        keep = ~surely_late
        ctx = ctx.subset(keep)
        lower, ends_s = lower[keep], ends_s[keep]
        found: list[tuple[_IntArray, _IntArray, _FloatArray, _FloatArray]] = []
        etas: _FloatArray = np.zeros(0)
        for chunk in _ascending_chunks(lower):
            if etas.size >= k and lower[chunk[0]] >= np.partition(etas, k - 1)[k - 1]:
                break
            warehouses, total_km, chunk_etas = self._exact(ctx, chunk)
            late = ctx.now_s + chunk_etas * 60.0 > ends_s[chunk]
            self._reject(
                evaluation, order, RejectReason.SHIFT_ENDS_BEFORE_ARRIVAL, late, ctx, chunk
            )
            on_time = ~late
            found.append(
                (chunk[on_time], warehouses[on_time], total_km[on_time], chunk_etas[on_time])
            )
            etas = np.concatenate((etas, chunk_etas[on_time]))
        evaluation.best = self._top(ctx, found, order_pos, k)
        evaluation.outranked = int(np.count_nonzero(keep)) - len(evaluation.best)
        evaluation.outranked -= evaluation.late_in_search
        if alternatives > 1:
            self._add_alternatives(evaluation, ctx, order_pos, alternatives)

    def _top(
        self,
        ctx: _Context,
        found: list[tuple[_IntArray, _IntArray, _FloatArray, _FloatArray]],
        order_pos: int,
        k: int,
    ) -> list[_Option]:
        if not found:
            return []
        positions, warehouses, total_km, etas = (
            np.concatenate(a) for a in zip(*found, strict=True)
        )
        engineers = ctx.engineers[positions]
        first = np.lexsort((engineers, etas))[:k]
        return [
            _Option(
                order=order_pos,
                engineer=int(engineers[i]),
                warehouse=int(warehouses[i]),
                total_km=float(total_km[i]),
                direct_km=float(ctx.direct_km[positions[i]]),
                eta_min=float(etas[i]),
            )
            for i in first.tolist()
        ]

    def _lower_bound_min(self, ctx: _Context) -> _FloatArray:
        # Any pickup route is at least as long as the direct trip, and at least
        # 2 * d(warehouse, site) - d(engineer, site) (triangle inequality).
        nearest_km = ctx.warehouse_site_km.min() if ctx.warehouses.size else np.inf
        pickup_km = np.maximum(ctx.direct_km, 2.0 * nearest_km - ctx.direct_km)
        km = np.where(ctx.holds, ctx.direct_km, pickup_km)
        minutes: _FloatArray = km / ctx.speeds_kmh * 60.0
        minutes += np.where(ctx.holds, 0.0, self.policy.pickup_min)
        return minutes

    def _pickup_km(self, ctx: _Context, positions: _IntArray) -> _FloatArray:
        """Road km engineer -> warehouse -> site, shape (positions, warehouses holding all)."""
        to_warehouse_km = geo.great_circle_km(
            self._eng_xyz[ctx.engineers[positions]], self._wh_xyz[ctx.warehouses]
        )
        total_km: _FloatArray = to_warehouse_km * self.policy.road_factor
        total_km += ctx.warehouse_site_km[np.newaxis, :]
        return total_km

    def _exact(self, ctx: _Context, chunk: _IntArray) -> tuple[_IntArray, _FloatArray, _FloatArray]:
        """Best pickup warehouse (-1: the van), road km and ETA of each engineer of a chunk."""
        warehouses = np.full(chunk.size, -1, dtype=np.int64)
        total_km = ctx.direct_km[chunk].copy()
        fetches = ~ctx.holds[chunk]
        if fetches.any():
            pickup_km = self._pickup_km(ctx, chunk[fetches])
            best = np.argmin(pickup_km, axis=1)
            warehouses[fetches] = ctx.warehouses[best]
            total_km[fetches] = pickup_km[np.arange(best.size), best]
        etas: _FloatArray = total_km / ctx.speeds_kmh[chunk] * 60.0
        etas += np.where(fetches, self.policy.pickup_min, 0.0)
        return warehouses, total_km, etas

    def _add_alternatives(
        self, evaluation: _Evaluation, ctx: _Context, order_pos: int, alternatives: int
    ) -> None:
        """The next best warehouses of the chosen engineers, for batches short of stock."""
        position_of = {int(e): i for i, e in enumerate(ctx.engineers.tolist())}
        for option in evaluation.best:
            if option.warehouse < 0 or ctx.warehouses.size < 2:
                continue
            pos = position_of[option.engineer]
            total_km = self._pickup_km(ctx, np.array([pos], dtype=np.int64))[0]
            etas = total_km / ctx.speeds_kmh[pos] * 60.0 + self.policy.pickup_min
            end_s = self._shift_end_s[option.engineer]
            columns = np.argsort(etas, kind="stable")[:alternatives]
            evaluation.alternatives[option.engineer] = [
                replace(
                    option,
                    warehouse=int(ctx.warehouses[c]),
                    total_km=float(total_km[c]),
                    eta_min=float(etas[c]),
                )
                for c in columns.tolist()
                if ctx.now_s + float(etas[c]) * 60.0 <= end_s
            ]

    def _reject(
        self,
        evaluation: _Evaluation,
        order: OrderNeed,
        reason: RejectReason,
        mask: _BoolArray,
        ctx: _Context | None = None,
        chunk: _IntArray | None = None,
    ) -> None:
        """Count the engineers of `mask` as rejected, keeping a few examples.

        `mask` is over all engineers, or over `ctx`'s engineers, or over `chunk` of them.
        """
        count = int(np.count_nonzero(mask))
        if not count:
            return
        if reason is RejectReason.SHIFT_ENDS_BEFORE_ARRIVAL and chunk is not None:
            evaluation.late_in_search += count
        shown = sum(1 for r in evaluation.examples if r.reason is reason)
        evaluation.counts[reason] = evaluation.counts.get(reason, 0) + count
        picked = np.flatnonzero(mask)[: max(0, _EXAMPLES_PER_REASON - shown)]
        if chunk is not None:
            picked = chunk[picked]
        if ctx is not None:
            picked = ctx.engineers[picked]
        for eng in picked.tolist():
            evaluation.examples.append(
                Rejection(self.engineers[eng].engineer_id, reason, self._why(order, eng, reason))
            )

    def _why(self, order: OrderNeed, eng: int, reason: RejectReason) -> str:
        return _WHY[reason](self.engineers[eng], order)


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


# ---------------------------------------------------------------------------------------------
# Building the index


def _ascending_chunks(values: _FloatArray) -> Iterator[_IntArray]:
    """Positions of `values` in ascending order, `_CHUNK` at a time, sorting lazily."""
    n = values.size
    if n <= _FIRST_SORTED:
        parts = [np.argsort(values, kind="stable")]
    else:
        split = np.argpartition(values, _FIRST_SORTED - 1)
        head, tail = split[:_FIRST_SORTED], split[_FIRST_SORTED:]
        parts = [head[np.argsort(values[head], kind="stable")]]
        parts.append(tail)  # sorted below only if reached
    for number, part in enumerate(parts):
        ordered = part if number == 0 else part[np.argsort(values[part], kind="stable")]
        for start in range(0, ordered.size, _CHUNK):
            yield ordered[start : start + _CHUNK].astype(np.int64)


def _check_unique(kind: str, ids: Sequence[str]) -> None:
    seen: set[str] = set()
    for item in ids:
        if item in seen:
            raise MatchingInputError(f"{kind} {item}", "id given twice")
        seen.add(item)


def _vectors(points: Sequence[GeoPoint]) -> _FloatArray:
    if not points:
        return np.zeros((0, 3))
    return geo.unit_vectors(_array([p.lat for p in points]), _array([p.lon for p in points]))


def _array(values: Sequence[float]) -> _FloatArray:
    return np.array(values, dtype=np.float64)


def _speed(engineer: Engineer) -> float:
    if not engineer.speed_kmh > 0:
        raise MatchingInputError(f"engineer {engineer.engineer_id}", "speed must be positive")
    return engineer.speed_kmh


def _epoch_s(moment: datetime | None, default: float) -> float:
    if moment is None:
        return default
    if moment.tzinfo is None:
        raise MatchingInputError(f"time {moment}", "naive datetime; give an aware one")
    return moment.timestamp()


def _now_s(now: datetime) -> float:
    return _epoch_s(now, 0.0)


def _skill_masks(engineers: Sequence[Engineer]) -> tuple[dict[str, int], NDArray[np.uint64]]:
    vocabulary = sorted({s for e in engineers for s in e.skills})
    bit = {skill: i for i, skill in enumerate(vocabulary)}
    words = max(1, -(-len(vocabulary) // 64))
    masks = np.zeros((len(engineers), words), dtype=np.uint64)
    for row, engineer in enumerate(engineers):
        for skill in engineer.skills:
            masks[row, bit[skill] // 64] |= np.uint64(1) << np.uint64(bit[skill] % 64)
    return bit, masks


def _stock_index(
    kind: str, holders: Sequence[tuple[str, Mapping[str, int]]]
) -> dict[str, tuple[_IntArray, _IntArray]]:
    """Part number -> (holder indices, quantities), for holders with at least one unit."""
    rows: dict[str, list[int]] = {}
    quantities: dict[str, list[int]] = {}
    for row, (holder_id, stock) in enumerate(holders):
        for part_no, units in stock.items():
            if units < 0:
                raise MatchingInputError(f"{kind} {holder_id}", f"{units} units of {part_no}")
            if units:
                rows.setdefault(part_no, []).append(row)
                quantities.setdefault(part_no, []).append(units)
    return {
        part_no: (np.array(idx, dtype=np.int64), np.array(quantities[part_no], dtype=np.int64))
        for part_no, idx in rows.items()
    }
