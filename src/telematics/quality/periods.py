"""Calendar periods (month, quarter, year) in UTC: where a time falls, and the periods of a span.

Pure: it imports no I/O library and reads no clock.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Final

MAX_PERIODS: Final = 240
"""Longest answer of a query, in periods (20 years of months)."""


class Period(StrEnum):
    """A reporting period."""

    MONTH = "month"
    QUARTER = "quarter"
    YEAR = "year"


_MONTHS: Final = {Period.MONTH: 1, Period.QUARTER: 3, Period.YEAR: 12}


def period_start(at: datetime, period: Period) -> datetime:
    """The start (UTC midnight of its first day) of the period `at` falls in."""
    utc = at.astimezone(UTC)
    month = utc.month - (utc.month - 1) % _MONTHS[period]
    return datetime(utc.year, month, 1, tzinfo=UTC)


def next_start(start: datetime, period: Period) -> datetime:
    """The start of the period after the one starting at `start`."""
    months = start.year * 12 + start.month - 1 + _MONTHS[period]
    return datetime(months // 12, months % 12 + 1, 1, tzinfo=UTC)


def default_since(until: datetime, period: Period) -> datetime:
    """The start of a default span: the period holding the moment 365 days before `until`
    (the period of `until` itself at the very start of the calendar).
    """
    try:
        return period_start(until - timedelta(days=365), period)
    except OverflowError:
        return period_start(until, period)


def starts(since: datetime, until: datetime, period: Period) -> list[datetime]:
    """The starts of every period overlapping [since, until).

    Raises:
        ValueError: `until` is not after `since`, or the span holds more than MAX_PERIODS.
    """
    if until <= since:
        raise ValueError("`to` must be after `from`")
    out = []
    at = period_start(since, period)
    while at < until:
        out.append(at)
        if len(out) > MAX_PERIODS:
            raise ValueError(f"at most {MAX_PERIODS} periods at a time; ask for a shorter span")
        if at.year == 9999 and at.month + _MONTHS[period] > 12:
            break  # the calendar ends inside this period
        at = next_start(at, period)
    return out
