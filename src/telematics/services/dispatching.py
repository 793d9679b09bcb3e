"""Dispatch at the edge: alarms (and planned work without an alarm, `dispatch_work`) become
service orders for the best engineer, and orders move through their lifecycle with stock, audit
trail and SLA timers kept in the store.

The matching and the state machine are pure (`dispatch`); this module feeds them a snapshot of
the fleet from the store (`services.snapshot`) and writes their results back in one transaction.
The snapshot holds only the stock of the parts the order needs, so it stays small however large
the catalogue.

Concurrent dispatches: reservations are conditional UPDATEs (see `store.orders`), and the chosen
engineer's row is locked and their open orders counted again before the order is assigned
(`store.resources.claim_capacity`). When another order took the units or the engineer's last
free slot between the snapshot and the write, the transaction rolls back and the order is
matched again on a fresh snapshot, up to three times.

Lifecycle commands (`act`) run in one transaction that locks the order's row first: whether an
engineer may act on the order is decided on the locked row, and a transfer is re-planned there
for the new engineer (skills, shift, capacity, route and ETA), as a dispatch would be.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from diagnosis.events import Severity
from diagnosis.knowledge import KnowledgeBase
from dispatch.assignment import assign
from dispatch.errors import TransitionError
from dispatch.geo import GeoPoint
from dispatch.matching import rank
from dispatch.needs import OrderNeed, PartNeed
from dispatch.orders import (
    AuditEvent,
    Command,
    Dispatch,
    Order,
    StockAction,
    StockMovement,
    Transfer,
    apply,
    create_order,
)
from dispatch.ranking import Candidate, Ranking
from dispatch.sla import SlaPolicy, timers_for
from telematics.base.db import acquire
from telematics.base.errors import InvalidRequestError, NotFoundError, RefusedError
from telematics.services.alarm_needs import alarm_needs, site_of
from telematics.services.snapshot import fleet_snapshot
from telematics.store import alarms as alarm_store
from telematics.store import orders as order_store
from telematics.store import resources
from telematics.store.orders import StockShortError, StoredOrder
from telematics.store.registry import get_machine
from telematics.store.resources import EngineerFullError

log = logging.getLogger(__name__)

RESERVATION_ATTEMPTS = 3
_TAKEN_MEANWHILE = (StockShortError, EngineerFullError, asyncpg.DeadlockDetectedError)
"""What another transaction can take between the snapshot and the write: matched again."""


@dataclass(frozen=True, slots=True)
class DispatchResult:
    """An order created and dispatched, with the matching that chose its engineer."""

    order: StoredOrder
    chosen: Candidate
    ranking: Ranking


def _plan(candidate: Candidate, why_this_one: str) -> dict[str, Any]:
    return {
        "engineer_id": candidate.engineer_id,
        "pickup_warehouse_id": candidate.pickup_warehouse_id,
        "route": [
            {
                "kind": str(stop.kind),
                "place_id": stop.place_id,
                "lat": stop.position.lat,
                "lon": stop.position.lon,
                "distance_km": round(stop.distance_km, 2),
                "arrive_min": round(stop.arrive_min, 1),
            }
            for stop in candidate.route
        ],
        "distance_km": round(candidate.distance_km, 2),
        "detour_km": round(candidate.detour_km, 2),
        "eta_min": round(candidate.eta_min, 1),
        "explanation": candidate.explanation,
        "ranking": why_this_one,
    }


async def dispatch_alarm(
    pool: asyncpg.Pool,
    knowledge: KnowledgeBase,
    policy: SlaPolicy,
    alarm_id: int,
    *,
    actor: str,
    engineer_id: str | None,
    note: str,
    now: datetime | None = None,
    steps_tried: Sequence[str] = (),
) -> DispatchResult:
    """Create an order for an alarm and dispatch it to the best (or the chosen) engineer.

    `steps_tried`, the remote-fix steps the expert already went through with the customer, go
    into the alarm's trail (`steps_tried`) in the same transaction, for the engineer to read.

    Raises:
        NotFoundError: No such alarm.
        ConflictError: The alarm already has an open order, nobody can serve it, the chosen
            engineer is not among those who can, or stock ran out three times in a row.
    """
    for attempt in range(1, RESERVATION_ATTEMPTS + 1):
        try:
            async with acquire(pool) as conn, conn.transaction():
                job = await _job(conn, knowledge, alarm_id)
                result = await _dispatch_once(
                    conn, policy, job, actor, engineer_id, note, now or datetime.now(UTC)
                )
                if steps_tried:
                    detail = {"steps": list(steps_tried), "order_id": result.order.order_id}
                    await alarm_store.record(conn, alarm_id, actor, "steps_tried", detail)
                return result
        except _TAKEN_MEANWHILE as exc:
            log.info("dispatch of alarm %d: %s; matching again (%d)", alarm_id, exc, attempt)
    raise RefusedError(f"alarm {alarm_id}: its parts were taken by other orders meanwhile")


@dataclass(frozen=True, slots=True)
class Work:
    """Work on a machine that no alarm stands behind (planned maintenance), to become an order.

    Attributes:
        machine_id: The machine.
        fault: What the order is for, as stored in `orders.fault` (`maintenance:engine_oil`).
        severity: How urgent it is (planned work: `info` or `minor`).
        parts: Parts to bring, each part number once.
        skills: Skills the job needs.
    """

    machine_id: str
    fault: str
    severity: Severity
    parts: tuple[PartNeed, ...]
    skills: frozenset[str]


async def dispatch_work(
    pool: asyncpg.Pool,
    policy: SlaPolicy,
    work: Work,
    *,
    actor: str,
    engineer_id: str | None,
    note: str,
    now: datetime | None = None,
) -> DispatchResult:
    """Create an order for work without an alarm and dispatch it as `dispatch_alarm` does: the
    same matching, reservations and SLA timers.

    Raises:
        NotFoundError: No such machine.
        ConflictError: The work already has an open order (the store's unique indexes say so).
        RefusedError: Nobody can serve it, or stock ran out three times in a row.
        InvalidRequestError: The machine has no site and no recent position.
    """
    for attempt in range(1, RESERVATION_ATTEMPTS + 1):
        try:
            async with acquire(pool) as conn, conn.transaction():
                job = await _work_job(conn, work)
                return await _dispatch_once(
                    conn, policy, job, actor, engineer_id, note, now or datetime.now(UTC)
                )
        except _TAKEN_MEANWHILE as exc:
            log.info("dispatch of %s: %s; matching again (%d)", work.fault, exc, attempt)
    raise RefusedError(f"{work.fault}: its parts were taken by other orders meanwhile")


@dataclass(frozen=True, slots=True)
class _Job:
    """Work about to become an order: what it needs and where, and the alarm behind it if any."""

    alarm: alarm_store.Alarm | None
    machine_id: str
    customer_id: str
    severity: Severity
    fault: str
    need: OrderNeed
    site: tuple[float, float]


async def _job(conn: asyncpg.Connection, knowledge: KnowledgeBase, alarm_id: int) -> _Job:
    alarm = await alarm_store.get_alarm(conn, alarm_id)
    fault, diagnosis = alarm_needs(knowledge, alarm)
    parts = tuple(PartNeed(p.part_no, p.quantity) for p in diagnosis.parts)
    site = await site_of(conn, alarm.machine_id)
    order_id = await order_store.next_order_id(conn)
    need = OrderNeed(
        str(order_id), GeoPoint(*site), parts, frozenset(diagnosis.skills), alarm.severity
    )
    return _Job(alarm, alarm.machine_id, alarm.customer_id, alarm.severity, fault, need, site)


async def _work_job(conn: asyncpg.Connection, work: Work) -> _Job:
    machine = await get_machine(conn, work.machine_id)
    site = await site_of(conn, work.machine_id)
    order_id = await order_store.next_order_id(conn)
    need = OrderNeed(str(order_id), GeoPoint(*site), work.parts, work.skills, work.severity)
    return _Job(
        None, machine.machine_id, machine.customer_id, work.severity, work.fault, need, site
    )


async def _open_order(
    conn: asyncpg.Connection,
    policy: SlaPolicy,
    job: _Job,
    chosen: Candidate,
    plan: dict[str, Any],
    *,
    actor: str,
    note: str,
    now: datetime,
) -> StoredOrder:
    """Create the order, dispatch it to `chosen` (reserving its parts), start its timers and
    mark the alarm dispatched; all in the caller's transaction, which has claimed the engineer's
    capacity (`resources.claim_capacity`).
    """
    order_id = int(job.need.order_id)
    order, created = create_order(
        job.need.order_id, job.severity, job.need.parts, actor=actor, now=now
    )
    await order_store.insert_order(
        conn, order_id, order, created,
        alarm_id=None if job.alarm is None else job.alarm.alarm_id,
        machine_id=job.machine_id, customer_id=job.customer_id, fault=job.fault,
        skills=sorted(job.need.skills), site=job.site,
    )  # fmt: skip
    stored = await order_store.load(conn, order_id, lock=True)
    command = Dispatch(chosen.engineer_id, chosen.pickup_warehouse_id, note or chosen.explanation)
    dispatched, event = apply(order, command, actor=actor, now=now)
    await order_store.save(
        conn, stored, dispatched, event, plan=plan, eta=now + timedelta(minutes=chosen.eta_min)
    )
    await order_store.schedule(conn, [*timers_for(created, policy), *timers_for(event, policy)])
    if job.alarm is None:
        return await order_store.load(conn, order_id)
    alarm_id = job.alarm.alarm_id
    if job.alarm.resolution is None:
        await alarm_store.resolve(conn, alarm_id, actor, "dispatched", [], note)
    await alarm_store.record(
        conn, alarm_id, actor, "dispatch",
        {"order_id": order_id, "engineer_id": chosen.engineer_id, "eta_min": chosen.eta_min},
    )  # fmt: skip
    return await order_store.load(conn, order_id)


async def _dispatch_once(
    conn: asyncpg.Connection,
    policy: SlaPolicy,
    job: _Job,
    actor: str,
    engineer_id: str | None,
    note: str,
    now: datetime,
) -> DispatchResult:
    snapshot = await fleet_snapshot(conn, job.need.parts, now, engineer_id=engineer_id)
    ranking = rank(job.need, snapshot, now=now, limit=10)
    chosen = _choose(ranking, engineer_id)
    plan = _plan(chosen, ranking.explain())
    await resources.claim_capacity(conn, chosen.engineer_id)
    stored = await _open_order(conn, policy, job, chosen, plan, actor=actor, note=note, now=now)
    return DispatchResult(stored, chosen, ranking)


@dataclass(frozen=True, slots=True)
class BatchResult:
    """Orders created for a batch of alarms, and the alarms nobody could take."""

    orders: tuple[StoredOrder, ...]
    unassigned: tuple[tuple[int, str], ...]
    method: str
    total_eta_min: float


async def dispatch_alarms(
    pool: asyncpg.Pool,
    knowledge: KnowledgeBase,
    policy: SlaPolicy,
    alarm_ids: Sequence[int],
    *,
    actor: str,
    now: datetime | None = None,
) -> BatchResult:
    """Dispatch several alarms at once, jointly: the engineers are assigned to minimise the total
    arrival time (`dispatch.assignment.assign`), not one alarm after the other.

    Raises:
        NotFoundError: An alarm does not exist.
        ConflictError: An alarm already has an open order, or stock ran out three times.
    """
    if len(set(alarm_ids)) != len(alarm_ids):
        raise InvalidRequestError("an alarm appears twice in the batch")
    for attempt in range(1, RESERVATION_ATTEMPTS + 1):
        try:
            async with acquire(pool) as conn, conn.transaction():
                return await _dispatch_batch(
                    conn, knowledge, policy, alarm_ids, actor, now or datetime.now(UTC)
                )
        except _TAKEN_MEANWHILE as exc:
            log.info("batch dispatch: %s; assigning again (%d)", exc, attempt)
    raise RefusedError("batch dispatch: its parts were taken by other orders meanwhile")


async def _dispatch_batch(
    conn: asyncpg.Connection,
    knowledge: KnowledgeBase,
    policy: SlaPolicy,
    alarm_ids: Sequence[int],
    actor: str,
    now: datetime,
) -> BatchResult:
    jobs = [await _job(conn, knowledge, a) for a in alarm_ids]
    parts = {p.part_no: p for job in jobs for p in job.need.parts}
    snapshot = await fleet_snapshot(conn, list(parts.values()), now)
    assignment = assign([job.need for job in jobs], snapshot, now=now)
    # One order per engineer in a batch; locked in sorted order, so batches cannot deadlock.
    for engineer_id in sorted(c.candidate.engineer_id for c in assignment.choices if c.candidate):
        await resources.claim_capacity(conn, engineer_id)
    orders: list[StoredOrder] = []
    unassigned: list[tuple[int, str]] = []
    for job, choice in zip(jobs, assignment.choices, strict=True):
        if choice.candidate is None:
            assert job.alarm is not None
            unassigned.append((job.alarm.alarm_id, choice.explanation))
            continue
        plan = _plan(choice.candidate, choice.explanation)
        orders.append(
            await _open_order(
                conn, policy, job, choice.candidate, plan, actor=actor, note="", now=now
            )
        )
    return BatchResult(
        tuple(orders), tuple(unassigned), str(assignment.method), assignment.total_delay_min
    )


def _choose(ranking: Ranking, engineer_id: str | None) -> Candidate:
    """The fastest candidate; with `engineer_id`, the ranking was of that engineer alone."""
    best = ranking.best
    if best is not None and engineer_id in (None, best.engineer_id):
        return best
    if engineer_id is None:
        raise RefusedError(f"nobody can serve the order: {ranking.explain()}")
    why = [r.text for r in ranking.rejected_examples if r.engineer_id == engineer_id]
    because = why[0] if why else ranking.note or "no known position to route from"
    raise RefusedError(f"{engineer_id} cannot serve the order: {because}")


async def act(
    pool: asyncpg.Pool,
    policy: SlaPolicy,
    order_id: int,
    command: Command,
    *,
    actor: str,
    assigned_to: str | None = None,
    now: datetime | None = None,
) -> StoredOrder:
    """Apply a lifecycle command to an order and store the result with its stock and timers.

    Args:
        pool: The database pool.
        policy: The service levels, for the timers the command starts.
        order_id: The order.
        command: What to do. A `Transfer` is re-planned for the new engineer.
        actor: Who does it (the caller), recorded in the audit trail.
        assigned_to: An engineer who may act only on an order assigned to them; checked on the
            locked row, so an order transferred away meanwhile is refused.
        now: The current time (aware); the clock by default.

    Raises:
        NotFoundError: No such order, or it is not assigned to `assigned_to`; for a transfer, no
            such engineer or warehouse.
        ConflictError: The command is not allowed in the order's state, stock is short, or the
            new engineer cannot serve the order (skills, shift, capacity, parts).
        InvalidRequestError: Parts used that the engineer's van does not hold.
    """
    now = now or datetime.now(UTC)
    async with acquire(pool) as conn, conn.transaction():
        stored = await order_store.load(conn, order_id, lock=True)
        if assigned_to is not None and stored.order.engineer_id != assigned_to:
            raise NotFoundError("order", str(order_id))
        order, event = _apply(stored, command, actor, now)
        plan: dict[str, Any] | None = None
        eta: datetime | None = None
        if isinstance(command, Transfer):
            command, plan, eta = await _replan(conn, stored, command, now)
            order, event = _apply(stored, command, actor, now)
        await order_store.save(conn, stored, order, event, plan=plan, eta=eta)
        await order_store.schedule(conn, timers_for(event, policy))
        return await order_store.load(conn, order_id)


def _apply(
    stored: StoredOrder, command: Command, actor: str, now: datetime
) -> tuple[Order, AuditEvent]:
    try:
        return apply(stored.order, command, actor=actor, now=now)
    except TransitionError as exc:
        raise RefusedError(str(exc)) from exc


async def _replan(
    conn: asyncpg.Connection, stored: StoredOrder, command: Transfer, now: datetime
) -> tuple[Transfer, dict[str, Any], datetime]:
    """Match the order to the transfer's engineer alone, as a dispatch would, and claim their
    capacity: the transfer that follows, its new plan and its ETA.
    """
    order = stored.order
    need = OrderNeed(
        str(stored.order_id), GeoPoint(stored.site_lat, stored.site_lon), order.parts,
        frozenset(stored.skills), order.severity,
    )  # fmt: skip
    released = (
        [StockMovement(StockAction.RELEASE, p.part_no, p.quantity, order.source)
         for p in order.reserved]
        if order.source is not None
        else []
    )  # fmt: skip
    snapshot = await fleet_snapshot(
        conn, order.parts, now, engineer_id=command.to_engineer_id,
        warehouse_id=command.pickup_warehouse_id, released=released,
    )  # fmt: skip
    ranking = rank(need, snapshot, now=now, limit=1)
    chosen = _choose(ranking, command.to_engineer_id)
    await resources.claim_capacity(conn, chosen.engineer_id)
    resolved = Transfer(chosen.engineer_id, chosen.pickup_warehouse_id, command.reason)
    return resolved, _plan(chosen, ranking.explain()), now + timedelta(minutes=chosen.eta_min)


def order_visible(order: StoredOrder, role: str, subject_id: str) -> bool:
    """Whether a caller may see an order: staff and the monitoring desk all, an engineer
    theirs, a customer its own.
    """
    if role in ("admin", "expert", "monitor"):
        return True
    if role == "engineer":
        return order.order.engineer_id == subject_id
    return order.customer_id == subject_id


def require_found(found: bool, order_id: int) -> None:
    """404 for an order the caller may not see, so ids of others' orders do not leak.

    Raises:
        NotFoundError: `found` is False.
    """
    if not found:
        raise NotFoundError("order", str(order_id))
