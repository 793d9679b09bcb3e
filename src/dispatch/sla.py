"""Service-level timers: which exist for an order, when they fire, and what a firing means.

This module owns the SLA policy as data (`SlaPolicy`: arrival deadline by severity, callback
delay, escalation and survey delays), the derivation of timers from audit events
(`timers_for`), and the verdict on a timer when it fires (`judge`):

* `callback_check`: 15 minutes after each dispatch (a transfer is a new dispatch): was the
  customer contacted since? Satisfied also when the engineer is already on site.
* `arrival_deadline`: from creation, by severity (critical 4 h, major 24 h, minor 72 h; info has
  none): was the engineer on site by then?
* `completion_escalation`: from creation, 48 h: was the order completed by then? A breach means
  escalate.
* `survey`: 24 h after completion: the satisfaction call is due, unless already recorded.

A verdict is `breach`, `satisfied`, `moot` (the order was cancelled before the timer fired, or
a later dispatch superseded the one the timer was about), or `due` (for the survey, an action
timer: perform it now). Timers are judged on the order's recorded times, not on `now`, so a
timer runner that was down judges a late firing exactly as a punctual one.

It must never store timers, sleep, or read the clock: the timer store (durable, claimed with
`FOR UPDATE SKIP LOCKED`) persists `TimerSpec`s under their `key` and calls `judge` when they
come due.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final

from diagnosis.events import Severity
from dispatch.errors import SlaError
from dispatch.orders import AuditEvent, Complete, Dispatch, Order, OrderState, Transfer


class TimerKind(StrEnum):
    """What a timer checks."""

    CALLBACK_CHECK = "callback_check"
    ARRIVAL_DEADLINE = "arrival_deadline"
    COMPLETION_ESCALATION = "completion_escalation"
    SURVEY = "survey"


class Verdict(StrEnum):
    """What a fired timer found."""

    BREACH = "breach"
    SATISFIED = "satisfied"
    MOOT = "moot"
    DUE = "due"


ARRIVAL_WITHIN: Final[Mapping[Severity, timedelta]] = {
    Severity.CRITICAL: timedelta(hours=4),
    Severity.MAJOR: timedelta(hours=24),
    Severity.MINOR: timedelta(hours=72),
}
"""Default arrival deadlines from order creation; a severity without one has no deadline."""


@dataclass(frozen=True, slots=True)
class SlaPolicy:
    """The service levels, as data.

    Attributes:
        callback_after: After a dispatch, by when the customer must have been contacted.
        arrival_within: Severity -> time from creation to arrival on site.
        complete_within: Time from creation to completion before escalation.
        survey_after: Time from completion to the satisfaction call.
    """

    callback_after: timedelta = timedelta(minutes=15)
    arrival_within: Mapping[Severity, timedelta] = field(default_factory=lambda: ARRIVAL_WITHIN)
    complete_within: timedelta = timedelta(hours=48)
    survey_after: timedelta = timedelta(hours=24)


DEFAULT_POLICY: Final = SlaPolicy()

_DISPATCHING: Final = frozenset({Dispatch.name, Transfer.name})


@dataclass(frozen=True, slots=True)
class TimerSpec:
    """A timer to persist: it fires once, at `fires_at`.

    Attributes:
        order_id: The order.
        kind: What it checks.
        anchor_at: The transition time it counts from (creation, dispatch, completion).
        fires_at: When to judge it.
    """

    order_id: str
    kind: TimerKind
    anchor_at: datetime
    fires_at: datetime

    @property
    def key(self) -> str:
        """A stable identity, so re-deriving timers from the same event stores them once."""
        return f"{self.order_id}/{self.kind}/{self.anchor_at.isoformat()}"


def timers_for(event: AuditEvent, policy: SlaPolicy = DEFAULT_POLICY) -> list[TimerSpec]:
    """The timers an order event starts.

    Creation starts the arrival deadline (if the severity has one) and the completion
    escalation; each dispatch or transfer starts a callback check; completion starts the survey.
    Other events start none (timers already running are judged moot or not when they fire).
    """
    at = event.at
    if event.from_state is None:
        timers = [
            TimerSpec(
                event.order_id, TimerKind.COMPLETION_ESCALATION, at, at + policy.complete_within
            )
        ]
        within = policy.arrival_within.get(event.severity)
        if within is not None:
            timers.insert(0, TimerSpec(event.order_id, TimerKind.ARRIVAL_DEADLINE, at, at + within))
        return timers
    if event.command in _DISPATCHING:
        return [TimerSpec(event.order_id, TimerKind.CALLBACK_CHECK, at, at + policy.callback_after)]
    if event.command == Complete.name:
        return [TimerSpec(event.order_id, TimerKind.SURVEY, at, at + policy.survey_after)]
    return []


def judge(timer: TimerSpec, order: Order, now: datetime) -> Verdict:
    """The verdict of a timer firing at `now` on the order as it now stands.

    Args:
        timer: The timer that fired.
        order: Its order, current.
        now: The time it is judged (aware), not before `timer.fires_at`.

    Returns:
        `satisfied` when what the timer checks happened in time, `moot` when the order was
        cancelled before the timer fired or (callback check) was dispatched again since,
        `due` for a survey still to do, else `breach`.

    Raises:
        SlaError: The timer belongs to another order, or it is judged before it fires.
    """
    if timer.order_id != order.order_id:
        raise SlaError(timer.order_id, timer.kind, f"judged against order {order.order_id}")
    if now < timer.fires_at:
        raise SlaError(timer.order_id, timer.kind, f"judged at {now}, fires at {timer.fires_at}")
    if timer.kind is TimerKind.SURVEY:
        return Verdict.SATISFIED if order.survey_recorded_at is not None else Verdict.DUE
    if _met(timer, order):
        return Verdict.SATISFIED
    cancelled_at = order.entered_at(OrderState.CANCELLED)
    if cancelled_at is not None and cancelled_at <= timer.fires_at:
        return Verdict.MOOT
    if (
        timer.kind is TimerKind.CALLBACK_CHECK
        and order.entered_at(OrderState.DISPATCHED) != timer.anchor_at
    ):
        return Verdict.MOOT
    return Verdict.BREACH


def _met(timer: TimerSpec, order: Order) -> bool:
    """Whether what the timer checks happened between its anchor and its firing."""
    if timer.kind is TimerKind.ARRIVAL_DEADLINE:
        return _by(order.entered_at(OrderState.ON_SITE), timer)
    if timer.kind is TimerKind.COMPLETION_ESCALATION:
        return _by(order.entered_at(OrderState.COMPLETED), timer)
    # Callback check: the customer heard from us, or the engineer is already with them.
    if order.entered_at(OrderState.DISPATCHED) != timer.anchor_at:
        return False
    return _by(order.customer_contacted_at, timer) or _by(
        order.entered_at(OrderState.ON_SITE), timer
    )


def _by(moment: datetime | None, timer: TimerSpec) -> bool:
    return moment is not None and timer.anchor_at <= moment <= timer.fires_at
