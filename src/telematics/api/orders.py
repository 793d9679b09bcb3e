"""Service orders: dispatch an alarm, follow the order, engineers' actions, SLA breaches."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, status
from pydantic import BaseModel, Field

from dispatch.needs import PartNeed
from dispatch.orders import (
    Accept,
    Arrive,
    Cancel,
    Close,
    Command,
    Complete,
    ContactCustomer,
    RecordSurvey,
    StartTravel,
    Transfer,
)
from telematics.api.context import Caller, Conn, Context, Staff, allow
from telematics.api.language import Lang
from telematics.api.order_schemas import (
    OrderEventView,
    OrderOut,
    OrderView,
    event_view,
    order_view,
)
from telematics.api.schemas import ID_PATTERN, BeforeId, BodyIn, Instant, PathId, StoredId
from telematics.base.errors import ForbiddenError, InvalidRequestError
from telematics.services.dispatching import (
    act,
    dispatch_alarm,
    dispatch_alarms,
    order_visible,
    require_found,
)
from telematics.store import followup, tracking
from telematics.store import orders as order_store
from telematics.store import timers as timer_store
from telematics.store.orders import StoredOrder
from telematics.store.tokens import Principal, Role

router = APIRouter(prefix="/v1", tags=["orders"])


class DispatchIn(BodyIn):
    """Send someone: the suggested engineer unless one is chosen."""

    engineer_id: str | None = Field(default=None, pattern=ID_PATTERN)
    note: str = Field(default="", max_length=4000)
    steps_tried: list[Annotated[str, Field(min_length=1, max_length=1000)]] = Field(
        default_factory=list, max_length=50,
        description="Remote-fix steps already tried with the customer, in order (the engineer "
        "sees them with the order)",
    )  # fmt: skip


class ActionIn(BodyIn):
    """A note with a lifecycle action."""

    note: str = Field(default="", max_length=4000)


class PartIn(BodyIn):
    """A part used."""

    part_no: str = Field(pattern=ID_PATTERN)
    quantity: int = Field(ge=1, le=1000)


class CompleteIn(BodyIn):
    """The job is done: which parts were used (the rest of the reservation is released)."""

    parts_used: list[PartIn] = Field(default_factory=list)
    note: str = Field(default="", max_length=4000)


class TransferIn(BodyIn):
    """Give the order to another engineer."""

    to_engineer_id: str = Field(pattern=ID_PATTERN)
    pickup_warehouse_id: str | None = Field(default=None, pattern=ID_PATTERN)
    reason: str = Field(default="", max_length=4000)


class CancelIn(BodyIn):
    """Call the order off."""

    reason: str = Field(min_length=1, max_length=4000)


class BreachOut(BaseModel):
    """A service level missed."""

    timer_id: int
    order_id: int
    kind: str
    due_at: datetime
    fired_at: datetime
    detail: str


# Bodies whose every field is optional may be left out; these stand in for them.
_DISPATCH, _COMPLETE, _NOTE = DispatchIn(), CompleteIn(), ActionIn()


@router.post("/alarms/{alarm_id}/dispatch", status_code=status.HTTP_201_CREATED)
async def dispatch(
    alarm_id: PathId, ctx: Context, caller: Staff, body: DispatchIn = _DISPATCH
) -> OrderOut:
    """Turn an alarm into a service order for the engineer who arrives first with the parts
    (or `engineer_id`, if they can serve it). Parts are reserved at once; the answer carries the
    route plan, the ETA and why this engineer.
    """
    if ctx.knowledge is None:
        raise InvalidRequestError("diagnosis is not enabled in this service")
    result = await dispatch_alarm(
        ctx.pool, ctx.knowledge, ctx.sla_policy, alarm_id,
        actor=caller.actor, engineer_id=body.engineer_id, note=body.note,
        steps_tried=body.steps_tried,
    )  # fmt: skip
    return OrderOut.of(result.order)


class BatchDispatchIn(BodyIn):
    """Alarms to dispatch together (a surge: a storm, a site-wide outage)."""

    alarm_ids: list[StoredId] = Field(min_length=1, max_length=200)


class UnassignedOut(BaseModel):
    """An alarm nobody could take in this batch, and why."""

    alarm_id: int
    reason: str


class BatchDispatchOut(BaseModel):
    """The orders a batch created, and what is left."""

    orders: list[OrderOut]
    unassigned: list[UnassignedOut]
    method: str = Field(description="optimal (assignment), milp (contended stock) or greedy")
    total_eta_min: float


@router.post("/dispatch", status_code=status.HTTP_201_CREATED)
async def dispatch_batch(body: BatchDispatchIn, ctx: Context, caller: Staff) -> BatchDispatchOut:
    """Dispatch several alarms jointly: engineers are assigned to minimise the total arrival
    time over the batch, not greedily one alarm after the other.
    """
    if ctx.knowledge is None:
        raise InvalidRequestError("diagnosis is not enabled in this service")
    result = await dispatch_alarms(
        ctx.pool, ctx.knowledge, ctx.sla_policy, body.alarm_ids, actor=caller.actor
    )
    return BatchDispatchOut(
        orders=[OrderOut.of(o) for o in result.orders],
        unassigned=[UnassignedOut(alarm_id=a, reason=r) for a, r in result.unassigned],
        method=result.method,
        total_eta_min=round(result.total_eta_min, 1),
    )


@router.get("/orders")
async def list_orders(
    conn: Conn,
    ctx: Context,
    caller: Caller,
    lang: Lang,
    state: str | None = None,
    engineer_id: str | None = None,
    customer_id: str | None = None,
    machine_id: str | None = None,
    before: BeforeId = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[OrderView]:
    """Orders newest first: staff see all, an engineer their own, a customer its own; each in
    the view of the caller's role (`view`: staff, engineer or customer).
    """
    if caller.role is Role.ENGINEER:
        engineer_id = caller.subject_id
    elif caller.role is Role.CUSTOMER:
        customer_id = caller.subject_id
    where = order_store.OrderFilter(state, engineer_id, customer_id, machine_id)
    found = await order_store.list_orders(conn, where, before_id=before, limit=limit)
    tracked = await _tracking(conn, ctx, [o.order_id for o in found])
    views = [order_view(o, caller, tracked.get(o.order_id)) for o in found]
    return await _with_followup(conn, ctx, caller, lang, views)


async def _with_followup(
    conn: Conn, ctx: Context, caller: Principal, lang: str, views: list[OrderView]
) -> list[OrderView]:
    """An engineer's orders with the steps already tried remotely (the knowledge base's steps in
    `lang`, whatever language they were ticked in); a customer's with whether its survey was
    answered.
    """
    if caller.role is Role.ENGINEER:
        alarm_ids = [v.alarm_id for v in views if v.alarm_id is not None]
        tried = await followup.steps_tried(conn, alarm_ids)
        kb = ctx.knowledge

        def said(v: OrderView) -> list[str]:
            steps = tried.get(v.alarm_id, []) if v.alarm_id is not None else []
            if kb is None or v.fault is None:
                return steps
            return [kb.translate_step(v.fault, step, lang) for step in steps]

        return [v.model_copy(update={"steps_tried": said(v)}) for v in views]
    if caller.role is Role.CUSTOMER:
        answered = await followup.surveyed(conn, [v.order_id for v in views])
        return [v.model_copy(update={"survey_answered": v.order_id in answered}) for v in views]
    return views


async def _tracking(conn: Conn, ctx: Context, order_ids: list[int]) -> dict[int, tracking.Tracking]:
    off_site_m = ctx.settings.tracking_off_site_m
    return await tracking.track(conn, order_ids, now=datetime.now(UTC), off_site_m=off_site_m)


async def _visible(conn: Conn, caller: Principal, order_id: int) -> StoredOrder:
    stored = await order_store.load(conn, order_id)
    require_found(order_visible(stored, caller.role.value, caller.subject_id), order_id)
    return stored


@router.get("/orders/{order_id}")
async def get_order(
    order_id: PathId, conn: Conn, ctx: Context, caller: Caller, lang: Lang
) -> OrderView:
    """One order with its ETA, in the view of the caller's role: staff see the route plan and
    why this engineer, the engineer their own route, the customer progress and ETA; staff and
    the engineer also the live tracking (last position, distance, recomputed ETA,
    `arrived_off_site`), the customer the recomputed ETA.
    """
    stored = await _visible(conn, caller, order_id)
    tracked = await _tracking(conn, ctx, [order_id])
    view = order_view(stored, caller, tracked.get(order_id))
    (view,) = await _with_followup(conn, ctx, caller, lang, [view])
    return view


@router.get("/orders/{order_id}/events")
async def order_events(order_id: PathId, conn: Conn, caller: Caller) -> list[OrderEventView]:
    """The order's audit trail: every transition and when; staff also see who did it and the
    details (notes, stock movements), the engineer who did it.
    """
    await _visible(conn, caller, order_id)
    return [event_view(e, caller) for e in await order_store.events_of(conn, order_id)]


@router.get("/orders/{order_id}/timers")
async def order_timers(order_id: PathId, conn: Conn, caller: Staff) -> list[dict[str, Any]]:
    """The order's SLA timers, pending and fired."""
    await _visible(conn, caller, order_id)
    return await timer_store.timers_of(conn, order_id)


EngineerAction = Literal["accept", "start-travel", "arrive", "complete", "contact"]


def _assigned_to(caller: Principal) -> str | None:
    """Who the order must be assigned to for the caller to act on it; None for staff.

    Raises:
        ForbiddenError: A customer or the monitoring desk: they follow orders, they do not
            act on them.
    """
    if caller.role in (Role.CUSTOMER, Role.MONITOR):
        raise ForbiddenError(f"a {caller.role.value} follows orders; it does not act on them")
    return caller.subject_id if caller.role is Role.ENGINEER else None


async def _act(ctx: Context, caller: Principal, order_id: int, command: Command) -> OrderView:
    # The assignment is checked inside the action's transaction, on the locked order row: an
    # order transferred away while the request waited is refused, not acted on.
    stored = await act(
        ctx.pool, ctx.sla_policy, order_id, command, actor=caller.actor,
        assigned_to=_assigned_to(caller),
    )  # fmt: skip
    return order_view(stored, caller)


async def _staff_act(ctx: Context, caller: Principal, order_id: int, command: Command) -> OrderOut:
    stored = await act(ctx.pool, ctx.sla_policy, order_id, command, actor=caller.actor)
    return OrderOut.of(stored)


@router.post("/orders/{order_id}/accept")
async def accept(order_id: PathId, ctx: Context, caller: Caller) -> OrderView:
    """The engineer takes the order."""
    return await _act(ctx, caller, order_id, Accept())


@router.post("/orders/{order_id}/start-travel")
async def start_travel(order_id: PathId, ctx: Context, caller: Caller) -> OrderView:
    """The engineer is on the way."""
    return await _act(ctx, caller, order_id, StartTravel())


@router.post("/orders/{order_id}/arrive")
async def arrive(order_id: PathId, ctx: Context, caller: Caller) -> OrderView:
    """The engineer is at the machine."""
    return await _act(ctx, caller, order_id, Arrive())


@router.post("/orders/{order_id}/complete")
async def complete(
    order_id: PathId, ctx: Context, caller: Caller, body: CompleteIn = _COMPLETE
) -> OrderView:
    """The repair is done: the parts used are taken out of stock, the rest released."""
    used = tuple(PartNeed(p.part_no, p.quantity) for p in body.parts_used)
    return await _act(ctx, caller, order_id, Complete(used, body.note))


@router.post("/orders/{order_id}/contact")
async def contact(
    order_id: PathId, ctx: Context, caller: Caller, body: ActionIn = _NOTE
) -> OrderView:
    """The customer was called (the callback check 15 minutes after dispatch looks for this)."""
    return await _act(ctx, caller, order_id, ContactCustomer(body.note))


@router.post("/orders/{order_id}/survey")
async def survey(order_id: PathId, ctx: Context, caller: Staff, body: ActionIn = _NOTE) -> OrderOut:
    """The satisfaction call after completion was made."""
    return await _staff_act(ctx, caller, order_id, RecordSurvey(body.note))


@router.post("/orders/{order_id}/close")
async def close(order_id: PathId, ctx: Context, caller: Staff, body: ActionIn = _NOTE) -> OrderOut:
    """Close a completed order."""
    return await _staff_act(ctx, caller, order_id, Close(body.note))


@router.post("/orders/{order_id}/transfer")
async def transfer(order_id: PathId, body: TransferIn, ctx: Context, caller: Staff) -> OrderOut:
    """Give the order to another engineer; the reservation moves with it."""
    command = Transfer(body.to_engineer_id, body.pickup_warehouse_id, body.reason)
    return await _staff_act(ctx, caller, order_id, command)


@router.post("/orders/{order_id}/cancel")
async def cancel(order_id: PathId, body: CancelIn, ctx: Context, caller: Staff) -> OrderOut:
    """Call the order off; reserved parts are released."""
    return await _staff_act(ctx, caller, order_id, Cancel(body.reason))


@router.get("/sla/breaches")
async def sla_breaches(
    conn: Conn,
    caller: Annotated[Principal, Depends(allow(Role.EXPERT))],
    since: Instant | None = None,
    kind: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[BreachOut]:
    """Service levels missed, newest first."""
    found = await timer_store.breaches(conn, since=since, kind=kind, limit=limit)
    return [
        BreachOut(timer_id=b.timer_id, order_id=b.order_id, kind=b.kind.value, due_at=b.due_at,
                  fired_at=b.fired_at, detail=b.detail)
        for b in found
    ]  # fmt: skip
