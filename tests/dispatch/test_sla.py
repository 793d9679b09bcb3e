from __future__ import annotations

from datetime import timedelta

import pytest

from diagnosis.events import Severity
from dispatch.errors import SlaError
from dispatch.orders import (
    Accept,
    Arrive,
    AuditEvent,
    Cancel,
    Close,
    Command,
    Complete,
    ContactCustomer,
    Dispatch,
    Order,
    RecordSurvey,
    StartTravel,
    Transfer,
    apply,
    create_order,
)
from dispatch.sla import SlaPolicy, TimerKind, TimerSpec, Verdict, judge, timers_for
from tests.dispatch.fleet import NOW

MIN = timedelta(minutes=1)
HOUR = timedelta(hours=1)


class Story:
    """An order driven through commands at given offsets from NOW, keeping its timers."""

    def __init__(self, severity: Severity = Severity.CRITICAL) -> None:
        self.order, event = create_order("O-1", severity, (), actor="ecc", now=NOW)
        self.events: list[AuditEvent] = [event]

    def do(self, command: Command, after: timedelta) -> Story:
        self.order, event = apply(self.order, command, actor="x", now=NOW + after)
        self.events.append(event)
        return self

    def timers(self, kind: TimerKind) -> list[TimerSpec]:
        return [t for e in self.events for t in timers_for(e) if t.kind is kind]

    def timer(self, kind: TimerKind) -> TimerSpec:
        (timer,) = self.timers(kind)
        return timer

    def verdict(self, kind: TimerKind, late: timedelta = timedelta()) -> Verdict:
        timer = self.timer(kind)
        return judge(timer, self.order, timer.fires_at + late)


def _until_on_site(story: Story, arrive_after: timedelta) -> Story:
    story.do(Dispatch("E-1"), MIN).do(Accept(), 2 * MIN).do(StartTravel(), 3 * MIN)
    return story.do(Arrive(), arrive_after)


@pytest.mark.parametrize(
    ("severity", "arrival"),
    [(Severity.CRITICAL, 4 * HOUR), (Severity.MAJOR, 24 * HOUR), (Severity.MINOR, 72 * HOUR)],
)
def test_creation_starts_the_arrival_deadline_by_severity_and_the_escalation(
    severity: Severity, arrival: timedelta
) -> None:
    _, event = create_order("O-1", severity, (), actor="ecc", now=NOW)
    assert timers_for(event) == [
        TimerSpec("O-1", TimerKind.ARRIVAL_DEADLINE, NOW, NOW + arrival),
        TimerSpec("O-1", TimerKind.COMPLETION_ESCALATION, NOW, NOW + 48 * HOUR),
    ]


def test_info_orders_have_no_arrival_deadline_and_the_policy_is_data() -> None:
    _, event = create_order("O-1", Severity.INFO, (), actor="ecc", now=NOW)
    assert [t.kind for t in timers_for(event)] == [TimerKind.COMPLETION_ESCALATION]
    policy = SlaPolicy(arrival_within={Severity.INFO: 7 * 24 * HOUR}, complete_within=HOUR)
    assert [t.fires_at - NOW for t in timers_for(event, policy)] == [7 * 24 * HOUR, HOUR]


def test_each_dispatch_starts_a_callback_check_and_completion_a_survey() -> None:
    story = Story().do(Dispatch("E-1"), MIN).do(Transfer("E-2"), 5 * MIN)
    assert [t.fires_at for t in story.timers(TimerKind.CALLBACK_CHECK)] == [
        NOW + 16 * MIN,
        NOW + 20 * MIN,
    ]
    story.do(Accept(), 6 * MIN).do(StartTravel(), 7 * MIN).do(Arrive(), 8 * MIN)
    story.do(Complete(), HOUR).do(Close(), 2 * HOUR)
    assert story.timer(TimerKind.SURVEY).fires_at == NOW + 25 * HOUR
    assert [timers_for(e) for e in story.events[3:6]] == [[], [], []]
    assert story.timer(TimerKind.SURVEY).key == "O-1/survey/2026-03-02T10:00:00+00:00"


def test_callback_check_is_satisfied_by_a_timely_contact_and_breached_without() -> None:
    contacted = Story().do(Dispatch("E-1"), MIN).do(ContactCustomer(), 10 * MIN)
    assert contacted.verdict(TimerKind.CALLBACK_CHECK) is Verdict.SATISFIED
    silent = Story().do(Dispatch("E-1"), MIN)
    assert silent.verdict(TimerKind.CALLBACK_CHECK) is Verdict.BREACH
    late = Story().do(Dispatch("E-1"), MIN).do(ContactCustomer(), 30 * MIN)
    assert late.verdict(TimerKind.CALLBACK_CHECK) is Verdict.BREACH


def test_callback_check_is_satisfied_when_the_engineer_is_already_on_site() -> None:
    story = _until_on_site(Story(), 10 * MIN)
    assert story.verdict(TimerKind.CALLBACK_CHECK) is Verdict.SATISFIED


def test_callback_check_of_a_superseded_dispatch_or_a_cancelled_order_is_moot() -> None:
    story = Story().do(Dispatch("E-1"), MIN).do(Transfer("E-2"), 5 * MIN)
    first, second = story.timers(TimerKind.CALLBACK_CHECK)
    assert judge(first, story.order, first.fires_at) is Verdict.MOOT
    assert judge(second, story.order, second.fires_at) is Verdict.BREACH
    cancelled = Story().do(Dispatch("E-1"), MIN).do(Cancel("fixed remotely"), 5 * MIN)
    assert cancelled.verdict(TimerKind.CALLBACK_CHECK) is Verdict.MOOT


def test_arrival_deadline_verdicts() -> None:
    assert (
        _until_on_site(Story(), 3 * HOUR).verdict(TimerKind.ARRIVAL_DEADLINE) is Verdict.SATISFIED
    )
    assert _until_on_site(Story(), 5 * HOUR).verdict(TimerKind.ARRIVAL_DEADLINE) is Verdict.BREACH
    waiting = Story().do(Dispatch("E-1"), MIN)
    assert waiting.verdict(TimerKind.ARRIVAL_DEADLINE) is Verdict.BREACH
    # A runner that was down judges a late firing on the recorded times, not on `now`.
    assert waiting.verdict(TimerKind.ARRIVAL_DEADLINE, late=HOUR) is Verdict.BREACH
    cancelled_before = Story().do(Cancel("duplicate"), HOUR)
    assert cancelled_before.verdict(TimerKind.ARRIVAL_DEADLINE) is Verdict.MOOT
    cancelled_after = Story().do(Cancel("gave up"), 5 * HOUR)
    assert cancelled_after.verdict(TimerKind.ARRIVAL_DEADLINE) is Verdict.BREACH


def test_completion_escalation_verdicts() -> None:
    done = _until_on_site(Story(), HOUR).do(Complete(), 47 * HOUR)
    assert done.verdict(TimerKind.COMPLETION_ESCALATION) is Verdict.SATISFIED
    closed_later = _until_on_site(Story(), HOUR).do(Complete(), 2 * HOUR).do(Close(), 60 * HOUR)
    assert closed_later.verdict(TimerKind.COMPLETION_ESCALATION) is Verdict.SATISFIED
    stuck = _until_on_site(Story(), HOUR)
    assert stuck.verdict(TimerKind.COMPLETION_ESCALATION) is Verdict.BREACH
    slow = _until_on_site(Story(), HOUR).do(Complete(), 49 * HOUR)
    assert slow.verdict(TimerKind.COMPLETION_ESCALATION, late=2 * HOUR) is Verdict.BREACH


def test_survey_is_due_unless_already_recorded() -> None:
    story = _until_on_site(Story(), HOUR).do(Complete(), 2 * HOUR)
    assert story.verdict(TimerKind.SURVEY) is Verdict.DUE
    story.do(RecordSurvey("5/5"), 10 * HOUR)
    assert story.verdict(TimerKind.SURVEY) is Verdict.SATISFIED


def test_judging_early_or_against_another_order_is_an_error() -> None:
    story = Story()
    timer = story.timer(TimerKind.ARRIVAL_DEADLINE)
    with pytest.raises(SlaError, match="fires at") as early:
        judge(timer, story.order, timer.fires_at - MIN)
    assert early.value.kind == "arrival_deadline"
    other: Order = create_order("O-2", Severity.MINOR, (), actor="ecc", now=NOW)[0]
    with pytest.raises(SlaError, match="against order O-2"):
        judge(timer, other, timer.fires_at)
