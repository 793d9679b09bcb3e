"""Work-summary routes: a machine's, a fleet's, and each customer's summary settings.

Roles: a customer sees and sets only its own (another's answers 404, as if it did not exist);
staff see all; an engineer sees the summary of a machine behind an order assigned to them (the
scoping of `/v1/machines/{id}/readings`), and no fleet or settings (403).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Annotated, Literal

import asyncpg
import orjson
from fastapi import APIRouter, Depends, Query, Response

from telematics.api.context import Caller, Conn, ReadConn, allow
from telematics.api.machines import visible_machine
from telematics.base.errors import InvalidRequestError, NotFoundError
from telematics.store.tokens import Principal, Role
from telematics.summaries import queries
from telematics.summaries import settings as settings_store
from telematics.summaries.csv import buckets_csv
from telematics.summaries.periods import Bucket, Period, PeriodError, buckets, zone
from telematics.summaries.schemas import (
    FleetSummaryOut,
    MachineSummaryOut,
    SettingsIn,
    SettingsOut,
    bucket_out,
    figures,
)

router = APIRouter(prefix="/v1", tags=["summaries"])

StaffOrCustomer = Annotated[Principal, Depends(allow(Role.EXPERT, Role.CUSTOMER))]
From = Annotated[
    date | None, Query(alias="from", description="First local date (default: `to` - 29 days).")
]
To = Annotated[
    date | None, Query(alias="to", description="Last local date, inclusive (default: today).")
]
Tz = Annotated[
    str | None, Query(max_length=64, description="IANA zone; default the customer's own.")
]
Format = Annotated[Literal["json", "csv"], Query(description="json, or csv (text/csv).")]


async def _window(
    conn: asyncpg.Connection,
    customer: settings_store.CustomerSettings,
    tz: str | None,
    period: Period,
    first: date | None,
    last: date | None,
) -> tuple[str, bool, list[Bucket]]:
    """The zone, whether the day rows answer, and the buckets of a request."""
    name = tz or customer.tz
    try:
        zi = zone(name)
        if not await settings_store.known_zone(conn, name):
            raise PeriodError(f"unknown time zone {name!r}")
        last = last or datetime.now(zi).date()
        default_span = timedelta(days=29)
        # At the calendar's start the default span would overflow; `buckets` refuses it then.
        first = first or (last - default_span if last - date.min >= default_span else date.min)
        return name, name == customer.tz, buckets(first, last, period, zi)
    except PeriodError as exc:
        raise InvalidRequestError(str(exc)) from exc


def _json(body: dict[str, object]) -> Response:
    # Shaped as the route's response model says (its OpenAPI schema), written by orjson
    # directly: validating thousands of figures through models cost more than the query.
    return Response(orjson.dumps(body, option=orjson.OPT_UTC_Z), media_type="application/json")


def _csv(text: str, name: str) -> Response:
    return Response(
        text,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
    )


@router.get(
    "/machines/{machine_id}/summary",
    response_model=MachineSummaryOut,
    responses={200: {"content": {"text/csv": {}}}},
)
async def machine_summary(
    machine_id: str,
    conn: ReadConn,
    caller: Caller,
    period: Period = Period.DAY,
    first: From = None,
    last: To = None,
    tz: Tz = None,
    format: Format = "json",
) -> Response:
    """Work summary of one machine per local day, ISO week or month (docs/customers.md)."""
    machine = await visible_machine(conn, caller, machine_id)
    customer = await settings_store.get_settings(conn, machine.customer_id)
    name, use_days, bs = await _window(conn, customer, tz, period, first, last)
    found = await queries.summarise(
        conn, queries.Scope(machine_id=machine_id), period, name, use_days, bs, per_machine=False
    )
    zi = zone(name)
    buckets_out = [
        bucket_out(b, t, 1, customer.shift_hours_per_day, zi)
        for b, t in zip(bs, found.buckets, strict=True)
    ]
    if format == "csv":
        return _csv(buckets_csv(buckets_out), f"{machine_id}-{period.value}")
    return _json(
        {"machine_id": machine_id, "period": period.value, "tz": name, "buckets": buckets_out}
    )


@router.get(
    "/fleet/summary",
    response_model=FleetSummaryOut,
    responses={200: {"content": {"text/csv": {}}}},
)
async def fleet_summary(
    conn: ReadConn,
    caller: StaffOrCustomer,
    customer_id: Annotated[str | None, Query(max_length=200)] = None,
    period: Period = Period.DAY,
    first: From = None,
    last: To = None,
    tz: Tz = None,
    format: Format = "json",
) -> Response:
    """A customer's fleet summed per bucket, with a per-machine table over the whole range.

    A customer gets its own fleet (whatever `customer_id` says); staff name the customer.
    """
    if caller.role is Role.CUSTOMER:
        customer_id = caller.subject_id
    if customer_id is None:
        raise InvalidRequestError("customer_id is required for staff")
    customer = await settings_store.get_settings(conn, customer_id)
    name, use_days, bs = await _window(conn, customer, tz, period, first, last)
    fleet = await queries.fleet_size(conn, customer_id)
    found = await queries.summarise(
        conn, queries.Scope(customer_id=customer_id), period, name, use_days, bs, per_machine=True
    )
    zi = zone(name)
    shift = customer.shift_hours_per_day
    seconds = bs[-1].end.timestamp() - bs[0].start.timestamp()
    days = (bs[-1].after - bs[0].first).days
    buckets_out = [
        bucket_out(b, t, len(fleet), shift, zi) for b, t in zip(bs, found.buckets, strict=True)
    ]
    empty = queries.Totals()
    per_machine = [
        {"machine_id": m, **figures(found.machines.get(m, empty), seconds, days, 1, shift, zi)}
        for m in fleet
    ]
    if format == "csv":
        return _csv(buckets_csv(buckets_out, per_machine), f"{customer_id}-{period.value}")
    return _json(
        {"customer_id": customer_id, "period": period.value, "tz": name,
         "machines": len(fleet), "buckets": buckets_out, "per_machine": per_machine}
    )  # fmt: skip


def _own(caller: Principal, customer_id: str) -> None:
    if len(customer_id) > 200:
        raise InvalidRequestError("customer_id is too long")
    if caller.role is Role.CUSTOMER and caller.subject_id != customer_id:
        raise NotFoundError("customer", customer_id)


@router.get("/customers/{customer_id}/settings")
async def get_customer_settings(
    customer_id: str, conn: Conn, caller: StaffOrCustomer
) -> SettingsOut:
    """A customer's summary settings: time zone and shift hours per day."""
    _own(caller, customer_id)
    found = await settings_store.get_settings(conn, customer_id)
    return SettingsOut(customer_id=customer_id, tz=found.tz,
                       shift_hours_per_day=found.shift_hours_per_day)  # fmt: skip


@router.put("/customers/{customer_id}/settings")
async def put_customer_settings(
    customer_id: str, body: SettingsIn, conn: Conn, caller: StaffOrCustomer
) -> SettingsOut:
    """Set a customer's summary settings; a new time zone rebuilds its day rows."""
    _own(caller, customer_id)
    try:
        zone(body.tz)
    except PeriodError as exc:
        raise InvalidRequestError(str(exc)) from exc
    if not await settings_store.known_zone(conn, body.tz):
        raise InvalidRequestError(f"unknown time zone {body.tz!r}")
    stored = await settings_store.put_settings(
        conn, settings_store.CustomerSettings(customer_id, body.tz, body.shift_hours_per_day)
    )
    return SettingsOut(customer_id=customer_id, tz=stored.tz,
                       shift_hours_per_day=stored.shift_hours_per_day)  # fmt: skip
