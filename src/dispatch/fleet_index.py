"""Fleet index: the fleet as numpy arrays, and the search for an order's fastest engineers.

This module owns `FleetIndex`: built once per snapshot from `Engineer`s, `Warehouse`s and a
`MatchingPolicy`, never modified, and read by every order. Its package-internal evaluation of one
order (`_evaluate`: the fastest options, the rejections and their text) is what
`dispatch.matching` ranks and `dispatch.assignment` assigns whole batches on; this module must
never import either back.

It is pure: values in, values out. It must never read a database, reserve stock, look at the
clock (`now` is passed in, as epoch seconds) or import `telematics`.

Speed: candidates are filtered with boolean masks over all engineers (skills as bitmasks),
distances to the site come from one matrix-vector product over unit vectors, and detours are only
computed for engineers in increasing order of a lower bound on their arrival time (by the
triangle inequality) until the best `k` are certain.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Final

import numpy as np
from numpy.typing import NDArray

from dispatch import geo
from dispatch.errors import MatchingInputError
from dispatch.evaluation import _Context, _Evaluation, _Option, _Usage
from dispatch.fleet import Engineer, MatchingPolicy, Warehouse
from dispatch.geo import GeoPoint
from dispatch.needs import OrderNeed, PartNeed
from dispatch.ranking import _WHY, Rejection, RejectReason, _parts_text

_CHUNK: Final = 64
"""Engineers whose exact route is computed at a time, in lower-bound order."""

_FIRST_SORTED: Final = 256
"""Engineers sorted by lower bound up front; the rest only if the best are not yet certain."""

_EXAMPLES_PER_REASON: Final = 2

_IntArray = NDArray[np.int64]
_FloatArray = NDArray[np.float64]
_BoolArray = NDArray[np.bool_]


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
