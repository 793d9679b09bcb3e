"""Maintenance plan items as values, and how a model's override applies to its class's plan.

A plan is a tuple of items. An item is due by engine hours (`every_h`), by the calendar
(`every_days`) or both, whichever comes first; `first_at_h` is the first service (the running-in
service, e.g. 50 h after delivery) before any completion is recorded. Pure: no I/O library, no
SQL; validation of what clients send is `maintenance.schemas`' job, these values are trusted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

ITEM_PATTERN: Final = r"^[a-z0-9_]{1,40}$"
"""Plan item ids (`engine_oil`, `hydraulic_oil`)."""
SKILL_PATTERN: Final = r"^[a-z0-9_]{1,40}$"
MAX_ITEMS: Final = 100
MAX_PARTS: Final = 50
MAX_SKILLS: Final = 20
MAX_EVERY_H: Final = 100_000.0
MAX_EVERY_DAYS: Final = 36_500
DEFAULT_PLAN: Final = "default"
"""The plan of a class that has none of its own."""


@dataclass(frozen=True, slots=True)
class PartLine:
    """A part and how many of it."""

    part_no: str
    quantity: int


@dataclass(frozen=True, slots=True)
class PlanItem:
    """One item of a maintenance plan.

    Attributes:
        item: Its id, unique in the plan (`engine_oil`).
        name: What people call it ("Engine oil and filter").
        every_h: Interval in engine hours, or None.
        every_days: Interval in calendar days, or None (at least one of the two is set).
        first_at_h: Engine hours of the first service, before any completion; None: `every_h`.
        parts: Parts a service uses.
        skills: Skills the engineer needs.
    """

    item: str
    name: str
    every_h: float | None
    every_days: int | None
    first_at_h: float | None
    parts: tuple[PartLine, ...] = ()
    skills: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        """The item as JSON-ready data (the shape of the API and of the stored plans)."""
        return {
            "item": self.item,
            "name": self.name,
            "every_h": self.every_h,
            "every_days": self.every_days,
            "first_at_h": self.first_at_h,
            "parts": [{"part_no": p.part_no, "quantity": p.quantity} for p in self.parts],
            "skills": list(self.skills),
        }


def item_of(data: Mapping[str, Any]) -> PlanItem:
    """An item from `as_json`'s shape (stored plans, already validated when written)."""
    return PlanItem(
        item=str(data["item"]),
        name=str(data["name"]),
        every_h=None if data.get("every_h") is None else float(data["every_h"]),
        every_days=None if data.get("every_days") is None else int(data["every_days"]),
        first_at_h=None if data.get("first_at_h") is None else float(data["first_at_h"]),
        parts=tuple(PartLine(str(p["part_no"]), int(p["quantity"])) for p in data["parts"]),
        skills=tuple(str(s) for s in data["skills"]),
    )


def with_override(
    class_items: Iterable[PlanItem], model_items: Iterable[PlanItem] | None
) -> tuple[PlanItem, ...]:
    """A model's plan: its class's items, each replaced by the model's item of the same id, then
    the model's other items. Without an override, the class's items as they are.
    """
    base = list(class_items)
    if model_items is None:
        return tuple(base)
    override = {i.item: i for i in model_items}
    merged = [override.pop(i.item, i) for i in base]
    return (*merged, *override.values())
