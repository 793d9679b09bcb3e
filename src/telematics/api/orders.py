"""Service orders: dispatch an alarm, follow the order, engineers' actions, SLA breaches."""

from __future__ import annotations

from datetime import datetime
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
from telematics.api.schemas import ID_PATTERN, BeforeId, BodyIn, Instant, PathId, StoredId
from telematics.base.errors import ForbiddenError, InvalidRequestError
from telematics.services.dispatching import (
    act,
    dispatch_alarm,
    dispatch_alarms,
    order_visible,
    require_found,
)
from telematics.store import orders as order_store
from telematics.store.orders import StoredOrder
from telematics.store.tokens import Principal, Role

router = APIRouter(prefix="/v1", tags=["orders"])


class DispatchIn(BodyIn):
    """Send someone: the suggested engineer unless one is chosen."""

    engineer_id: str | None = Field(default=None, pattern=ID_PATTERN)
    note: str = Field(default="", max_length=4000)


class PartOut(BaseModel):
    """A part and how many."""

    part_no: str
    quantity: int


class OrderOut(BaseModel):
    """A service order with its route plan and ETA."""

    order_id: int
    alarm_id: int | None
    machine_id: str
    customer_id: str
    state: str
    severity: str
    fault: str | None
    skills: list[str]
    parts: list[PartOut]
    engineer_id: str | None
    site_lat: float
    site_lon: float
    eta: datetime | None
    plan: dict[str, Any] | None = Field(description="Route, distances, ETA and why this engineer")
    reserved: list[PartOut]
    consumed: list[PartOut]
    created_at: datetime
    updated_at: datetime
    version: int

    @classmethod
    def of(cls, s: StoredOrder) -> OrderOut:
        """From the store's value."""
        o = s.order
        return cls(
            order_id=s.order_id,
            alarm_id=s.alarm_id,
            machine_id=s.machine_id,
            customer_id=s.customer_id,
            state=o.state.value,
            severity=o.severity.value,
            fault=s.fault,
            skills=list(s.skills),
            parts=[PartOut(part_no=p.part_no, quantity=p.quantity) for p in o.parts],
            engineer_id=o.engineer_id,
            site_lat=s.site_lat,
            site_lon=s.site_lon,
            eta=s.eta,
            plan=s.plan,
            reserved=[PartOut(part_no=p.part_no, quantity=p.quantity) for p in o.reserved],
            consumed=[PartOut(part_no=p.part_no, quantity=p.quantity) for p in o.consumed],
            created_at=o.created_at,
            updated_at=o.updated_at,
            version=o.version,
        )


class OrderEventOut(BaseModel):
    """One entry of an order's audit trail."""

    event_id: int
    at: datetime
    actor: str
    action: str
    from_state: str | None
    to_state: str
    detail: dict[str, Any]


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
    caller: Caller,
    state: str | None = None,
    engineer_id: str | None = None,
    customer_id: str | None = None,
    machine_id: str | None = None,
    before: BeforeId = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[OrderOut]:
    """Orders newest first: staff see all, an engineer their own, a customer its own."""
    if caller.role is Role.ENGINEER:
        engineer_id = caller.subject_id
    elif caller.role is Role.CUSTOMER:
        customer_id = caller.subject_id
    where = order_store.OrderFilter(state, engineer_id, customer_id, machine_id)
    found = await order_store.list_orders(conn, where, before_id=before, limit=limit)
    return [OrderOut.of(o) for o in found]


async def _visible(conn: Conn, caller: Principal, order_id: int) -> StoredOrder:
    stored = await order_store.load(conn, order_id)
    require_found(order_visible(stored, caller.role.value, caller.subject_id), order_id)
    return stored


@router.get("/orders/{order_id}")
async def get_order(order_id: PathId, conn: Conn, caller: Caller) -> OrderOut:
    """One order with its route plan and ETA."""
    return OrderOut.of(await _visible(conn, caller, order_id))


@router.get("/orders/{order_id}/events")
async def order_events(order_id: PathId, conn: Conn, caller: Caller) -> list[OrderEventOut]:
    """The order's audit trail: every transition with who and when, and its stock movements."""
    await _visible(conn, caller, order_id)
    return [
        OrderEventOut(event_id=e.event_id, at=e.at, actor=e.actor, action=e.action,
                      from_state=e.from_state, to_state=e.to_state, detail=e.detail)
        for e in await order_store.events_of(conn, order_id)
    ]  # fmt: skip


@router.get("/orders/{order_id}/timers")
async def order_timers(order_id: PathId, conn: Conn, caller: Staff) -> list[dict[str, Any]]:
    """The order's SLA timers, pending and fired."""
    await _visible(conn, caller, order_id)
    return await order_store.timers_of(conn, order_id)


EngineerAction = Literal["accept", "start-travel", "arrive", "complete", "contact"]


async def _engineer_or_staff(conn: Conn, caller: Principal, order_id: int) -> None:
    stored = await _visible(conn, caller, order_id)
    if caller.role is Role.CUSTOMER:
        raise ForbiddenError("customers follow orders; they do not act on them")
    if caller.role is Role.ENGINEER and stored.order.engineer_id != caller.subject_id:
        raise ForbiddenError("the order is not assigned to you")


async def _act(ctx: Context, caller: Principal, order_id: int, command: Command) -> OrderOut:
    stored = await act(ctx.pool, ctx.sla_policy, order_id, command, actor=caller.actor)
    return OrderOut.of(stored)


@router.post("/orders/{order_id}/accept")
async def accept(order_id: PathId, conn: Conn, ctx: Context, caller: Caller) -> OrderOut:
    """The engineer takes the order."""
    await _engineer_or_staff(conn, caller, order_id)
    return await _act(ctx, caller, order_id, Accept())


@router.post("/orders/{order_id}/start-travel")
async def start_travel(order_id: PathId, conn: Conn, ctx: Context, caller: Caller) -> OrderOut:
    """The engineer is on the way."""
    await _engineer_or_staff(conn, caller, order_id)
    return await _act(ctx, caller, order_id, StartTravel())


@router.post("/orders/{order_id}/arrive")
async def arrive(order_id: PathId, conn: Conn, ctx: Context, caller: Caller) -> OrderOut:
    """The engineer is at the machine."""
    await _engineer_or_staff(conn, caller, order_id)
    return await _act(ctx, caller, order_id, Arrive())


@router.post("/orders/{order_id}/complete")
async def complete(
    order_id: PathId, conn: Conn, ctx: Context, caller: Caller, body: CompleteIn = _COMPLETE
) -> OrderOut:
    """The repair is done: the parts used are taken out of stock, the rest released."""
    await _engineer_or_staff(conn, caller, order_id)
    used = tuple(PartNeed(p.part_no, p.quantity) for p in body.parts_used)
    return await _act(ctx, caller, order_id, Complete(used, body.note))


@router.post("/orders/{order_id}/contact")
async def contact(
    order_id: PathId, conn: Conn, ctx: Context, caller: Caller, body: ActionIn = _NOTE
) -> OrderOut:
    """The customer was called (the callback check 15 minutes after dispatch looks for this)."""
    await _engineer_or_staff(conn, caller, order_id)
    return await _act(ctx, caller, order_id, ContactCustomer(body.note))


@router.post("/orders/{order_id}/survey")
async def survey(order_id: PathId, ctx: Context, caller: Staff, body: ActionIn = _NOTE) -> OrderOut:
    """The satisfaction call after completion was made."""
    return await _act(ctx, caller, order_id, RecordSurvey(body.note))


@router.post("/orders/{order_id}/close")
async def close(order_id: PathId, ctx: Context, caller: Staff, body: ActionIn = _NOTE) -> OrderOut:
    """Close a completed order."""
    return await _act(ctx, caller, order_id, Close(body.note))


@router.post("/orders/{order_id}/transfer")
async def transfer(order_id: PathId, body: TransferIn, ctx: Context, caller: Staff) -> OrderOut:
    """Give the order to another engineer; the reservation moves with it."""
    command = Transfer(body.to_engineer_id, body.pickup_warehouse_id, body.reason)
    return await _act(ctx, caller, order_id, command)


@router.post("/orders/{order_id}/cancel")
async def cancel(order_id: PathId, body: CancelIn, ctx: Context, caller: Staff) -> OrderOut:
    """Call the order off; reserved parts are released."""
    return await _act(ctx, caller, order_id, Cancel(body.reason))


@router.get("/sla/breaches")
async def sla_breaches(
    conn: Conn,
    caller: Annotated[Principal, Depends(allow(Role.EXPERT))],
    since: Instant | None = None,
    kind: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[BreachOut]:
    """Service levels missed, newest first."""
    found = await order_store.breaches(conn, since=since, kind=kind, limit=limit)
    return [
        BreachOut(timer_id=b.timer_id, order_id=b.order_id, kind=b.kind.value, due_at=b.due_at,
                  fired_at=b.fired_at, detail=b.detail)
        for b in found
    ]  # fmt: skip
