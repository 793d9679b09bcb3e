"""Service orders in PostgreSQL: the state machine's value, its audit trail, part reservations
and the SLA timers its events schedule, written together in the caller's transaction (the
timers' worker side is `store.timers`).

The order itself is `dispatch.orders.Order`, kept as a JSON document (`orders.doc`) beside
copies of the fields queries need. Every change goes through `save`, which checks the version it
read (optimistic locking on top of the row lock), appends the audit event, moves stock and
schedules the event's timers. Reserving is a conditional UPDATE per line, so two dispatches
running at once can never promise the same units: the second finds too few and fails.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from diagnosis.events import Severity
from dispatch.needs import PartNeed
from dispatch.orders import (
    AuditEvent,
    Order,
    OrderState,
    SourceKind,
    StockAction,
    StockMovement,
    StockSource,
)
from dispatch.sla import TimerSpec
from telematics.base.errors import ConflictError, InvalidRequestError, NotFoundError, RefusedError


class StockShortError(RefusedError):
    """Too few units left to reserve: another order took them first."""

    def __init__(self, part_no: str, location: str, wanted: int) -> None:
        super().__init__(f"cannot reserve {wanted} x {part_no} at {location}: too few left")
        self.part_no = part_no
        self.location = location
        self.wanted = wanted


class PartsNotHeldError(InvalidRequestError):
    """Parts were used that the location does not hold: beyond the order's own reservation,
    only units on hand and not reserved for other orders may be consumed.

    Attributes:
        part_no: The part.
        location: Where it was to come from (`van:E-17`).
        wanted: Units needed beyond the order's reservation.
    """

    def __init__(self, part_no: str, location: str, wanted: int) -> None:
        super().__init__(
            f"{location} does not hold {wanted} x {part_no} beyond what is reserved for orders"
        )
        self.part_no = part_no
        self.location = location
        self.wanted = wanted


def _parts(parts: Sequence[PartNeed]) -> list[list[object]]:
    return [[p.part_no, p.quantity] for p in parts]


def _parts_of(raw: Any) -> tuple[PartNeed, ...]:
    return tuple(PartNeed(str(no), int(q)) for no, q in raw)


def order_doc(order: Order) -> str:
    """The order as JSON for `orders.doc`."""
    return orjson.dumps(
        {
            "order_id": order.order_id,
            "severity": order.severity.value,
            "parts": _parts(order.parts),
            "state": order.state.value,
            "created_at": order.created_at.isoformat(),
            "updated_at": order.updated_at.isoformat(),
            "version": order.version,
            "engineer_id": order.engineer_id,
            "source": None
            if order.source is None
            else [order.source.kind.value, order.source.holder_id],
            "reserved": _parts(order.reserved),
            "consumed": _parts(order.consumed),
            "entered": {s.value: t.isoformat() for s, t in order.entered.items()},
            "customer_contacted_at": _iso(order.customer_contacted_at),
            "survey_recorded_at": _iso(order.survey_recorded_at),
        }
    ).decode()


def _iso(t: datetime | None) -> str | None:
    return None if t is None else t.isoformat()


def _dt(raw: str | None) -> datetime | None:
    return None if raw is None else datetime.fromisoformat(raw)


def order_from_doc(raw: str) -> Order:
    """The order from `orders.doc`."""
    d = orjson.loads(raw)
    source = d["source"]
    created, updated = _dt(d["created_at"]), _dt(d["updated_at"])
    assert created is not None
    assert updated is not None
    return Order(
        order_id=d["order_id"],
        severity=Severity(d["severity"]),
        parts=_parts_of(d["parts"]),
        state=OrderState(d["state"]),
        created_at=created,
        updated_at=updated,
        version=d["version"],
        engineer_id=d["engineer_id"],
        source=None if source is None else StockSource(SourceKind(source[0]), source[1]),
        reserved=_parts_of(d["reserved"]),
        consumed=_parts_of(d["consumed"]),
        entered={OrderState(s): datetime.fromisoformat(t) for s, t in d["entered"].items()},
        customer_contacted_at=_dt(d["customer_contacted_at"]),
        survey_recorded_at=_dt(d["survey_recorded_at"]),
    )


@dataclass(frozen=True, slots=True)
class StoredOrder:
    """An order with what the store keeps around the state machine's value."""

    order_id: int
    alarm_id: int | None
    machine_id: str
    customer_id: str
    fault: str | None
    skills: tuple[str, ...]
    site_lat: float
    site_lon: float
    plan: dict[str, Any] | None
    eta: datetime | None
    order: Order


def _stored(row: asyncpg.Record) -> StoredOrder:
    return StoredOrder(
        order_id=row["order_id"],
        alarm_id=row["alarm_id"],
        machine_id=row["machine_id"],
        customer_id=row["customer_id"],
        fault=row["fault"],
        skills=tuple(row["skills"]),
        site_lat=row["site_lat"],
        site_lon=row["site_lon"],
        plan=orjson.loads(row["plan_text"]) if row["plan_text"] else None,
        eta=row["eta"],
        order=order_from_doc(row["doc_text"]),
    )


_SELECT = "SELECT o.*, o.doc::text AS doc_text, o.plan::text AS plan_text FROM orders o"


async def next_order_id(conn: asyncpg.Connection) -> int:
    """Reserve an order id (the state machine needs it before the row exists)."""
    value = await conn.fetchval("SELECT nextval(pg_get_serial_sequence('orders', 'order_id'))")
    return int(value)


async def insert_order(
    conn: asyncpg.Connection,
    order_id: int,
    order: Order,
    event: AuditEvent,
    *,
    alarm_id: int | None,
    machine_id: str,
    customer_id: str,
    fault: str | None,
    skills: Sequence[str],
    site: tuple[float, float],
) -> None:
    """Store a new order with its creation event and timers.

    Raises:
        ConflictError: The alarm already has an open order; without an alarm, the same fault
            (planned work such as `maintenance:engine_oil`) has one on the machine.
    """
    try:
        await conn.execute(
            """
            INSERT INTO orders (order_id, alarm_id, machine_id, customer_id, state, severity,
                                fault, skills, parts, site_lat, site_lon, doc, created_at,
                                updated_at, version)
            OVERRIDING SYSTEM VALUE
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb, $10, $11, $12::jsonb, $13, $13,
                    $14)
            """,
            order_id,
            alarm_id,
            machine_id,
            customer_id,
            order.state.value,
            order.severity.value,
            fault,
            list(skills),
            orjson.dumps(_parts(order.parts)).decode(),
            site[0],
            site[1],
            order_doc(order),
            order.created_at,
            order.version,
        )
    except asyncpg.UniqueViolationError as exc:
        if alarm_id is None:
            raise ConflictError(f"open order on {machine_id} for", fault or "") from exc
        raise ConflictError("open order for alarm", str(alarm_id)) from exc
    await _append(conn, order_id, event)


async def load(conn: asyncpg.Connection, order_id: int, *, lock: bool = False) -> StoredOrder:
    """One order; with `lock`, its row stays locked until the transaction ends.

    Raises:
        NotFoundError: No such order.
    """
    row = await conn.fetchrow(
        _SELECT + " WHERE o.order_id = $1" + (" FOR UPDATE" if lock else ""), order_id
    )
    if row is None:
        raise NotFoundError("order", str(order_id))
    return _stored(row)


async def save(
    conn: asyncpg.Connection,
    before: StoredOrder,
    order: Order,
    event: AuditEvent,
    *,
    plan: dict[str, Any] | None = None,
    eta: datetime | None = None,
) -> None:
    """Write a transition: the new order, its event, its stock movements and timers.

    Raises:
        ConflictError: The order changed since it was read.
        StockShortError: A reservation found too few units.
    """
    done = await conn.execute(
        """
        UPDATE orders SET state = $3, engineer_id = $4, pickup_warehouse_id = $5, doc = $6::jsonb,
            version = $7, updated_at = $8,
            plan = COALESCE($9::jsonb, plan), eta = COALESCE($10, eta),
            dispatched_at = CASE WHEN $3 = 'dispatched' THEN $8 ELSE dispatched_at END,
            accepted_at = CASE WHEN $3 = 'accepted' THEN $8 ELSE accepted_at END,
            arrived_at = CASE WHEN $3 = 'on_site' THEN $8 ELSE arrived_at END,
            completed_at = CASE WHEN $3 = 'completed' THEN $8 ELSE completed_at END,
            closed_at = CASE WHEN $3 = 'closed' THEN $8 ELSE closed_at END
        WHERE order_id = $1 AND version = $2
        """,
        before.order_id,
        before.order.version,
        order.state.value,
        order.engineer_id,
        order.source.holder_id
        if order.source is not None and order.source.kind is SourceKind.WAREHOUSE
        else None,
        order_doc(order),
        order.version,
        order.updated_at,
        None if plan is None else orjson.dumps(plan).decode(),
        eta,
    )
    if done == "UPDATE 0":
        raise ConflictError("order version", f"{before.order_id} v{before.order.version}")
    await _move_stock(conn, before.order_id, event.stock)
    await _append(conn, before.order_id, event)


async def _append(conn: asyncpg.Connection, order_id: int, event: AuditEvent) -> None:
    await conn.execute(
        "INSERT INTO order_events (order_id, at, actor, action, from_state, to_state, detail) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb)",
        order_id,
        event.at,
        event.actor,
        event.command,
        None if event.from_state is None else event.from_state.value,
        event.to_state.value,
        orjson.dumps(
            {
                **event.details,
                "stock": [
                    [m.action.value, m.part_no, m.quantity, str(m.source)] for m in event.stock
                ],
            }
        ).decode(),
    )


async def _move_stock(
    conn: asyncpg.Connection, order_id: int, movements: Sequence[StockMovement]
) -> None:
    for m in movements:
        if m.action is StockAction.RESERVE:
            await _reserve(conn, order_id, m)
        else:
            await _release_or_consume(conn, order_id, m)


async def _reserve(conn: asyncpg.Connection, order_id: int, m: StockMovement) -> None:
    kind, holder = m.source.kind.value, m.source.holder_id
    done = await conn.execute(
        "UPDATE stock SET reserved = reserved + $4, updated_at = now() "
        "WHERE location_kind = $1 AND location_id = $2 AND part_no = $3 "
        "AND quantity - reserved >= $4",
        kind,
        holder,
        m.part_no,
        m.quantity,
    )
    if done == "UPDATE 0":
        raise StockShortError(m.part_no, str(m.source), m.quantity)
    await conn.execute(
        "INSERT INTO order_reservations VALUES ($1, $2, $3, $4, $5) "
        "ON CONFLICT (order_id, location_kind, location_id, part_no) "
        "DO UPDATE SET quantity = order_reservations.quantity + EXCLUDED.quantity",
        order_id,
        kind,
        holder,
        m.part_no,
        m.quantity,
    )


async def _release_or_consume(conn: asyncpg.Connection, order_id: int, m: StockMovement) -> None:
    """Release or consume units at a location: first from this order's own reservation there;
    units consumed beyond it must be on hand and unreserved. Other orders' reservations are
    never touched, so a completion that used more than it reserved cannot eat into them.

    Raises:
        PartsNotHeldError: More units consumed than this order reserved plus what is unreserved.
    """
    kind, holder = m.source.kind.value, m.source.holder_id
    key = (order_id, kind, holder, m.part_no)
    held = await conn.fetchval(
        "SELECT quantity FROM order_reservations WHERE order_id = $1 AND location_kind = $2 "
        "AND location_id = $3 AND part_no = $4 FOR UPDATE",
        *key,
    )
    own = min(m.quantity, held or 0)
    if m.action is StockAction.RELEASE:
        if own == 0:
            return
        consumed, beyond = 0, 0
    else:
        consumed, beyond = m.quantity, m.quantity - own
    done = await conn.execute(
        "UPDATE stock SET reserved = reserved - $4, quantity = quantity - $5, updated_at = now() "
        "WHERE location_kind = $1 AND location_id = $2 AND part_no = $3 "
        "AND reserved >= $4 AND quantity - reserved >= $6",
        kind,
        holder,
        m.part_no,
        own,
        consumed,
        beyond,
    )
    if done == "UPDATE 0":
        raise PartsNotHeldError(m.part_no, str(m.source), beyond)
    if own == 0:
        return
    if own == held:
        await conn.execute(
            "DELETE FROM order_reservations WHERE order_id = $1 AND location_kind = $2 "
            "AND location_id = $3 AND part_no = $4",
            *key,
        )
    else:
        await conn.execute(
            "UPDATE order_reservations SET quantity = quantity - $5 WHERE order_id = $1 "
            "AND location_kind = $2 AND location_id = $3 AND part_no = $4",
            *key,
            own,
        )


async def schedule(conn: asyncpg.Connection, timers: Sequence[TimerSpec]) -> None:
    """Persist timers; a timer derived twice from the same event is stored once."""
    await conn.executemany(
        "INSERT INTO sla_timers (timer_key, order_id, kind, anchor_at, due_at) "
        "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (timer_key) DO NOTHING",
        [(t.key, int(t.order_id), t.kind.value, t.anchor_at, t.fires_at) for t in timers],
    )


@dataclass(frozen=True, slots=True)
class OrderFilter:
    """Filters of the order list; None means any."""

    state: str | None = None
    engineer_id: str | None = None
    customer_id: str | None = None
    machine_id: str | None = None


async def list_orders(
    conn: asyncpg.Connection, where: OrderFilter, *, before_id: int | None, limit: int
) -> list[StoredOrder]:
    """Orders newest first, keyset-paged by id."""
    rows = await conn.fetch(
        _SELECT
        + """ WHERE ($1::text IS NULL OR o.state = $1)
              AND ($2::text IS NULL OR o.engineer_id = $2)
              AND ($3::text IS NULL OR o.customer_id = $3)
              AND ($4::text IS NULL OR o.machine_id = $4)
              AND ($5::bigint IS NULL OR o.order_id < $5)
            ORDER BY o.order_id DESC LIMIT $6""",
        where.state,
        where.engineer_id,
        where.customer_id,
        where.machine_id,
        before_id,
        limit,
    )
    return [_stored(r) for r in rows]


SERVING_STATES = ("dispatched", "accepted", "en_route", "on_site", "completed")
"""States in which the assigned engineer reads the alarm, machine and readings behind an order."""


async def engineer_serves(
    conn: asyncpg.Connection,
    engineer_id: str,
    *,
    alarm_id: int | None = None,
    machine_id: str | None = None,
) -> bool:
    """Whether an order for this alarm (or machine) is assigned to the engineer and still being
    worked: dispatched up to completed, not yet closed or cancelled.
    """
    found = await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM orders WHERE engineer_id = $1 AND state = ANY($2::text[]) "
        "AND ($3::bigint IS NULL OR alarm_id = $3) AND ($4::text IS NULL OR machine_id = $4))",
        engineer_id,
        list(SERVING_STATES),
        alarm_id,
        machine_id,
    )
    return bool(found)


@dataclass(frozen=True, slots=True)
class OrderEventRow:
    """One stored audit event."""

    event_id: int
    at: datetime
    actor: str
    action: str
    from_state: str | None
    to_state: str
    detail: dict[str, Any]


async def events_of(conn: asyncpg.Connection, order_id: int) -> list[OrderEventRow]:
    """An order's audit trail, oldest first."""
    rows = await conn.fetch(
        "SELECT event_id, at, actor, action, from_state, to_state, detail::text AS detail "
        "FROM order_events WHERE order_id = $1 ORDER BY event_id",
        order_id,
    )
    return [
        OrderEventRow(r["event_id"], r["at"], r["actor"], r["action"], r["from_state"],
                      r["to_state"], orjson.loads(r["detail"]))
        for r in rows
    ]  # fmt: skip
