"""Maintenance definitions without a database: interval arithmetic, status, usage rate, forecast,
plan precedence and the shipped plans' checks."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from telematics.maintenance import shipped
from telematics.maintenance.book import PlanBook, scope_of
from telematics.maintenance.plan import PlanItem
from telematics.maintenance.schedule import ItemSchedule, LastDone, Leads, Status, schedule
from telematics.maintenance.usage import DayCounter, daily_usage, usage_rate

TODAY = date(2026, 6, 1)  # a Monday
OIL = PlanItem("engine_oil", "Engine oil", every_h=500.0, every_days=365, first_at_h=50.0)
HYD = PlanItem("hydraulic_oil", "Hydraulic oil", every_h=2000.0, every_days=730, first_at_h=None)
LEADS = Leads(lead_h=50.0, lead_days=14, overdue_fraction=0.1)


def at(
    hours_now: float,
    last: LastDone | None = None,
    rate: float | None = None,
    item: PlanItem = OIL,
    start: date = TODAY - timedelta(days=30),
) -> ItemSchedule:
    return schedule(
        item, last, start=start, hours_now=hours_now, today=TODAY, rate_h_per_day=rate,
        leads=LEADS,
    )  # fmt: skip


def test_first_service_is_due_at_first_at_h_then_every_h_after_a_completion() -> None:
    assert at(10.0).due_at_h == 50.0
    assert at(10.0, item=HYD).due_at_h == 2000.0
    done = LastDone(55.0, datetime(2026, 5, 20, tzinfo=UTC))
    after = at(60.0, done)
    assert after.due_at_h == 555.0
    assert after.due_date == date(2027, 5, 20)
    assert after.remaining_h == 495.0
    assert after.status is Status.OK


def test_status_goes_ok_due_soon_due_overdue_by_hours() -> None:
    done = LastDone(1000.0, datetime(2026, 5, 30, tzinfo=UTC))
    assert at(1400.0, done).status is Status.OK  # 100 h left
    assert at(1450.0, done).status is Status.DUE_SOON  # 50 h left: the lead
    assert at(1500.0, done).status is Status.DUE  # reached
    assert at(1550.0, done).status is Status.DUE  # 50 h past: the margin (10 % of 500 h)
    assert at(1550.5, done).status is Status.OVERDUE


def test_the_calendar_counts_when_it_comes_first() -> None:
    done = LastDone(0.0, datetime(2025, 6, 10, tzinfo=UTC))  # 365 days -> 2026-06-10
    s = at(10.0, done)
    assert s.due_date == date(2026, 6, 10)
    assert s.remaining_days == 9
    assert s.status is Status.DUE_SOON  # hours say ok, the calendar says within 14 days
    late = at(10.0, LastDone(0.0, datetime(2025, 4, 1, tzinfo=UTC)))  # 61 days past
    assert late.status is Status.OVERDUE  # more than 36.5 days (10 % of 365) past


def test_before_any_completion_the_calendar_starts_at_delivery() -> None:
    s = at(0.0, start=date(2025, 1, 1))
    assert s.due_date == date(2026, 1, 1)
    assert s.status is Status.OVERDUE


def test_forecast_follows_the_usage_rate() -> None:
    done = LastDone(1000.0, datetime(2026, 5, 30, tzinfo=UTC))
    slow = at(1400.0, done, rate=40 / 7)  # 100 h left at 5.71 h/day: 17.5 -> 18 days
    fast = at(1400.0, done, rate=80 / 7)  # twice the rate: 8.75 -> 9 days
    assert slow.forecast_due_date == TODAY + timedelta(days=18)
    assert fast.forecast_due_date == TODAY + timedelta(days=9)
    # No rate (or an idle machine): the calendar alone.
    assert at(1400.0, done).forecast_due_date == date(2027, 5, 30)
    assert at(1400.0, done, rate=0.0).forecast_due_date == date(2027, 5, 30)
    # Already reached: due today.
    assert at(1600.0, done, rate=5.0).forecast_due_date == TODAY


def _workweeks(weeks: int, h_per_day: float, *, skip_week: int | None = None,
               weekends_offline: bool = True) -> list[DayCounter]:  # fmt: skip
    """Counter values of a machine working Monday to Friday, ending yesterday."""
    start = TODAY - timedelta(days=7 * weeks + 3)  # a Friday, the counter read in the evening
    hours, days = 100.0, [DayCounter(start, 100.0)]
    for k in range(1, 7 * weeks + 3):
        day = start + timedelta(days=k)
        works = day.weekday() < 5 and (skip_week is None or (k - 3) // 7 != skip_week)
        if works:
            hours += h_per_day
        if works or not weekends_offline:
            days.append(DayCounter(day, hours))
    return days


def test_five_days_a_week_at_eight_hours_is_40_over_7() -> None:
    assert usage_rate(_workweeks(4, 8.0), today=TODAY) == pytest.approx(40 / 7)
    assert usage_rate(_workweeks(4, 8.0, weekends_offline=False), today=TODAY) == pytest.approx(
        40 / 7
    )
    assert usage_rate(_workweeks(4, 16.0), today=TODAY) == pytest.approx(80 / 7)


def test_an_idle_week_and_an_offline_gap_move_the_rate_little() -> None:
    # Reporting through an idle week: that week is 0, the median ignores it.
    idle = _workweeks(4, 8.0, skip_week=1, weekends_offline=False)
    assert usage_rate(idle, today=TODAY) == pytest.approx(40 / 7)
    # Silent through it (and every weekend): its neighbours' weekends share the bridged hours.
    silent = usage_rate(_workweeks(4, 8.0, skip_week=1), today=TODAY)
    assert silent == pytest.approx(40 / 7, rel=0.1)
    mean = (3 * 40) / (4 * 7)
    assert abs(silent - 40 / 7) < abs(mean - 40 / 7)  # closer than the plain mean would be
    days = [d for d in _workweeks(4, 8.0) if not date(2026, 5, 11) <= d.day <= date(2026, 5, 22)]
    # Twelve days offline while working: the counter's increase is spread over the gap.
    assert usage_rate(days, today=TODAY) == pytest.approx(40 / 7, rel=0.25)


def test_a_counter_that_runs_backwards_or_jumps_is_not_usage() -> None:
    days = [DayCounter(date(2026, 5, 1), 900.0), DayCounter(date(2026, 5, 2), 10.0),
            DayCounter(date(2026, 5, 3), 18.0), DayCounter(date(2026, 5, 4), 5000.0)]  # fmt: skip
    usage = daily_usage(days)
    assert usage == {date(2026, 5, 3): 8.0}


def test_no_readings_no_rate_and_a_new_machine_gets_the_mean_of_its_days() -> None:
    assert usage_rate([], today=TODAY) is None
    assert usage_rate([DayCounter(TODAY - timedelta(days=1), 5.0)], today=TODAY) is None
    recent = [DayCounter(TODAY - timedelta(days=k), 100.0 - 6 * k) for k in range(1, 5)]
    assert usage_rate(recent, today=TODAY) == pytest.approx(6.0)  # three days known


def test_stored_plans_win_over_shipped_and_models_override_their_class() -> None:
    plans = shipped.load()
    book = PlanBook(plans, {})
    excavator = [i.item for i in book.for_machine("excavator", "PC200-8")]
    assert excavator[:2] == ["engine_oil", "fuel_filters"]
    sy = book.for_machine("excavator", "SY215C")
    assert sy[0].every_h == 250.0
    assert [i.item for i in sy] == excavator
    # A class without a plan follows the default.
    assert [i.item for i in book.for_machine("roller", "R1")] == [
        i.item for i in plans[("class", "default")]
    ]
    mine = PlanItem("greasing", "Grease the pins", every_h=10.0, every_days=None, first_at_h=None)
    edited = PlanBook(plans, {("class", "excavator"): (mine,)})
    assert [i.item for i in edited.for_machine("excavator", "SY215C")] == [
        "greasing",
        *[i.item for i in plans[("model", "SY215C")]],
    ]
    assert scope_of("crane") == "class"
    assert scope_of("default") == "class"
    assert scope_of("320 GC") == "model"


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("[[class.excavator]]\nitem = 'x'\nname = 'X'\n", "every_h, every_days or both"),
        ("[[class.excavator]]\nitem = 'Bad!'\nname = 'X'\nevery_h = 5\n", "pattern"),
        ("[[class.excavator]]\nitem = 'x'\nname = 'X'\nevery_h = -5\n", "greater than 0"),
        ("[[class.SY215C]]\nitem = 'x'\nname = 'X'\nevery_h = 5\n", "is a model"),
        ("[[other.x]]\n", "unknown section"),
        ("[[class.excavator]\n", "not TOML"),
    ],
)
def test_a_broken_shipped_plan_is_refused_with_its_reason(text: str, why: str) -> None:
    with pytest.raises(shipped.ShippedPlanError, match=why):
        shipped.parse(text)
