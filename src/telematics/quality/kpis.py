"""Operational service quality: KPI arithmetic over plain per-order and per-alarm facts.

Pure: it imports no I/O library and reads no clock. The facts are
gathered by `kpi_store`; every definition is in docs/service-quality.md, in short:

* remote resolution rate: alarms resolved remotely / alarms resolved remotely or dispatched;
* callback compliance: the desk's 15-minute callback tasks recorded within the grace after
  coming due / those tasks done or past their grace;
* engineer contacted within 15 minutes: callback-check timers satisfied / judged (satisfied or
  breached; moot ones are not counted);
* arrival within deadline, completion within 48 h: the order's timer satisfied / judged;
* first-time fix: completed orders with no new order for the same machine and fault within 30
  days of completion / completed orders;
* response time: creation to arrival on site; repair time: arrival to completion (minutes),
  mean and 90th percentile (linear interpolation between order statistics).

A rate whose denominator is zero is None. Orders count in the period they were created in,
alarms in the period they were resolved in.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class OrderFacts:
    """What the KPIs need of one order.

    Attributes:
        order_id: The order.
        created_at: When it was created (its period).
        region: Its machine's region.
        engineer_id: The engineer assigned last.
        callbacks_met: Callback-check timers satisfied.
        callbacks_judged: Callback-check timers satisfied or breached.
        desk_callbacks: Desk callback tasks done, or open past their grace.
        desk_callbacks_on_time: Of these, recorded within the grace.
        arrival_met: The arrival timer's verdict: True satisfied, False breach, None not judged.
        completion_met: The same for the completion timer.
        completed: Whether it was completed.
        repeated: A new order for the same machine and fault followed within 30 days.
        response_min: Creation to arrival on site, minutes.
        repair_min: Arrival to completion, minutes.
    """

    order_id: int
    created_at: datetime
    region: str | None
    engineer_id: str | None
    callbacks_met: int
    callbacks_judged: int
    desk_callbacks: int
    desk_callbacks_on_time: int
    arrival_met: bool | None
    completion_met: bool | None
    completed: bool
    repeated: bool
    response_min: float | None
    repair_min: float | None


@dataclass(frozen=True, slots=True)
class AlarmFacts:
    """A resolved alarm: when, where, and whether it was fixed remotely."""

    resolved_at: datetime
    region: str | None
    remote: bool


@dataclass(frozen=True, slots=True)
class Rate:
    """A ratio with its counts."""

    numerator: int
    denominator: int

    @property
    def value(self) -> float | None:
        """The ratio; None when nothing was counted."""
        return None if self.denominator == 0 else self.numerator / self.denominator


@dataclass(frozen=True, slots=True)
class Spread:
    """Mean and 90th percentile of durations, in minutes (None when there are none)."""

    n: int
    mean: float | None
    p90: float | None


@dataclass(frozen=True, slots=True)
class Kpis:
    """The KPIs of one group of orders and alarms."""

    orders: int
    remote_resolution: Rate
    callback_compliance: Rate
    contacted_within_15_min: Rate
    arrival_within_deadline: Rate
    completion_within_48_h: Rate
    first_time_fix: Rate
    response_min: Spread
    repair_min: Spread


def spread(values: Sequence[float]) -> Spread:
    """Mean and p90 of durations: for sorted v₀..v_{m-1}, h = 0.9 (m - 1) and
    p90 = v_⌊h⌋ + (h - ⌊h⌋)(v_⌊h⌋+1 - v_⌊h⌋), the linear interpolation between order
    statistics (numpy's default percentile, Hyndman-Fan type 7), in plain Python: groups are
    many and small, where numpy's per-call cost would dominate.
    """
    m = len(values)
    if m == 0:
        return Spread(0, None, None)
    ordered = sorted(values)
    h = 0.9 * (m - 1)
    lo = int(h)
    hi = min(lo + 1, m - 1)
    p90 = ordered[lo] + (h - lo) * (ordered[hi] - ordered[lo])
    return Spread(m, math.fsum(ordered) / m, p90)


def kpis(orders: Sequence[OrderFacts], alarms: Sequence[AlarmFacts]) -> Kpis:
    """The KPIs of these orders and alarms (one pass over each)."""
    c = [0] * 12  # numerators and denominators, in the order of the Kpis fields below
    response: list[float] = []
    repair: list[float] = []
    for o in orders:
        c[2] += o.desk_callbacks_on_time
        c[3] += o.desk_callbacks
        c[4] += o.callbacks_met
        c[5] += o.callbacks_judged
        if o.arrival_met is not None:
            c[6] += o.arrival_met
            c[7] += 1
        if o.completion_met is not None:
            c[8] += o.completion_met
            c[9] += 1
        if o.completed:
            c[10] += not o.repeated
            c[11] += 1
        if o.response_min is not None:
            response.append(o.response_min)
        if o.repair_min is not None:
            repair.append(o.repair_min)
    for a in alarms:
        c[0] += a.remote
        c[1] += 1
    return Kpis(
        orders=len(orders),
        remote_resolution=Rate(c[0], c[1]),
        callback_compliance=Rate(c[2], c[3]),
        contacted_within_15_min=Rate(c[4], c[5]),
        arrival_within_deadline=Rate(c[6], c[7]),
        completion_within_48_h=Rate(c[8], c[9]),
        first_time_fix=Rate(c[10], c[11]),
        response_min=spread(response),
        repair_min=spread(repair),
    )


@dataclass(frozen=True, slots=True)
class PeriodKpis:
    """One period's KPIs, overall, by region and by engineer.

    Attributes:
        period_start: The period.
        overall: Every order and alarm of the period.
        regions: Region (None: machines without one) -> KPIs.
        engineers: Engineer -> KPIs of their orders (remote resolution does not apply: None
            counts, 0/0).
    """

    period_start: datetime
    overall: Kpis
    regions: dict[str | None, Kpis]
    engineers: dict[str, Kpis]


def by_period(
    orders: Sequence[OrderFacts],
    alarms: Sequence[AlarmFacts],
    starts: Sequence[datetime],
    start_of: Callable[[datetime], datetime],
) -> list[PeriodKpis]:
    """KPIs per period (`starts`, each period's start; `start_of` maps a time to its period)."""
    out = []
    o_by: dict[datetime, list[OrderFacts]] = {}
    for o in orders:
        o_by.setdefault(start_of(o.created_at), []).append(o)
    a_by: dict[datetime, list[AlarmFacts]] = {}
    for a in alarms:
        a_by.setdefault(start_of(a.resolved_at), []).append(a)
    for start in starts:
        os_, as_ = o_by.get(start, []), a_by.get(start, [])
        o_region = _group(os_, lambda o: o.region)
        a_region = _group(as_, lambda a: a.region)
        o_engineer = _group([o for o in os_ if o.engineer_id is not None], lambda o: o.engineer_id)
        regions = sorted(o_region.keys() | a_region.keys(), key=lambda r: (r is not None, r or ""))
        out.append(
            PeriodKpis(
                period_start=start,
                overall=kpis(os_, as_),
                regions={r: kpis(o_region.get(r, []), a_region.get(r, [])) for r in regions},
                engineers={str(e): kpis(o_engineer[e], []) for e in sorted(o_engineer, key=str)},
            )
        )
    return out


def _group(items: Sequence[T], key: Callable[[T], str | None]) -> dict[str | None, list[T]]:
    groups: dict[str | None, list[T]] = {}
    for item in items:
        groups.setdefault(key(item), []).append(item)
    return groups
