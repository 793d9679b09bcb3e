"""The dispatch package's exception tree.

    DispatchError
    ├── MatchingInputError   an engineer, warehouse or order value that matching cannot use
    ├── TransitionError      a command the order's current state does not allow
    └── SlaError             a timer judged before it fires, or against another order

Each carries the fields a caller needs to act on it (ids, states, reason codes), not only text.
This module owns the tree and nothing else; the HTTP layer (in `telematics`) maps it to statuses.
"""

from __future__ import annotations


class DispatchError(Exception):
    """Base of every error this package raises on purpose."""


class MatchingInputError(DispatchError, ValueError):
    """A value given to matching is inconsistent (a duplicate id, a negative quantity, ...).

    Attributes:
        subject: What is wrong, e.g. `engineer E-17` or `order O-3`.
        reason: Why it cannot be used.
    """

    def __init__(self, subject: str, reason: str) -> None:
        super().__init__(f"{subject}: {reason}")
        self.subject = subject
        self.reason = reason


class TransitionError(DispatchError):
    """A command that the order's current state refuses.

    Attributes:
        order_id: The order.
        from_state: The state the order was in (an `OrderState` value, e.g. `completed`).
        command: The refused command's name (`accept`, `transfer`, ...).
        reason: Why, in words (`not allowed from completed`, `time goes backwards`).
    """

    def __init__(self, order_id: str, from_state: str, command: str, reason: str) -> None:
        super().__init__(f"order {order_id}: cannot {command} from {from_state}: {reason}")
        self.order_id = order_id
        self.from_state = from_state
        self.command = command
        self.reason = reason


class SlaError(DispatchError):
    """A timer judged too early or against an order it does not belong to.

    Attributes:
        order_id: The timer's order.
        kind: The timer's kind (`arrival_deadline`, ...).
        reason: Why it cannot be judged.
    """

    def __init__(self, order_id: str, kind: str, reason: str) -> None:
        super().__init__(f"timer {kind} of order {order_id}: {reason}")
        self.order_id = order_id
        self.kind = kind
        self.reason = reason
