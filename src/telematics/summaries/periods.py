"""Buckets of a summary: local days, ISO weeks or months in an IANA time zone. Pure, no I/O.

A bucket runs from local midnight to local midnight, so its length follows daylight saving
(23 or 25 hours on a switch day). Weeks start on Monday (ISO 8601); weeks and months are cut to
the requested range, so the first and last bucket may be shorter than a whole period.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

MAX_DAYS = 400
"""Longest range one request may ask for, in days."""
EARLIEST = date(2000, 1, 1)
"""No range starts before this (offsets before it include local mean times off the slot grid)."""
LATEST = date(2199, 12, 31)


class Period(StrEnum):
    """How long a bucket is."""

    DAY = "day"
    WEEK = "week"
    MONTH = "month"


class PeriodError(ValueError):
    """The range or time zone of a request cannot be answered (a 422)."""


@dataclass(frozen=True, slots=True)
class Bucket:
    """One bucket: local dates [first, after) and the UTC instants they begin and end at."""

    first: date
    after: date
    start: datetime
    end: datetime

    @property
    def days(self) -> int:
        """Local days in the bucket."""
        return (self.after - self.first).days

    @property
    def seconds(self) -> float:
        """Its length in seconds (daylight saving included)."""
        return (self.end - self.start).total_seconds()


@lru_cache(maxsize=1)
def iana_zones() -> frozenset[str]:
    """The IANA zone names (and UTC): not the zone folder's other files, such as `localtime`
    (the host's own zone) or `posixrules`, which name no place.
    """
    return (frozenset(available_timezones()) | {"UTC"}) - {"localtime", "posixrules"}


def zone(name: str) -> ZoneInfo:
    """The IANA time zone `name`.

    Raises:
        PeriodError: No such zone.
    """
    if name not in iana_zones():
        raise PeriodError(f"unknown time zone {name[:64]!r}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise PeriodError(f"unknown time zone {name!r}") from exc


def local_midnight(day: date, tz: ZoneInfo) -> datetime:
    """The UTC instant local `day` begins at."""
    return datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(UTC)


def period_start(day: date, period: Period) -> date:
    """The first day of the period `day` is in."""
    if period is Period.WEEK:
        return day - timedelta(days=day.weekday())
    if period is Period.MONTH:
        return day.replace(day=1)
    return day


def _next(day: date, period: Period) -> date:
    if period is Period.DAY:
        return day + timedelta(days=1)
    if period is Period.WEEK:
        return period_start(day, period) + timedelta(days=7)
    first = day.replace(day=1)
    return (
        first.replace(year=first.year + 1, month=1)
        if first.month == 12
        else first.replace(month=first.month + 1)
    )


def buckets(first: date, last: date, period: Period, tz: ZoneInfo) -> list[Bucket]:
    """The buckets covering local dates `first`..`last` (inclusive), cut to that range.

    Raises:
        PeriodError: `last` before `first`, a range over `MAX_DAYS`, or dates out of bounds.
    """
    if last < first:
        raise PeriodError("to must not be before from")
    if (last - first).days + 1 > MAX_DAYS:
        raise PeriodError(f"at most {MAX_DAYS} days per request")
    if first < EARLIEST or last > LATEST:
        raise PeriodError(f"dates must be within {EARLIEST}..{LATEST}")
    out: list[Bucket] = []
    day = first
    stop = last + timedelta(days=1)
    while day < stop:
        after = min(_next(day, period), stop)
        out.append(Bucket(day, after, local_midnight(day, tz), local_midnight(after, tz)))
        day = after
    return out
