"""Service KPIs over HTTP: `GET /v1/service/kpis?period&from&to&region&engineer_id`.

Per period, overall, by region and by engineer; definitions in docs/service-quality.md and
`telematics.quality.kpis`. Staff and the monitoring desk only: the figures compare engineers
and regions.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from telematics.api.context import Conn, Context, allow
from telematics.api.schemas import ID_PATTERN, Instant
from telematics.base.errors import InvalidRequestError
from telematics.quality import kpi_store
from telematics.quality.kpis import Kpis, Rate, Spread, by_period
from telematics.quality.periods import Period, default_since, period_start, starts
from telematics.store.tokens import Principal, Role

router = APIRouter(prefix="/v1/service", tags=["service quality"])


class RateOut(BaseModel):
    """A ratio and what it counts."""

    value: float | None = Field(description="numerator / denominator; None when 0/0")
    numerator: int
    denominator: int

    @classmethod
    def of(cls, r: Rate) -> RateOut:
        """From the arithmetic's value."""
        value = r.value
        return cls(value=None if value is None else round(value, 6), numerator=r.numerator,
                   denominator=r.denominator)  # fmt: skip


class SpreadOut(BaseModel):
    """Durations in minutes."""

    n: int
    mean: float | None
    p90: float | None

    @classmethod
    def of(cls, s: Spread) -> SpreadOut:
        """From the arithmetic's value."""
        return cls(n=s.n, mean=None if s.mean is None else round(s.mean, 3),
                   p90=None if s.p90 is None else round(s.p90, 3))  # fmt: skip


class KpisOut(BaseModel):
    """The KPIs of a group of orders and alarms."""

    orders: int
    remote_resolution_rate: RateOut
    callback_compliance: RateOut
    contacted_within_15_min: RateOut
    arrival_within_deadline: RateOut
    completion_within_48_h: RateOut
    first_time_fix_rate: RateOut
    response_min: SpreadOut = Field(description="Creation to arrival on site")
    repair_min: SpreadOut = Field(description="Arrival to completion")

    @classmethod
    def of(cls, k: Kpis) -> KpisOut:
        """From the arithmetic's value."""
        return cls(
            orders=k.orders, remote_resolution_rate=RateOut.of(k.remote_resolution),
            callback_compliance=RateOut.of(k.callback_compliance),
            contacted_within_15_min=RateOut.of(k.contacted_within_15_min),
            arrival_within_deadline=RateOut.of(k.arrival_within_deadline),
            completion_within_48_h=RateOut.of(k.completion_within_48_h),
            first_time_fix_rate=RateOut.of(k.first_time_fix),
            response_min=SpreadOut.of(k.response_min), repair_min=SpreadOut.of(k.repair_min),
        )  # fmt: skip


class RegionKpisOut(KpisOut):
    """A region's KPIs (None: machines without a region)."""

    region: str | None


class EngineerKpisOut(KpisOut):
    """An engineer's KPIs (the orders last assigned to them)."""

    engineer_id: str


class PeriodKpisOut(BaseModel):
    """One period."""

    period_start: datetime
    overall: KpisOut
    regions: list[RegionKpisOut]
    engineers: list[EngineerKpisOut]


class ServiceKpisOut(BaseModel):
    """KPIs period by period."""

    period: str
    periods: list[PeriodKpisOut]


@router.get("/kpis")
async def service_kpis(
    conn: Conn,
    ctx: Context,
    caller: Annotated[Principal, Depends(allow(Role.EXPERT, Role.MONITOR))],
    period: Period = Period.MONTH,
    from_: Annotated[Instant | None, Query(alias="from")] = None,
    to: Instant | None = None,
    region: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    engineer_id: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
) -> ServiceKpisOut:
    """Remote resolution, callback compliance, contact within 15 minutes, arrival within
    deadline, completion within 48 h, first-time fix, response and repair times (mean, p90),
    per period, overall, by region and by engineer. Default span: the last 12 months.
    """
    now = datetime.now(UTC)
    until = to or now
    since = from_ or default_since(until, period)
    try:
        order = starts(since, until, period)
    except ValueError as exc:
        raise InvalidRequestError(str(exc)) from exc
    scope = kpi_store.KpiScope(region, engineer_id)
    grace = timedelta(minutes=ctx.settings.desk_callback_grace_min)
    orders = await kpi_store.order_facts(conn, since, until, scope, grace=grace, now=now)
    alarms = await kpi_store.alarm_facts(conn, since, until, scope)
    found = by_period(orders, alarms, order, lambda t: period_start(t, period))
    return ServiceKpisOut(
        period=period.value,
        periods=[
            PeriodKpisOut(
                period_start=p.period_start,
                overall=KpisOut.of(p.overall),
                regions=[
                    RegionKpisOut(region=r, **KpisOut.of(k).model_dump())
                    for r, k in p.regions.items()
                ],
                engineers=[
                    EngineerKpisOut(engineer_id=e, **KpisOut.of(k).model_dump())
                    for e, k in p.engineers.items()
                ],
            )
            for p in found
        ],
    )
