"""Needs: what a service order asks of the engineer who takes it.

This module owns the values that describe one order to matching: its parts (`PartNeed`, a part
number and a quantity), its site, the skills it needs and its severity (`OrderNeed`). They check
themselves on construction (a quantity below 1, a part number given twice) and raise
`MatchingInputError`; the order state machine reuses `PartNeed` for the parts it reserves.

They are plain frozen values: this module must never look at the fleet, stock or the clock, and
never import `telematics`.
"""

from __future__ import annotations

from dataclasses import dataclass

from diagnosis.events import Severity
from dispatch.errors import MatchingInputError
from dispatch.geo import GeoPoint


@dataclass(frozen=True, slots=True)
class PartNeed:
    """A part number and how many of it.

    Attributes:
        part_no: The part number, as in the knowledge base (`OF-2010`).
        quantity: How many, at least 1.
    """

    part_no: str
    quantity: int = 1

    def __post_init__(self) -> None:
        if self.quantity < 1:
            raise MatchingInputError(f"part {self.part_no}", f"quantity {self.quantity} < 1")

    def __str__(self) -> str:
        return f"{self.part_no} x{self.quantity}"


@dataclass(frozen=True, slots=True)
class OrderNeed:
    """What an order needs from an engineer.

    Attributes:
        order_id: The order.
        site: Where the machine stands.
        parts: Parts to bring, each part number once.
        skills: Skills the job needs; an engineer must have all of them.
        severity: The alarm's severity; the greedy baseline serves the worst first.
    """

    order_id: str
    site: GeoPoint
    parts: tuple[PartNeed, ...] = ()
    skills: frozenset[str] = frozenset()
    severity: Severity = Severity.MAJOR

    def __post_init__(self) -> None:
        numbers = [p.part_no for p in self.parts]
        if len(set(numbers)) != len(numbers):
            raise MatchingInputError(f"order {self.order_id}", "a part number appears twice")


Site = GeoPoint
"""An order's site is a position."""
