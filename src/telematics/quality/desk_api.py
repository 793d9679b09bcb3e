"""The monitoring desk over HTTP: open tasks oldest first, and what a call found.

Tasks are made by the SLA timer runner (`store.desk`); the desk (monitor role) and staff
(admin, expert) work them. Each
task comes with its order, whom to call, the engineer, the planned ETA and the engineer's live
tracking (last position, road distance, ETA recomputed from it).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from telematics.api.context import Conn, Context, allow
from telematics.api.order_schemas import TrackingOut
from telematics.api.schemas import BeforeId, BodyIn, PathId
from telematics.store import desk
from telematics.store import tracking as tracking_store
from telematics.store.desk import DeskTask
from telematics.store.tokens import Principal, Role
from telematics.store.tracking import Tracking

router = APIRouter(prefix="/v1/desk", tags=["monitoring desk"])

Desk = Annotated[Principal, Depends(allow(Role.EXPERT, Role.MONITOR))]
"""The admin, an expert, or the monitoring desk."""


class ResultOut(BaseModel):
    """What the desk found."""

    reached: bool
    said: str
    follow_up: str
    engineer_called: bool | None
    service_failure: bool = Field(description="A callback found the engineer never called")
    done_at: datetime
    done_by: str


class TaskOut(BaseModel):
    """A desk task with what the call needs."""

    task_id: int
    kind: str = Field(
        description="callback_check, arrival_escalation, completion_escalation or "
        "post_completion_callback"
    )
    escalation: bool
    verdict: str = Field(description="The verdict of the SLA timer behind it")
    ask: str = Field(description="What to find out")
    due_at: datetime
    created_at: datetime
    state: str
    notified_line: int | None = Field(description="Support line the alarm was handed to")
    order_id: int
    order_state: str
    severity: str
    machine_id: str
    fault: str | None
    customer_id: str
    engineer_id: str | None
    eta: datetime | None = Field(description="The planned arrival")
    site_lat: float
    site_lon: float
    tracking: TrackingOut | None
    result: ResultOut | None


def _out(t: DeskTask, tracked: Tracking | None) -> TaskOut:
    r = t.result
    return TaskOut(
        task_id=t.task_id, kind=t.kind.value, escalation=t.escalation, verdict=t.verdict,
        ask=t.ask, due_at=t.due_at, created_at=t.created_at, state=t.state,
        notified_line=t.notified_line, order_id=t.order_id, order_state=t.order_state,
        severity=t.severity, machine_id=t.machine_id, fault=t.fault, customer_id=t.customer_id,
        engineer_id=t.engineer_id, eta=t.eta, site_lat=t.site[0], site_lon=t.site[1],
        tracking=TrackingOut.of(tracked),
        result=None if r is None else ResultOut(
            reached=r.reached, said=r.said, follow_up=r.follow_up,
            engineer_called=r.engineer_called, service_failure=r.service_failure,
            done_at=r.done_at, done_by=r.done_by,
        ),
    )  # fmt: skip


TaskState = Literal["open", "done", "all"]
TaskKindQuery = Literal[
    "callback_check", "arrival_escalation", "completion_escalation", "post_completion_callback"
]


@router.get("/tasks")
async def list_tasks(
    conn: Conn,
    ctx: Context,
    caller: Desk,
    state: TaskState = "open",
    kind: TaskKindQuery | None = None,
    order_id: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
    after: BeforeId = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[TaskOut]:
    """Desk tasks oldest first (by when their timer came due); `after` is the last task_id of
    the previous page.
    """
    found = await desk.list_tasks(
        conn, state=None if state == "all" else state, kind=kind, order_id=order_id,
        after_id=after, limit=limit,
    )  # fmt: skip
    tracked = await tracking_store.track(
        conn, sorted({t.order_id for t in found}), now=datetime.now(UTC),
        off_site_m=ctx.settings.tracking_off_site_m,
    )  # fmt: skip
    return [_out(t, tracked.get(t.order_id)) for t in found]


class ResultIn(BodyIn):
    """What the call found."""

    reached: bool = Field(description="Whether the customer was reached")
    said: str = Field(default="", max_length=4000, description="What the customer said")
    follow_up: str = Field(default="", max_length=4000, description="What happens next")
    engineer_called: bool | None = Field(
        default=None,
        description="Callback check: whether the engineer had called the customer; false is "
        "recorded as a service failure",
    )


@router.post("/tasks/{task_id}/result")
async def record_result(
    task_id: PathId, body: ResultIn, conn: Conn, ctx: Context, caller: Desk
) -> TaskOut:
    """Close a task with what the call found (409 if it is done already)."""
    done = await desk.record_result(
        conn, task_id, reached=body.reached, said=body.said, follow_up=body.follow_up,
        engineer_called=body.engineer_called, by=caller.actor, now=datetime.now(UTC),
    )  # fmt: skip
    tracked = await tracking_store.track(
        conn, [done.order_id], now=datetime.now(UTC), off_site_m=ctx.settings.tracking_off_site_m
    )
    return _out(done, tracked.get(done.order_id))
