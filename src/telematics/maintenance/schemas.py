"""HTTP bodies of the maintenance routes, and the checks every plan passes (API and TOML alike).

A plan is checked here whichever way it comes: `PUT /v1/maintenance/plans/{key}` and the shipped
TOML (`maintenance.shipped`) both go through `PlanIn`, so a shipped plan that would be refused
over the API fails at start, not at a customer's machine.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, Field, model_validator

from telematics.api.schemas import ID_PATTERN, BodyIn, Instant
from telematics.maintenance import plan
from telematics.maintenance.plan import PartLine, PlanItem
from telematics.maintenance.schedule import Status

ItemId = Annotated[str, Field(pattern=plan.ITEM_PATTERN, examples=["engine_oil"])]
Skill = Annotated[str, Field(pattern=plan.SKILL_PATTERN, examples=["engine_mechanical"])]


def _printable(value: str) -> str:
    if not value.isprintable() or value != value.strip():
        raise ValueError("must be printable text without spaces at either end")
    return value


Name = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_printable)]


class PartIn(BodyIn):
    """A part and how many of it."""

    part_no: str = Field(pattern=ID_PATTERN, examples=["OF-2010"])
    quantity: int = Field(default=1, ge=1, le=1000)

    def value(self) -> PartLine:
        """The plan's value."""
        return PartLine(self.part_no, self.quantity)


def _unique_parts(parts: list[PartIn]) -> list[PartIn]:
    numbers = [p.part_no for p in parts]
    if len(set(numbers)) != len(numbers):
        raise ValueError("a part number appears twice")
    return parts


Parts = Annotated[list[PartIn], Field(max_length=plan.MAX_PARTS), AfterValidator(_unique_parts)]


class PlanItemIn(BodyIn):
    """One plan item: due every `every_h` engine hours and/or `every_days` days, whichever first."""

    item: ItemId
    name: Name
    every_h: float | None = Field(default=None, gt=0, le=plan.MAX_EVERY_H)
    every_days: int | None = Field(default=None, ge=1, le=plan.MAX_EVERY_DAYS)
    first_at_h: float | None = Field(
        default=None,
        gt=0,
        le=plan.MAX_EVERY_H,
        description="Engine hours of the first service (before any completion); default every_h",
    )
    parts: Parts = Field(default_factory=list)
    skills: list[Skill] = Field(default_factory=list, max_length=plan.MAX_SKILLS)

    @model_validator(mode="after")
    def _has_an_interval(self) -> PlanItemIn:
        if self.every_h is None and self.every_days is None:
            raise ValueError("an item needs every_h, every_days or both")
        if self.first_at_h is not None and self.every_h is None:
            raise ValueError("first_at_h needs every_h (the hours interval after it)")
        return self

    def value(self) -> PlanItem:
        """The plan's value."""
        return PlanItem(
            item=self.item,
            name=self.name,
            every_h=self.every_h,
            every_days=self.every_days,
            first_at_h=self.first_at_h,
            parts=tuple(p.value() for p in self.parts),
            skills=tuple(sorted(set(self.skills))),
        )


class PlanIn(BodyIn):
    """A class's or a model's plan. A model's items override its class's by id."""

    items: list[PlanItemIn] = Field(max_length=plan.MAX_ITEMS)

    @model_validator(mode="after")
    def _unique_items(self) -> PlanIn:
        ids = [i.item for i in self.items]
        if len(set(ids)) != len(ids):
            raise ValueError("an item id appears twice in the plan")
        return self

    def value(self) -> tuple[PlanItem, ...]:
        """The plan's items."""
        return tuple(i.value() for i in self.items)


class PartOut(BaseModel):
    """A part and how many of it."""

    part_no: str
    quantity: int


class PlanItemOut(BaseModel):
    """One plan item."""

    item: str
    name: str
    every_h: float | None
    every_days: int | None
    first_at_h: float | None
    parts: list[PartOut]
    skills: list[str]

    @classmethod
    def of(cls, i: PlanItem) -> PlanItemOut:
        """From the plan's value."""
        return cls.model_validate(i.as_json())


class PlanOut(BaseModel):
    """The plan written for one class or model, and where it comes from."""

    key: str
    scope: str = Field(description="class or model")
    source: str = Field(description="stored (edited over the API), shipped, or none")
    items: list[PlanItemOut]
    warnings: list[str] = Field(
        default_factory=list, description="Parts of the plan missing from the parts catalogue"
    )


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("a time with a UTC offset")
    return value.astimezone(UTC)


class DoneIn(BodyIn):
    """A completed service of a plan item. The same (machine, item, done_at) is recorded once."""

    engine_hours: float = Field(ge=0, le=1_000_000, description="The counter at the service")
    done_at: Annotated[Instant, AfterValidator(_aware)] = Field(strict=False)
    parts_used: Parts = Field(default_factory=list)
    notes: str = Field(default="", max_length=4000)


class LastDoneOut(BaseModel):
    """The completion the item's current cycle counts from."""

    done_id: int
    engine_hours: float
    done_at: datetime
    done_by: str
    parts_used: list[PartOut]
    notes: str


class DoneOut(BaseModel):
    """A recorded completion, and whether this request recorded it (false: it was already)."""

    machine_id: str
    item: str
    created: bool
    done: LastDoneOut


class MaintenanceItemOut(BaseModel):
    """One plan item of one machine: its due point, status and forecast."""

    item: str
    name: str
    every_h: float | None
    every_days: int | None
    last_done: LastDoneOut | None
    due_at_h: float | None
    due_date: date | None
    remaining_h: float | None
    remaining_days: int | None
    status: Status
    forecast_due_date: date | None
    open_order_id: int | None = Field(description="The open planned-service order, if any")


class MachineMaintenanceOut(BaseModel):
    """A machine's maintenance: its counter, usage rate and every plan item."""

    machine_id: str
    machine_class: str
    model: str
    engine_hours: float | None = Field(description="The newest reading's engine hours")
    engine_hours_at: datetime | None
    usage_h_per_day: float | None = Field(description="Robust usage rate (docs/maintenance.md)")
    items: list[MaintenanceItemOut]


class OrderIn(BodyIn):
    """A planned service order for an item: the suggested engineer unless one is chosen."""

    engineer_id: str | None = Field(default=None, pattern=ID_PATTERN)
    note: str = Field(default="", max_length=4000)


class DueItemOut(BaseModel):
    """A plan item across the fleet, as the maintenance job last evaluated it."""

    machine_id: str
    customer_id: str
    machine_class: str
    item: str
    name: str
    status: Status
    engine_hours: float | None
    due_at_h: float | None
    remaining_h: float | None
    due_date: date | None
    forecast_due_date: date | None
    usage_h_per_day: float | None
    computed_at: datetime


class DuePage(BaseModel):
    """Items due soonest first (by forecast date); `next_after` continues the list."""

    items: list[DueItemOut]
    next_after: str | None
