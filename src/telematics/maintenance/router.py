"""Maintenance over HTTP: plans, a machine's items, completions, planned orders, the due list.

Roles (docs/maintenance.md): plans are read by any caller (they hold no customer data) and
written by staff; a machine's maintenance is seen by whoever may see the machine
(`api.machines.visible_machine`: staff, its customer, an engineer with an order on it), who may
also record a completion; planned service orders are staff's, as dispatch is; the due list is
staff's across the fleet and a customer's for its own machines.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response, status

from telematics.api.context import Caller, Conn, Context, Staff, allow
from telematics.api.machines import visible_machine
from telematics.api.order_schemas import OrderOut
from telematics.base.db import acquire
from telematics.base.errors import InvalidRequestError
from telematics.maintenance import plan_store
from telematics.maintenance.actions import machine_view, order_item, record_done
from telematics.maintenance.book import scope_of
from telematics.maintenance.completions import Completion
from telematics.maintenance.evaluation import ItemView, MachineView, shipped_plans
from telematics.maintenance.plan import ITEM_PATTERN
from telematics.maintenance.schedule import Status
from telematics.maintenance.schemas import (
    DoneIn,
    DoneOut,
    DueItemOut,
    DuePage,
    LastDoneOut,
    MachineMaintenanceOut,
    MaintenanceItemOut,
    OrderIn,
    PartOut,
    PlanIn,
    PlanItemOut,
    PlanOut,
)
from telematics.maintenance.status_store import DueFilter, due_list
from telematics.store.machine_fields import DESIGNATION_MAX, DESIGNATION_PATTERN, MachineClass
from telematics.store.tokens import Principal, Role

router = APIRouter(prefix="/v1", tags=["maintenance"])

PlanKeyPath = Annotated[
    str,
    Path(
        min_length=1,
        max_length=DESIGNATION_MAX,
        pattern=DESIGNATION_PATTERN,
        description="A machine class (or `default`), else a model designation",
    ),
]
ItemPath = Annotated[str, Path(pattern=ITEM_PATTERN)]
_ORDER = OrderIn()


@router.get("/maintenance/plans/{class_or_model}")
async def get_plan(class_or_model: PlanKeyPath, conn: Conn, caller: Caller) -> PlanOut:
    """The plan written for a class or a model: the stored one (edited over the API), else the
    shipped one; `source` says which, `none` with no items when neither exists (a class then
    follows `default`; a model, its class).
    """
    book = shipped_plans()
    stored = await plan_store.stored_plans(conn)
    key = (scope_of(class_or_model), class_or_model)
    items, source = (stored[key], "stored") if key in stored else book.own(class_or_model)
    return PlanOut(
        key=class_or_model,
        scope=key[0],
        source=source,
        items=[PlanItemOut.of(i) for i in items or ()],
    )


@router.put("/maintenance/plans/{class_or_model}")
async def put_plan(class_or_model: PlanKeyPath, body: PlanIn, conn: Conn, caller: Staff) -> PlanOut:
    """Replace the plan of a class or model; it takes precedence over the shipped one. Parts
    missing from the catalogue are accepted with a warning (they cannot be reserved until
    they are in it). Machines' statuses follow at the maintenance job's next round.
    """
    items = body.value()
    scope = scope_of(class_or_model)
    async with conn.transaction():
        stored = await plan_store.put_plan(conn, scope, class_or_model, items, caller.actor)
        missing = await plan_store.unknown_parts(conn, [p.part_no for i in items for p in i.parts])
    return PlanOut(
        key=stored.key,
        scope=stored.scope,
        source="stored",
        items=[PlanItemOut.of(i) for i in stored.items],
        warnings=[f"part {p} is not in the parts catalogue" for p in missing],
    )


def _last(done: Completion) -> LastDoneOut:
    return LastDoneOut(
        done_id=done.done_id,
        engine_hours=done.engine_hours,
        done_at=done.done_at,
        done_by=done.done_by,
        parts_used=[PartOut(part_no=p.part_no, quantity=p.quantity) for p in done.parts_used],
        notes=done.notes,
    )


def _item_out(i: ItemView) -> MaintenanceItemOut:
    s = i.schedule
    return MaintenanceItemOut(
        item=i.item.item,
        name=i.item.name,
        every_h=i.item.every_h,
        every_days=i.item.every_days,
        last_done=None if i.history is None else _last(i.history.last),
        due_at_h=s.due_at_h,
        due_date=s.due_date,
        remaining_h=s.remaining_h,
        remaining_days=s.remaining_days,
        status=s.status,
        forecast_due_date=s.forecast_due_date,
        open_order_id=i.open_order_id,
    )


def _view_out(v: MachineView) -> MachineMaintenanceOut:
    return MachineMaintenanceOut(
        machine_id=v.machine.machine_id,
        machine_class=v.machine.machine_class,
        model=v.machine.model,
        engine_hours=v.engine_hours,
        engine_hours_at=v.engine_hours_at,
        usage_h_per_day=None if v.usage_h_per_day is None else round(v.usage_h_per_day, 3),
        items=[_item_out(i) for i in v.items],
    )


@router.get("/machines/{machine_id}/maintenance")
async def machine_maintenance(
    machine_id: str, conn: Conn, caller: Caller, ctx: Context
) -> MachineMaintenanceOut:
    """The machine's plan items: last done, due point, remaining hours and days, status and the
    forecast due date from its usage rate (docs/maintenance.md), computed now.
    """
    machine = await visible_machine(conn, caller, machine_id)
    return _view_out(await machine_view(conn, machine, ctx.settings))


@router.post(
    "/machines/{machine_id}/maintenance/{item}/done",
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {"description": "Recorded before with the same values", "model": DoneOut},
        409: {"description": "Recorded before with other values"},
    },
)
async def maintenance_done(
    machine_id: str,
    item: ItemPath,
    body: DoneIn,
    conn: Conn,
    caller: Annotated[Principal, Depends(allow(Role.EXPERT, Role.ENGINEER, Role.CUSTOMER))],
    ctx: Context,
    response: Response,
) -> DoneOut:
    """Record a completed service: the item's cycle restarts from it. 201 when recorded, 200
    when the same (machine, item, done_at) was recorded before with the same values, 409 with
    other values.
    """
    machine = await visible_machine(conn, caller, machine_id)
    done, created = await record_done(
        conn, machine, item, engine_hours=body.engine_hours, done_at=body.done_at,
        parts_used=[p.value() for p in body.parts_used], notes=body.notes,
        actor=caller.actor, settings=ctx.settings,
    )  # fmt: skip
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return DoneOut(machine_id=machine_id, item=item, created=created, done=_last(done))


@router.post("/machines/{machine_id}/maintenance/{item}/order", status_code=status.HTTP_201_CREATED)
async def maintenance_order(
    machine_id: str, item: ItemPath, ctx: Context, caller: Staff, body: OrderIn = _ORDER
) -> OrderOut:
    """A planned service order for the item, dispatched like an alarm's (matching, parts
    reserved, SLA timers): severity `minor` when overdue, else `info`; fault
    `maintenance:<item>`. One open order per machine and item (409 otherwise).
    """
    async with acquire(ctx.pool, timeout_s=ctx.acquire_timeout_s) as conn:
        machine = await visible_machine(conn, caller, machine_id)
    result = await order_item(
        ctx.pool, ctx.sla_policy, machine, item, engineer_id=body.engineer_id,
        note=body.note, actor=caller.actor, settings=ctx.settings,
    )  # fmt: skip
    return OrderOut.of(result.order)


def _cursor(after: str | None) -> tuple[date, str, str] | None:
    if after is None:
        return None
    parts = after.split("|")
    try:
        day, machine_id, item = parts
        return date.fromisoformat(day), machine_id, item
    except ValueError as exc:
        raise InvalidRequestError("after: use the next_after of the page before") from exc


@router.get("/maintenance/due")
async def maintenance_due(
    conn: Conn,
    caller: Annotated[Principal, Depends(allow(Role.EXPERT, Role.CUSTOMER))],
    within_days: Annotated[int | None, Query(ge=0, le=3650)] = None,
    statuses: Annotated[list[Status] | None, Query(alias="status")] = None,
    customer_id: Annotated[str | None, Query(max_length=64)] = None,
    machine_class: MachineClass | None = None,
    after: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> DuePage:
    """Plan items across the fleet by forecast due date, as the maintenance job last evaluated
    them (`computed_at`): those forecast due within `within_days` or not `ok`, in the given
    statuses, of a customer or class. A customer sees its own machines only.
    """
    if caller.role is Role.CUSTOMER:
        customer_id = caller.subject_id
    until = None
    if within_days is not None:
        until = datetime.now(UTC).date() + timedelta(days=within_days)
    rows = await due_list(
        conn,
        DueFilter(
            customer_id=customer_id,
            machine_class=machine_class,
            statuses=None if not statuses else tuple(s.value for s in statuses),
            until=until,
        ),
        after=_cursor(after),
        limit=limit,
    )
    items = [
        DueItemOut(
            machine_id=r.state.machine_id, customer_id=r.state.customer_id,
            machine_class=r.machine_class, item=r.state.item, name=r.state.name,
            status=Status(r.state.status), engine_hours=r.state.engine_hours,
            due_at_h=r.state.due_at_h, remaining_h=r.state.remaining_h,
            due_date=r.state.due_date, forecast_due_date=r.state.forecast_due_date,
            usage_h_per_day=r.state.usage_h_per_day, computed_at=r.computed_at,
        )
        for r in rows
    ]  # fmt: skip
    last = items[-1] if len(items) == limit else None
    next_after = None
    if last is not None:
        day = last.forecast_due_date or date(9999, 12, 31)
        next_after = f"{day.isoformat()}|{last.machine_id}|{last.item}"
    return DuePage(items=items, next_after=next_after)
