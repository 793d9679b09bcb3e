"""When a plan item is due, how far away that is, its status and its forecast date.

Definitions (docs/maintenance.md has them with examples):

* Due point. After a completion at `h` engine hours on date `d`: `due_at_h = h + every_h`,
  `due_date = d + every_days`. Before any completion: `due_at_h = first_at_h` (or `every_h` when
  the item has no first service), `due_date = start + every_days`, where `start` is the machine's
  delivery date, else its registration date. A missing interval leaves its part None.
* `remaining_h = due_at_h - hours_now`; `remaining_days = due_date - today` (in days).
* Status, worst first: `overdue` when past the due point by more than a margin (`remaining_h <
  -margin_h` or `remaining_days < -margin_days`, margins the `overdue_fraction` of the interval:
  of `every_h` / `every_days`, or of `first_at_h` for the first service); `due` when the due
  point is reached (`remaining_h <= 0` or `remaining_days <= 0`); `due_soon` within the lead
  (`remaining_h <= lead_h` or `remaining_days <= lead_days`); else `ok`. Whichever comes first:
  hours and calendar are judged apart, and the worse of the two counts.
* Forecast. With a usage rate `r` h/day > 0, the hours part is reached on
  `today + ceil(remaining_h / r)` days (today when already reached); `forecast_due_date` is the
  earlier of that and `due_date`. Without a rate (or with r = 0) it is `due_date` alone.

Pure: dates and floats in, a value out; no I/O library.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum

from telematics.maintenance.plan import PlanItem


class Status(StrEnum):
    """How close a plan item is to its due point."""

    OK = "ok"
    DUE_SOON = "due_soon"
    DUE = "due"
    OVERDUE = "overdue"


_RANK = {Status.OK: 0, Status.DUE_SOON: 1, Status.DUE: 2, Status.OVERDUE: 3}


@dataclass(frozen=True, slots=True)
class Leads:
    """How statuses are judged.

    Attributes:
        lead_h: `due_soon` this many engine hours before the due point.
        lead_days: `due_soon` this many days before the due date.
        overdue_fraction: `overdue` past the due point by this fraction of the interval.
    """

    lead_h: float = 50.0
    lead_days: int = 14
    overdue_fraction: float = 0.1


@dataclass(frozen=True, slots=True)
class LastDone:
    """The completion an item's current cycle counts from."""

    engine_hours: float
    done_at: datetime


@dataclass(frozen=True, slots=True)
class ItemSchedule:
    """Where an item stands.

    Attributes:
        due_at_h: Engine hours it is due at, None without an hours interval.
        due_date: Calendar date it is due on, None without a calendar interval.
        remaining_h: Hours left to `due_at_h` (negative: past it); None when unknown.
        remaining_days: Days left to `due_date` (negative: past it); None when unknown.
        status: Its status.
        forecast_due_date: When it will be due, from the usage rate and the calendar.
    """

    due_at_h: float | None
    due_date: date | None
    remaining_h: float | None
    remaining_days: int | None
    status: Status
    forecast_due_date: date | None


def _judge(remaining: float | None, interval: float | None, lead: float, f: float) -> Status:
    if remaining is None:
        return Status.OK
    if interval is not None and remaining < -f * interval:
        return Status.OVERDUE
    if remaining <= 0:
        return Status.DUE
    if remaining <= lead:
        return Status.DUE_SOON
    return Status.OK


def forecast_hours_date(remaining_h: float, rate_h_per_day: float, today: date) -> date | None:
    """The day `remaining_h` more engine hours are reached at `rate_h_per_day`; None if never."""
    if remaining_h <= 0:
        return today
    if not rate_h_per_day > 0:
        return None
    days = math.ceil(remaining_h / rate_h_per_day)
    if days > (date.max - today).days:
        return None
    return today + timedelta(days=days)


def schedule(
    item: PlanItem,
    last: LastDone | None,
    *,
    start: date,
    hours_now: float | None,
    today: date,
    rate_h_per_day: float | None,
    leads: Leads,
) -> ItemSchedule:
    """Where `item` stands on `today` with the counter at `hours_now` (module docstring)."""
    if last is not None:
        due_at_h = None if item.every_h is None else last.engine_hours + item.every_h
        interval_h = item.every_h
        base_date = last.done_at.date()
    else:
        due_at_h = item.first_at_h if item.first_at_h is not None else item.every_h
        interval_h = due_at_h
        base_date = start
    due_date = None if item.every_days is None else base_date + timedelta(days=item.every_days)
    remaining_h = None if due_at_h is None or hours_now is None else due_at_h - hours_now
    remaining_days = None if due_date is None else (due_date - today).days
    f = leads.overdue_fraction
    status = max(
        _judge(remaining_h, interval_h, leads.lead_h, f),
        _judge(
            None if remaining_days is None else float(remaining_days),
            None if item.every_days is None else float(item.every_days),
            float(leads.lead_days),
            f,
        ),
        key=_RANK.__getitem__,
    )
    by_hours = (
        None
        if remaining_h is None or rate_h_per_day is None
        else forecast_hours_date(remaining_h, rate_h_per_day, today)
    )
    candidates = [d for d in (by_hours, due_date) if d is not None]
    return ItemSchedule(
        due_at_h=due_at_h,
        due_date=due_date,
        remaining_h=remaining_h,
        remaining_days=remaining_days,
        status=status,
        forecast_due_date=min(candidates) if candidates else None,
    )
