"""The service order's lifecycle: a pure state machine with an audit trail.

This module owns every state an order can be in, the commands that move it, which command is
allowed from which state (`ALLOWED`, data), and what each transition does to the order and to
stock. `apply(order, command, actor=..., now=...)` returns the new order and one `AuditEvent`
(who, when, from, to, details, stock movements); everything that changes an order lives here.

    created --dispatch--> dispatched --accept--> accepted --start_travel--> en_route
        --arrive--> on_site --complete--> completed --close--> closed
    transfer: dispatched | accepted | en_route --> dispatched (another engineer)
    cancel:   any state before completed --> cancelled
    contact_customer, record_survey: recorded, the state stays

Stock: dispatching reserves the order's parts at their source (the engineer's van, or the pickup
warehouse); a transfer releases them there and reserves at the new source; a cancellation
releases them; completion consumes what was used (first from the reservation, anything beyond it
from the engineer's van) and releases the rest. The events carry these movements; the store
applies them under row locks in the same transaction as the order's new version.

It must never touch a database, the clock (`now` is passed in) or the network, nor authorise:
whether an actor may issue a command (the assigned engineer, an ECC expert) is the API's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import ClassVar, Final

from diagnosis.events import Severity
from dispatch.errors import TransitionError
from dispatch.needs import PartNeed
from dispatch.ranking import Candidate


class OrderState(StrEnum):
    """Where an order stands."""

    CREATED = "created"
    DISPATCHED = "dispatched"
    ACCEPTED = "accepted"
    EN_ROUTE = "en_route"
    ON_SITE = "on_site"
    COMPLETED = "completed"
    CLOSED = "closed"
    CANCELLED = "cancelled"


_LIFECYCLE: Final = (
    OrderState.CREATED,
    OrderState.DISPATCHED,
    OrderState.ACCEPTED,
    OrderState.EN_ROUTE,
    OrderState.ON_SITE,
    OrderState.COMPLETED,
    OrderState.CLOSED,
)
"""The forward path; a transfer steps back along it and forgets the later steps."""

_OPEN: Final = frozenset(_LIFECYCLE[:5])
_ASSIGNED: Final = frozenset(_LIFECYCLE[1:5])


class SourceKind(StrEnum):
    """Where reserved parts are held."""

    VAN = "van"
    WAREHOUSE = "warehouse"


@dataclass(frozen=True, slots=True)
class StockSource:
    """A van (by engineer id) or a warehouse (by warehouse id)."""

    kind: SourceKind
    holder_id: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.holder_id}"


class StockAction(StrEnum):
    """What happens to units of a part."""

    RESERVE = "reserve"
    RELEASE = "release"
    CONSUME = "consume"


@dataclass(frozen=True, slots=True)
class StockMovement:
    """Units of a part reserved, released or consumed at a source."""

    action: StockAction
    part_no: str
    quantity: int
    source: StockSource


@dataclass(frozen=True, slots=True)
class Order:
    """A service order as the state machine sees it.

    Attributes:
        order_id: The order.
        severity: Severity of the alarm it serves (sets the arrival deadline).
        parts: Parts the job needs (from the diagnosis).
        state: Where it stands.
        created_at: When it was created.
        updated_at: Time of its last event; later events may not be earlier.
        version: Number of events so far, the creation being 1 (for optimistic locking).
        engineer_id: The assigned engineer, None before dispatch.
        source: Where its reserved parts are held, None when nothing is reserved.
        reserved: Parts reserved at `source`.
        consumed: Parts used on completion.
        entered: When each state on the current path was last entered.
        customer_contacted_at: Last time the customer was contacted.
        survey_recorded_at: When the satisfaction survey was recorded.
    """

    order_id: str
    severity: Severity
    parts: tuple[PartNeed, ...]
    state: OrderState
    created_at: datetime
    updated_at: datetime
    version: int = 1
    engineer_id: str | None = None
    source: StockSource | None = None
    reserved: tuple[PartNeed, ...] = ()
    consumed: tuple[PartNeed, ...] = ()
    entered: Mapping[OrderState, datetime] = field(default_factory=dict)
    customer_contacted_at: datetime | None = None
    survey_recorded_at: datetime | None = None

    def entered_at(self, state: OrderState) -> datetime | None:
        """When the order last entered a state on its current path, None if it has not."""
        return self.entered.get(state)


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One transition of one order: the audit trail is the list of these.

    Attributes:
        order_id: The order.
        version: The order's version after this event (1 for its creation).
        command: The command's name (`create`, `dispatch`, `transfer`, ...).
        actor: Who issued it (`engineer:E-17`, `ecc:alice`, `system:sla`).
        at: When.
        from_state: The state before, None for the creation.
        to_state: The state after (the same for a contact or survey record).
        severity: The order's severity, so timers can be derived from the event alone.
        details: The command's figures as text (engineer, warehouse, reason, note).
        stock: Stock movements the store applies with this event.
    """

    order_id: str
    version: int
    command: str
    actor: str
    at: datetime
    from_state: OrderState | None
    to_state: OrderState
    severity: Severity
    details: Mapping[str, str] = field(default_factory=dict)
    stock: tuple[StockMovement, ...] = ()


@dataclass(frozen=True, slots=True)
class _Effect:
    order: Order
    details: Mapping[str, str]
    stock: tuple[StockMovement, ...] = ()


class Command:
    """Base of the commands; each names itself and knows its effect on an order."""

    __slots__ = ()
    name: ClassVar[str]

    def _effect(self, order: Order, now: datetime) -> _Effect:
        """The command's own changes to the order (state, times and version are `apply`'s)."""
        return _Effect(order, {})


@dataclass(frozen=True, slots=True)
class Dispatch(Command):
    """Assign an engineer and reserve the parts at their source.

    Attributes:
        engineer_id: The engineer.
        pickup_warehouse_id: Where the engineer collects the parts, None from the van.
        note: Why this engineer (matching's explanation).
    """

    name: ClassVar[str] = "dispatch"
    engineer_id: str
    pickup_warehouse_id: str | None = None
    note: str = ""

    @classmethod
    def from_candidate(cls, candidate: Candidate) -> Dispatch:
        """The dispatch that follows matching's choice."""
        return cls(candidate.engineer_id, candidate.pickup_warehouse_id, candidate.explanation)

    def _effect(self, order: Order, now: datetime) -> _Effect:
        source = _source(self.engineer_id, self.pickup_warehouse_id)
        new = replace(order, engineer_id=self.engineer_id, source=source, reserved=order.parts)
        details = {"engineer_id": self.engineer_id, "source": str(source), "note": self.note}
        return _Effect(new, details, _movements(StockAction.RESERVE, order.parts, source))


@dataclass(frozen=True, slots=True)
class Accept(Command):
    """The engineer accepts the order."""

    name: ClassVar[str] = "accept"


@dataclass(frozen=True, slots=True)
class StartTravel(Command):
    """The engineer sets off (to the pickup warehouse or the site)."""

    name: ClassVar[str] = "start_travel"


@dataclass(frozen=True, slots=True)
class Arrive(Command):
    """The engineer is at the site."""

    name: ClassVar[str] = "arrive"


@dataclass(frozen=True, slots=True)
class Complete(Command):
    """The job is done; the parts used are consumed, the rest of the reservation released.

    Attributes:
        parts_used: What went into the machine (each part number once).
        note: The engineer's report.
    """

    name: ClassVar[str] = "complete"
    parts_used: tuple[PartNeed, ...] = ()
    note: str = ""

    def _effect(self, order: Order, now: datetime) -> _Effect:
        used = {p.part_no: p.quantity for p in self.parts_used}
        if len(used) != len(self.parts_used):
            raise _refuse(order, self, "a part number appears twice in parts_used")
        van = StockSource(SourceKind.VAN, order.engineer_id or "")
        stock: list[StockMovement] = []
        for part in order.reserved:
            want = used.pop(part.part_no, 0)
            taken = min(want, part.quantity)
            stock += _move(StockAction.CONSUME, part.part_no, taken, order.source)
            stock += _move(StockAction.RELEASE, part.part_no, part.quantity - taken, order.source)
            # Beyond the reservation, parts come from the engineer's own van stock.
            stock += _move(StockAction.CONSUME, part.part_no, want - taken, van)
        for part_no, quantity in used.items():
            stock += _move(StockAction.CONSUME, part_no, quantity, van)
        new = replace(order, consumed=self.parts_used, reserved=(), source=None)
        details = {"parts_used": ", ".join(map(str, self.parts_used)), "note": self.note}
        return _Effect(new, details, tuple(stock))


@dataclass(frozen=True, slots=True)
class Close(Command):
    """The back office closes a completed order.

    Attributes:
        note: Why, or what was checked.
    """

    name: ClassVar[str] = "close"
    note: str = ""

    def _effect(self, order: Order, now: datetime) -> _Effect:
        return _Effect(order, {"note": self.note})


@dataclass(frozen=True, slots=True)
class Transfer(Command):
    """Give the order to another engineer; the reservation moves with it.

    Attributes:
        to_engineer_id: The new engineer.
        pickup_warehouse_id: Where the new engineer collects the parts, None from the van.
        reason: Why (declined, sick, a better match).
    """

    name: ClassVar[str] = "transfer"
    to_engineer_id: str
    pickup_warehouse_id: str | None = None
    reason: str = ""

    def _effect(self, order: Order, now: datetime) -> _Effect:
        if self.to_engineer_id == order.engineer_id:
            raise _refuse(order, self, f"already assigned to {self.to_engineer_id}")
        source = _source(self.to_engineer_id, self.pickup_warehouse_id)
        stock = _movements(StockAction.RELEASE, order.reserved, order.source)
        stock += _movements(StockAction.RESERVE, order.parts, source)
        new = replace(order, engineer_id=self.to_engineer_id, source=source, reserved=order.parts)
        details = {
            "from_engineer_id": order.engineer_id or "",
            "engineer_id": self.to_engineer_id,
            "source": str(source),
            "reason": self.reason,
        }
        return _Effect(new, details, stock)


@dataclass(frozen=True, slots=True)
class Cancel(Command):
    """Cancel the order; its reservation is released.

    Attributes:
        reason: Why (fixed remotely, duplicate, customer withdrew).
    """

    name: ClassVar[str] = "cancel"
    reason: str

    def _effect(self, order: Order, now: datetime) -> _Effect:
        stock = _movements(StockAction.RELEASE, order.reserved, order.source)
        new = replace(order, reserved=(), source=None)
        return _Effect(new, {"reason": self.reason}, stock)


@dataclass(frozen=True, slots=True)
class ContactCustomer(Command):
    """Record that the customer was contacted (the callback check looks for it).

    Attributes:
        note: What was agreed.
    """

    name: ClassVar[str] = "contact_customer"
    note: str = ""

    def _effect(self, order: Order, now: datetime) -> _Effect:
        return _Effect(replace(order, customer_contacted_at=now), {"note": self.note})


@dataclass(frozen=True, slots=True)
class RecordSurvey(Command):
    """Record that the satisfaction survey was done.

    Attributes:
        note: Its outcome, in words (scores go to the satisfaction store).
    """

    name: ClassVar[str] = "record_survey"
    note: str = ""

    def _effect(self, order: Order, now: datetime) -> _Effect:
        return _Effect(replace(order, survey_recorded_at=now), {"note": self.note})


_NO_CHANGE: Final = None

ALLOWED: Final[Mapping[str, tuple[frozenset[OrderState], OrderState | None]]] = {
    "dispatch": (frozenset({OrderState.CREATED}), OrderState.DISPATCHED),
    "accept": (frozenset({OrderState.DISPATCHED}), OrderState.ACCEPTED),
    "start_travel": (frozenset({OrderState.ACCEPTED}), OrderState.EN_ROUTE),
    "arrive": (frozenset({OrderState.EN_ROUTE}), OrderState.ON_SITE),
    "complete": (frozenset({OrderState.ON_SITE}), OrderState.COMPLETED),
    "close": (frozenset({OrderState.COMPLETED}), OrderState.CLOSED),
    "transfer": (
        frozenset({OrderState.DISPATCHED, OrderState.ACCEPTED, OrderState.EN_ROUTE}),
        OrderState.DISPATCHED,
    ),
    "cancel": (_OPEN, OrderState.CANCELLED),
    "contact_customer": (_ASSIGNED, _NO_CHANGE),
    "record_survey": (frozenset({OrderState.COMPLETED, OrderState.CLOSED}), _NO_CHANGE),
}
"""Command name -> (states it is allowed from, state it leads to; None: the state stays)."""


def allowed_commands(state: OrderState) -> frozenset[str]:
    """The names of the commands an order in `state` accepts."""
    return frozenset(name for name, (sources, _) in ALLOWED.items() if state in sources)


def create_order(
    order_id: str,
    severity: Severity,
    parts: tuple[PartNeed, ...],
    *,
    actor: str,
    now: datetime,
) -> tuple[Order, AuditEvent]:
    """A new order and its creation event.

    Raises:
        TransitionError: `now` is naive.
    """
    if now.tzinfo is None:
        raise TransitionError(order_id, "none", "create", "naive time; give an aware one")
    order = Order(
        order_id=order_id,
        severity=severity,
        parts=parts,
        state=OrderState.CREATED,
        created_at=now,
        updated_at=now,
        entered={OrderState.CREATED: now},
    )
    details = {"severity": str(severity), "parts": ", ".join(map(str, parts))}
    event = AuditEvent(
        order_id, 1, "create", actor, now, None, OrderState.CREATED, severity, details
    )
    return order, event


def apply(order: Order, command: Command, *, actor: str, now: datetime) -> tuple[Order, AuditEvent]:
    """Apply a command to an order.

    Args:
        order: The order as it stands.
        command: What to do.
        actor: Who does it, recorded in the event.
        now: When (aware), not before the order's last event.

    Returns:
        The new order (version + 1) and the event that records the transition.

    Raises:
        TransitionError: The command is not allowed from the order's state, `now` is naive or
            earlier than the last event, or the command contradicts the order (a transfer to
            the engineer already assigned).
    """
    sources, target = ALLOWED[command.name]
    if order.state not in sources:
        raise _refuse(order, command, f"not allowed from {order.state}")
    if now.tzinfo is None:
        raise _refuse(order, command, "naive time; give an aware one")
    if now < order.updated_at:
        raise _refuse(order, command, f"time {now} is before the last event {order.updated_at}")
    effect = command._effect(order, now)
    new = effect.order
    to_state = target if target is not None else order.state
    if target is not None:
        new = replace(new, state=target, entered=_entered(order.entered, target, now))
    new = replace(new, updated_at=now, version=order.version + 1)
    event = AuditEvent(
        order_id=order.order_id,
        version=new.version,
        command=command.name,
        actor=actor,
        at=now,
        from_state=order.state,
        to_state=to_state,
        severity=order.severity,
        details={k: v for k, v in effect.details.items() if v},
        stock=effect.stock,
    )
    return new, event


def _entered(
    entered: Mapping[OrderState, datetime], state: OrderState, now: datetime
) -> dict[OrderState, datetime]:
    if state in _LIFECYCLE:
        later = set(_LIFECYCLE[_LIFECYCLE.index(state) :])
        kept = {s: t for s, t in entered.items() if s not in later}
    else:
        kept = dict(entered)
    kept[state] = now
    return kept


def _source(engineer_id: str, warehouse_id: str | None) -> StockSource:
    if warehouse_id is None:
        return StockSource(SourceKind.VAN, engineer_id)
    return StockSource(SourceKind.WAREHOUSE, warehouse_id)


def _movements(
    action: StockAction, parts: tuple[PartNeed, ...], source: StockSource | None
) -> tuple[StockMovement, ...]:
    if source is None:
        return ()
    return tuple(StockMovement(action, p.part_no, p.quantity, source) for p in parts)


def _move(
    action: StockAction, part_no: str, quantity: int, source: StockSource | None
) -> list[StockMovement]:
    if source is None or quantity <= 0:
        return []
    return [StockMovement(action, part_no, quantity, source)]


def _refuse(order: Order, command: Command, reason: str) -> TransitionError:
    return TransitionError(order.order_id, str(order.state), command.name, reason)
