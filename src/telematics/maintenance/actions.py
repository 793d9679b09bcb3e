"""What callers do to a machine's maintenance: record a completion, order a planned service.

A completion is checked against the machine (its plan has the item, the counter is not exceeded
by more than the margin, the time is not in the future, the parts exist), stored once however
often it is posted, and the machine's status rows are evaluated again in the same transaction,
so the fleet's due list resets at once. A planned service order goes through the dispatch every
alarm order takes (`services.dispatching.dispatch_work`): the same matching, part reservations
and SLA timers; the store allows one open order per (machine, item).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg

from diagnosis.events import Severity
from dispatch.needs import PartNeed
from dispatch.sla import SlaPolicy
from telematics.base.config import Settings
from telematics.base.db import acquire
from telematics.base.errors import ConflictError, InvalidRequestError, NotFoundError
from telematics.maintenance import completions, plan_store
from telematics.maintenance.completions import Completion
from telematics.maintenance.evaluation import MachineView, Tuning, evaluate, plan_book, refresh
from telematics.maintenance.plan import PartLine
from telematics.maintenance.schedule import Status
from telematics.services.dispatching import DispatchResult, Work, dispatch_work
from telematics.store.registry import Machine


async def machine_view(
    conn: asyncpg.Connection, machine: Machine, settings: Settings
) -> MachineView:
    """The machine's maintenance as it stands now."""
    book = await plan_book(conn)
    today = datetime.now(UTC).date()
    (view,) = await evaluate(conn, [machine], book, Tuning.of(settings), today)
    return view


async def record_done(
    conn: asyncpg.Connection,
    machine: Machine,
    item: str,
    *,
    engine_hours: float,
    done_at: datetime,
    parts_used: list[PartLine],
    notes: str,
    actor: str,
    settings: Settings,
) -> tuple[Completion, bool]:
    """Record that `item` was serviced on `machine`, in a transaction on `conn`; returns the
    completion and whether this call recorded it (False: the same machine, item and time were
    recorded already, with the same values).

    Raises:
        NotFoundError: The machine's plan has no such item.
        InvalidRequestError: The time is in the future, the hours exceed the machine's counter
            by more than the margin, or a part is not in the catalogue.
        ConflictError: The same machine, item and time were recorded with other values.
    """
    now = datetime.now(UTC)
    if done_at > now + timedelta(seconds=settings.future_tolerance_s):
        raise InvalidRequestError(f"done_at {done_at.isoformat()} is in the future")
    async with conn.transaction():
        book = await plan_book(conn)
        plan = book.for_machine(machine.machine_class, machine.model)
        if all(i.item != item for i in plan):
            raise NotFoundError(f"maintenance item of {machine.machine_id}", item)
        tuning = Tuning.of(settings)
        (view,) = await evaluate(conn, [machine], book, tuning, now.date())
        margin = settings.maintenance_hours_margin_h
        if view.engine_hours is not None and engine_hours > view.engine_hours + margin:
            at = view.engine_hours_at.isoformat() if view.engine_hours_at else "?"
            raise InvalidRequestError(
                f"engine_hours {engine_hours:g} is above the machine's counter "
                f"({view.engine_hours:g} h at {at}) by more than {margin:g} h"
            )
        missing = await plan_store.unknown_parts(conn, [p.part_no for p in parts_used])
        if missing:
            raise InvalidRequestError(f"unknown parts: {', '.join(missing)}")
        done, created = await completions.record(
            conn, machine.machine_id, item, done_at=done_at, engine_hours=engine_hours,
            done_by=actor, parts_used=parts_used, notes=notes,
        )  # fmt: skip
        if not created and (
            done.engine_hours != engine_hours
            or done.parts_used != tuple(parts_used)
            or done.notes != notes
        ):
            raise ConflictError(
                f"other values for the completion of {item} on {machine.machine_id} at",
                done_at.isoformat(),
            )
        await refresh(conn, [machine], book, tuning, now)
        return done, created


async def order_item(
    pool: asyncpg.Pool,
    policy: SlaPolicy,
    machine: Machine,
    item: str,
    *,
    engineer_id: str | None,
    note: str,
    actor: str,
    settings: Settings,
) -> DispatchResult:
    """A planned service order for `item` on `machine`, dispatched like an alarm's: severity
    `minor` when the item is overdue, `info` otherwise; the item's parts and skills.

    Raises:
        NotFoundError: The machine's plan has no such item.
        ConflictError: The item already has an open order on the machine.
        RefusedError: Nobody can serve it (skills, shift, capacity, parts).
        InvalidRequestError: The machine has no site and no recent position.
    """
    async with acquire(pool) as conn:
        view = (await machine_view(conn, machine, settings)).item(item)
    if view is None:
        raise NotFoundError(f"maintenance item of {machine.machine_id}", item)
    overdue = view.schedule.status is Status.OVERDUE
    work = Work(
        machine_id=machine.machine_id,
        fault=f"maintenance:{item}",
        severity=Severity.MINOR if overdue else Severity.INFO,
        parts=tuple(PartNeed(p.part_no, p.quantity) for p in view.item.parts),
        skills=frozenset(view.item.skills),
    )
    return await dispatch_work(pool, policy, work, actor=actor, engineer_id=engineer_id, note=note)
