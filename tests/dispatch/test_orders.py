from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from diagnosis.events import Severity
from dispatch.errors import TransitionError
from dispatch.needs import PartNeed
from dispatch.orders import (
    ALLOWED,
    Accept,
    Arrive,
    Cancel,
    Close,
    Command,
    Complete,
    ContactCustomer,
    Dispatch,
    Order,
    OrderState,
    RecordSurvey,
    SourceKind,
    StartTravel,
    StockAction,
    StockMovement,
    StockSource,
    Transfer,
    allowed_commands,
    apply,
    create_order,
)
from dispatch.ranking import Candidate
from tests.dispatch.fleet import NOW

PARTS = (PartNeed("OF-2010", 1), PartNeed("EO-1540", 4))
MINUTE = timedelta(minutes=1)

COMMANDS: dict[str, Command] = {
    "dispatch": Dispatch("E-1", "W-1"),
    "accept": Accept(),
    "start_travel": StartTravel(),
    "arrive": Arrive(),
    "complete": Complete((PartNeed("OF-2010", 1),)),
    "close": Close(),
    "transfer": Transfer("E-2"),
    "cancel": Cancel("customer withdrew"),
    "contact_customer": ContactCustomer("ETA 40 min agreed"),
    "record_survey": RecordSurvey("happy"),
}
PATH = ["dispatch", "accept", "start_travel", "arrive", "complete", "close"]


def _order_in(state: OrderState) -> tuple[Order, datetime]:
    order, _ = create_order("O-1", Severity.MAJOR, PARTS, actor="ecc:alice", now=NOW)
    at = NOW
    if state is OrderState.CANCELLED:
        at += MINUTE
        return apply(order, COMMANDS["cancel"], actor="ecc:alice", now=at)[0], at
    for name in PATH:
        if order.state is state:
            break
        at += MINUTE
        order, _ = apply(order, COMMANDS[name], actor="engineer:E-1", now=at)
    assert order.state is state
    return order, at


def test_an_order_walks_its_lifecycle_with_an_audit_trail() -> None:
    order, created = create_order("O-1", Severity.CRITICAL, PARTS, actor="ecc:alice", now=NOW)
    assert created.from_state is None
    assert created.to_state is OrderState.CREATED
    assert created.details == {"severity": "critical", "parts": "OF-2010 x1, EO-1540 x4"}
    events = [created]
    for minutes, name in enumerate(PATH, start=1):
        order, event = apply(
            order, COMMANDS[name], actor="engineer:E-1", now=NOW + minutes * MINUTE
        )
        events.append(event)
    assert order.state is OrderState.CLOSED
    assert order.version == 7
    assert [(e.from_state, e.to_state) for e in events[1:]] == [
        (OrderState.CREATED, OrderState.DISPATCHED),
        (OrderState.DISPATCHED, OrderState.ACCEPTED),
        (OrderState.ACCEPTED, OrderState.EN_ROUTE),
        (OrderState.EN_ROUTE, OrderState.ON_SITE),
        (OrderState.ON_SITE, OrderState.COMPLETED),
        (OrderState.COMPLETED, OrderState.CLOSED),
    ]
    assert [e.version for e in events] == list(range(1, 8))
    assert {e.actor for e in events[1:]} == {"engineer:E-1"}
    assert [e.at for e in events] == [NOW + i * MINUTE for i in range(7)]
    assert all(e.severity is Severity.CRITICAL for e in events)
    assert events[1].details == {"engineer_id": "E-1", "source": "warehouse:W-1"}
    assert order.entered_at(OrderState.ON_SITE) == NOW + 4 * MINUTE


@pytest.mark.parametrize("state", list(OrderState))
@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_is_allowed_or_refused_as_the_table_says(
    state: OrderState, name: str
) -> None:
    order, at = _order_in(state)
    sources, target = ALLOWED[name]
    command = COMMANDS[name]
    if state not in sources:
        with pytest.raises(TransitionError) as refused:
            apply(order, command, actor="ecc:alice", now=at + MINUTE)
        assert refused.value.from_state == state
        assert refused.value.command == name
        assert refused.value.order_id == "O-1"
        assert name not in allowed_commands(state)
        return
    new, event = apply(order, command, actor="ecc:alice", now=at + MINUTE)
    assert new.state is (target or state)
    assert event.from_state is state
    assert event.to_state is new.state
    assert event.command == name
    assert new.version == order.version + 1
    assert name in allowed_commands(state)


def test_the_table_covers_every_command_and_final_states_accept_no_moves() -> None:
    assert set(ALLOWED) == {c.name for c in COMMANDS.values()}
    assert allowed_commands(OrderState.CANCELLED) == frozenset()
    assert allowed_commands(OrderState.CLOSED) == {"record_survey"}


def test_dispatch_reserves_the_parts_at_the_van_or_the_pickup_warehouse() -> None:
    order, _ = _order_in(OrderState.CREATED)
    from_van, event = apply(order, Dispatch("E-1"), actor="ecc:alice", now=NOW)
    van = StockSource(SourceKind.VAN, "E-1")
    assert from_van.source == van
    assert from_van.reserved == PARTS
    assert event.stock == (
        StockMovement(StockAction.RESERVE, "OF-2010", 1, van),
        StockMovement(StockAction.RESERVE, "EO-1540", 4, van),
    )
    _, event = apply(order, Dispatch("E-1", "W-7"), actor="ecc:alice", now=NOW)
    assert {m.source for m in event.stock} == {StockSource(SourceKind.WAREHOUSE, "W-7")}


def test_dispatch_follows_a_matching_candidate() -> None:
    candidate = Candidate("E-5", "W-2", (), 10.0, 8.0, 2.0, 12.0, "E-5: fastest")
    command = Dispatch.from_candidate(candidate)
    assert command == Dispatch("E-5", "W-2", "E-5: fastest")
    order, _ = _order_in(OrderState.CREATED)
    _, event = apply(order, command, actor="ecc:alice", now=NOW)
    assert event.details["note"] == "E-5: fastest"


def test_transfer_moves_the_reservation_and_restarts_from_dispatched() -> None:
    order, at = _order_in(OrderState.EN_ROUTE)
    moved, event = apply(order, Transfer("E-2", reason="van broke down"), actor="e", now=at)
    assert moved.state is OrderState.DISPATCHED
    assert moved.engineer_id == "E-2"
    assert moved.source == StockSource(SourceKind.VAN, "E-2")
    old = StockSource(SourceKind.WAREHOUSE, "W-1")
    assert [(m.action, m.source) for m in event.stock] == [
        (StockAction.RELEASE, old),
        (StockAction.RELEASE, old),
        (StockAction.RESERVE, moved.source),
        (StockAction.RESERVE, moved.source),
    ]
    assert event.details == {
        "from_engineer_id": "E-1",
        "engineer_id": "E-2",
        "source": "van:E-2",
        "reason": "van broke down",
    }
    assert moved.entered_at(OrderState.DISPATCHED) == at
    assert moved.entered_at(OrderState.ACCEPTED) is None
    assert moved.entered_at(OrderState.EN_ROUTE) is None


def test_transfer_to_the_engineer_already_assigned_is_refused() -> None:
    order, at = _order_in(OrderState.ACCEPTED)
    with pytest.raises(TransitionError, match="already assigned to E-1") as refused:
        apply(order, Transfer("E-1"), actor="e", now=at)
    assert refused.value.from_state == "accepted"
    assert refused.value.command == "transfer"


def test_completion_consumes_what_was_used_and_releases_the_rest() -> None:
    order, at = _order_in(OrderState.ON_SITE)
    used = (PartNeed("EO-1540", 3), PartNeed("FB-4040", 1))
    done, event = apply(order, Complete(used, "replaced oil"), actor="engineer:E-1", now=at)
    warehouse = StockSource(SourceKind.WAREHOUSE, "W-1")
    van = StockSource(SourceKind.VAN, "E-1")
    assert event.stock == (
        StockMovement(StockAction.RELEASE, "OF-2010", 1, warehouse),
        StockMovement(StockAction.CONSUME, "EO-1540", 3, warehouse),
        StockMovement(StockAction.RELEASE, "EO-1540", 1, warehouse),
        StockMovement(StockAction.CONSUME, "FB-4040", 1, van),
    )
    assert done.consumed == used
    assert done.reserved == ()
    assert event.details == {"parts_used": "EO-1540 x3, FB-4040 x1", "note": "replaced oil"}


def test_completion_refuses_a_part_listed_twice() -> None:
    order, at = _order_in(OrderState.ON_SITE)
    twice = Complete((PartNeed("OF-2010"), PartNeed("OF-2010")))
    with pytest.raises(TransitionError, match="appears twice"):
        apply(order, twice, actor="e", now=at)


def test_cancel_releases_the_reservation() -> None:
    order, at = _order_in(OrderState.ACCEPTED)
    cancelled, event = apply(order, Cancel("fixed remotely"), actor="ecc:bob", now=at)
    assert cancelled.state is OrderState.CANCELLED
    assert cancelled.reserved == ()
    assert {m.action for m in event.stock} == {StockAction.RELEASE}
    assert sum(m.quantity for m in event.stock) == 5
    assert event.details == {"reason": "fixed remotely"}
    created, _ = _order_in(OrderState.CREATED)
    _, event = apply(created, Cancel("duplicate"), actor="ecc:bob", now=NOW)
    assert event.stock == ()


def test_contact_and_survey_are_recorded_without_changing_state() -> None:
    order, at = _order_in(OrderState.DISPATCHED)
    contacted, event = apply(order, ContactCustomer(), actor="engineer:E-1", now=at + MINUTE)
    assert contacted.state is OrderState.DISPATCHED
    assert contacted.customer_contacted_at == at + MINUTE
    assert (event.from_state, event.to_state) == (OrderState.DISPATCHED, OrderState.DISPATCHED)
    closed, at = _order_in(OrderState.CLOSED)
    surveyed, _ = apply(closed, RecordSurvey(), actor="system:survey", now=at)
    assert surveyed.survey_recorded_at == at


def test_time_going_backwards_or_naive_times_are_refused() -> None:
    order, at = _order_in(OrderState.ACCEPTED)
    with pytest.raises(TransitionError, match="before the last event"):
        apply(order, StartTravel(), actor="e", now=at - MINUTE)
    with pytest.raises(TransitionError, match="naive"):
        apply(order, StartTravel(), actor="e", now=at.replace(tzinfo=None) + MINUTE)
    with pytest.raises(TransitionError, match="naive"):
        create_order("O-2", Severity.MINOR, (), actor="e", now=NOW.replace(tzinfo=None))
