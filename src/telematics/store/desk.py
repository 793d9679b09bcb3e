"""The monitoring desk's tasks in PostgreSQL: made from SLA timers as they fire, worked by staff.

`make_task` is called by the SLA timer runner (`services.sla_worker.fire_due`) inside the
transaction that records a timer's verdict, on the row it holds `FOR UPDATE SKIP LOCKED`; the
task's `timer_id` is unique, so a timer makes one task, once, whatever number of runners claim
timers and however often they restart. Which timers make a task, and what the desk is to ask,
is the table `TASK_OF` here: a pure mapping from (timer kind, verdict) to task kind.

It must never decide who may work a task (the quality router's) nor compute KPIs over tasks
(`telematics.quality`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Final

import asyncpg
import orjson

from dispatch.sla import TimerKind, TimerSpec, Verdict
from telematics.base.errors import ConflictError, NotFoundError
from telematics.store.orders import StoredOrder


class TaskKind(StrEnum):
    """What the desk is asked to do."""

    CALLBACK_CHECK = "callback_check"
    ARRIVAL_ESCALATION = "arrival_escalation"
    COMPLETION_ESCALATION = "completion_escalation"
    POST_COMPLETION_CALLBACK = "post_completion_callback"


TASK_OF: Final[Mapping[tuple[TimerKind, Verdict], TaskKind]] = {
    # The desk calls 15 minutes after every dispatch still current, contact recorded or not.
    (TimerKind.CALLBACK_CHECK, Verdict.SATISFIED): TaskKind.CALLBACK_CHECK,
    (TimerKind.CALLBACK_CHECK, Verdict.BREACH): TaskKind.CALLBACK_CHECK,
    (TimerKind.ARRIVAL_DEADLINE, Verdict.BREACH): TaskKind.ARRIVAL_ESCALATION,
    (TimerKind.COMPLETION_ESCALATION, Verdict.BREACH): TaskKind.COMPLETION_ESCALATION,
    (TimerKind.SURVEY, Verdict.DUE): TaskKind.POST_COMPLETION_CALLBACK,
}
"""(timer kind, verdict) -> the task it makes; any other pair (moot, met deadlines) makes none."""

ESCALATIONS: Final = frozenset({TaskKind.ARRIVAL_ESCALATION, TaskKind.COMPLETION_ESCALATION})


def ask_for(kind: TaskKind, verdict: Verdict, stored: StoredOrder) -> str:
    """What the desk is to find out, in words, for an order's task."""
    engineer = stored.order.engineer_id or "(none assigned)"
    eta = "unknown" if stored.eta is None else stored.eta.isoformat(timespec="minutes")
    if kind is TaskKind.CALLBACK_CHECK:
        heard = (
            "no contact is recorded"
            if verdict is Verdict.BREACH
            else "a contact or arrival is recorded"
        )
        return (
            f"Call customer {stored.customer_id}: has engineer {engineer} called them? "
            f"({heard}); confirm the ETA {eta}. If the engineer never called, say so: it is "
            "recorded as a service failure."
        )
    if kind is TaskKind.ARRIVAL_ESCALATION:
        return (
            f"Engineer {engineer} was not on site by the {stored.order.severity} arrival "
            f"deadline: find out why, give customer {stored.customer_id} a new ETA, and help "
            "(parts, a transfer)."
        )
    if kind is TaskKind.COMPLETION_ESCALATION:
        return (
            f"Order not completed within the completion deadline (state "
            f"{stored.order.state}): find out from engineer {engineer} and customer "
            f"{stored.customer_id} why, and what help is needed."
        )
    return (
        f"Post-completion callback to customer {stored.customer_id}: was the job done, and "
        "ask the satisfaction survey (answers to POST /v1/surveys with this order_id)."
    )


async def make_task(
    conn: asyncpg.Connection,
    timer_id: int,
    spec: TimerSpec,
    stored: StoredOrder,
    verdict: Verdict,
    now: datetime,
    *,
    notify_line: int | None,
) -> int | None:
    """The desk task a fired timer makes, if any; its id, None when the timer makes none.

    Call in the transaction that records the timer's verdict. An escalation also hands the
    order's alarm up to `notify_line` (when set, and the alarm is below it), with an entry in
    the alarm's audit trail.
    """
    kind = TASK_OF.get((spec.kind, verdict))
    if kind is None:
        return None
    escalation = kind in ESCALATIONS
    line = notify_line if escalation and stored.alarm_id is not None else None
    task_id = await conn.fetchval(
        "INSERT INTO desk_tasks (timer_id, order_id, kind, verdict, escalation, ask, due_at, "
        "created_at, notified_line) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) "
        "ON CONFLICT (timer_id) DO NOTHING RETURNING task_id",
        timer_id,
        stored.order_id,
        kind.value,
        verdict.value,
        escalation,
        ask_for(kind, verdict, stored),
        spec.fires_at,
        now,
        line,
    )
    if task_id is not None and line is not None:
        await _notify_line(conn, stored.alarm_id, line, int(task_id), kind)
    return None if task_id is None else int(task_id)


async def _notify_line(
    conn: asyncpg.Connection, alarm_id: int | None, line: int, task_id: int, kind: TaskKind
) -> None:
    before = await conn.fetchval(
        "UPDATE alarms a SET support_line = $2, updated_at = now() FROM "
        "(SELECT alarm_id, support_line FROM alarms WHERE alarm_id = $1 FOR UPDATE) old "
        "WHERE a.alarm_id = old.alarm_id AND old.support_line < $2 RETURNING old.support_line",
        alarm_id,
        line,
    )
    if before is None:
        return
    detail = {"from_line": before, "to_line": line, "note": f"desk task {task_id}: {kind}"}
    await conn.execute(
        "INSERT INTO alarm_events (alarm_id, actor, action, detail) "
        "VALUES ($1, 'system:desk', 'escalated', $2::jsonb)",
        alarm_id,
        orjson.dumps(detail).decode(),
    )


@dataclass(frozen=True, slots=True)
class DeskTask:
    """A task with what the desk needs to make the call.

    Attributes:
        task_id: The task.
        order_id: Its order.
        kind: What to do.
        verdict: The verdict of the timer behind it.
        escalation: Whether it is an escalation.
        ask: What to find out.
        due_at: When its timer came due.
        created_at: When the task was made.
        state: open or done.
        notified_line: The support line the order's alarm was handed to, if any.
        order_state: The order's state now.
        severity: The order's severity.
        machine_id: The machine.
        fault: The fault being repaired.
        customer_id: Whom to call.
        engineer_id: The assigned engineer.
        eta: The engineer's planned arrival.
        site: The site (lat, lon).
        result: What the desk recorded, once done.
    """

    task_id: int
    order_id: int
    kind: TaskKind
    verdict: str
    escalation: bool
    ask: str
    due_at: datetime
    created_at: datetime
    state: str
    notified_line: int | None
    order_state: str
    severity: str
    machine_id: str
    fault: str | None
    customer_id: str
    engineer_id: str | None
    eta: datetime | None
    site: tuple[float, float]
    result: TaskResult | None


@dataclass(frozen=True, slots=True)
class TaskResult:
    """What the desk found.

    Attributes:
        reached: Whether the customer was reached.
        said: What the customer said.
        follow_up: What is to happen next.
        engineer_called: For a callback check, whether the engineer had called (None: unknown).
        service_failure: The engineer never called (recorded from `engineer_called` false).
        done_at: When recorded.
        done_by: Who recorded it.
    """

    reached: bool
    said: str
    follow_up: str
    engineer_called: bool | None
    service_failure: bool
    done_at: datetime
    done_by: str


_SELECT = """
    SELECT t.*, o.state AS order_state, o.severity, o.machine_id, o.fault, o.customer_id,
           o.engineer_id, o.eta, o.site_lat, o.site_lon
    FROM desk_tasks t JOIN orders o USING (order_id)
"""


def _task(r: asyncpg.Record) -> DeskTask:
    result = None
    if r["state"] == "done":
        result = TaskResult(
            r["reached"], r["said"] or "", r["follow_up"] or "", r["engineer_called"],
            r["service_failure"], r["done_at"], r["done_by"] or "",
        )  # fmt: skip
    return DeskTask(
        task_id=r["task_id"],
        order_id=r["order_id"],
        kind=TaskKind(r["kind"]),
        verdict=r["verdict"],
        escalation=r["escalation"],
        ask=r["ask"],
        due_at=r["due_at"],
        created_at=r["created_at"],
        state=r["state"],
        notified_line=r["notified_line"],
        order_state=r["order_state"],
        severity=r["severity"],
        machine_id=r["machine_id"],
        fault=r["fault"],
        customer_id=r["customer_id"],
        engineer_id=r["engineer_id"],
        eta=r["eta"],
        site=(r["site_lat"], r["site_lon"]),
        result=result,
    )


async def list_tasks(
    conn: asyncpg.Connection,
    *,
    state: str | None,
    kind: str | None,
    order_id: int | None,
    after_id: int | None,
    limit: int,
) -> list[DeskTask]:
    """Tasks oldest first (by when their timer came due, then id); `after_id` pages on."""
    rows = await conn.fetch(
        _SELECT
        + """ WHERE ($1::text IS NULL OR t.state = $1) AND ($2::text IS NULL OR t.kind = $2)
              AND ($3::bigint IS NULL OR t.order_id = $3)
              AND ($4::bigint IS NULL OR (t.due_at, t.task_id) >
                   (SELECT due_at, task_id FROM desk_tasks WHERE task_id = $4))
            ORDER BY t.due_at, t.task_id LIMIT $5""",
        state,
        kind,
        order_id,
        after_id,
        limit,
    )
    return [_task(r) for r in rows]


async def get_task(conn: asyncpg.Connection, task_id: int) -> DeskTask:
    """One task.

    Raises:
        NotFoundError: No such task.
    """
    row = await conn.fetchrow(_SELECT + " WHERE t.task_id = $1", task_id)
    if row is None:
        raise NotFoundError("desk task", str(task_id))
    return _task(row)


async def record_result(
    conn: asyncpg.Connection,
    task_id: int,
    *,
    reached: bool,
    said: str,
    follow_up: str,
    engineer_called: bool | None,
    by: str,
    now: datetime,
) -> DeskTask:
    """Close a task with what the desk found; a callback check that finds the engineer never
    called is recorded as a service failure.

    Raises:
        NotFoundError: No such task.
        ConflictError: The task is done already.
    """
    done = await conn.fetchval(
        "UPDATE desk_tasks SET state = 'done', reached = $2, said = $3, follow_up = $4, "
        "engineer_called = $5, service_failure = (kind = 'callback_check' AND $5 IS FALSE), "
        "done_at = $6, done_by = $7 WHERE task_id = $1 AND state = 'open' RETURNING task_id",
        task_id,
        reached,
        said,
        follow_up,
        engineer_called,
        now,
        by,
    )
    if done is None:
        await get_task(conn, task_id)  # NotFoundError when there is no such task
        raise ConflictError("result of desk task", str(task_id))
    return await get_task(conn, task_id)
