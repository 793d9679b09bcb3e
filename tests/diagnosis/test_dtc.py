"""J1939 fault-code episodes: open, flap, close after the clear time, occurrence counts."""

from __future__ import annotations

from diagnosis.events import AlarmEvent, Transition, dtc_code
from diagnosis.frame import MachineInfo
from tests.diagnosis.test_engine import RULES, Stream, engine_for, frame_of

CODE = (100, 1)
FAULT = dtc_code(*CODE)
CLEAR_S = RULES.default.dtc.clear_after_s


def _code(events: list[AlarmEvent]) -> list[AlarmEvent]:
    return [e for e in events if e.fault == FAULT]


def _with(oc: int = 3) -> list[tuple[int, int, int]]:
    return [(*CODE, oc)]


def test_code_absent_for_the_clear_time_closes_the_episode() -> None:
    gone = int(CLEAR_S) + 10
    s = Stream("m1").add(3, dtcs=_with()).add(gone)
    found = _code(engine_for("m1").process(frame_of(s)))
    assert [(e.transition, e.ts_ms) for e in found] == [
        (Transition.RAISED, s.ts(0)),
        (Transition.UPDATED, s.ts(2)),
        (Transition.CLEARED, s.ts(2 + int(CLEAR_S))),  # first reading proving the absence
    ]


def test_code_back_within_the_clear_time_continues_and_counts_a_flap() -> None:
    blink = int(CLEAR_S) // 2
    s = (
        Stream("m1")
        .add(1, dtcs=_with())
        .add(blink)
        .add(1, dtcs=_with())
        .add(blink)
        .add(1, dtcs=_with())
    )
    found = _code(engine_for("m1").process(frame_of(s)))
    assert [e.transition for e in found] == [Transition.RAISED, Transition.UPDATED]
    assert "flapped 2 times" in found[-1].detail


def test_code_back_after_the_clear_time_opens_a_new_episode() -> None:
    s = Stream("m1").add(1, dtcs=_with()).add(int(CLEAR_S) + 5).add(1, dtcs=_with())
    found = _code(engine_for("m1").process(frame_of(s)))
    assert [e.transition for e in found] == [
        Transition.RAISED,
        Transition.CLEARED,
        Transition.RAISED,
    ]


def test_episode_carries_across_batches_and_closes_in_a_later_one() -> None:
    engine = engine_for("m1")
    s = Stream("m1").add(5, dtcs=_with(3)).add(int(CLEAR_S) // 2).add(2, dtcs=_with(4))
    s.add(int(CLEAR_S) + 5)
    first = _code(engine.process(frame_of(s, hi=5)))
    assert [e.transition for e in first] == [Transition.RAISED, Transition.UPDATED]
    second = _code(engine.process(frame_of(s, lo=5, hi=5 + int(CLEAR_S) // 2 + 2)))
    assert [e.transition for e in second] == [Transition.UPDATED]  # back in time: a flap
    assert second[0].occurrences == 4  # the controller's latest count
    assert "flapped 1 times" in second[0].detail
    third = _code(engine.process(frame_of(s, lo=5 + int(CLEAR_S) // 2 + 2)))
    assert [e.transition for e in third] == [Transition.CLEARED]


def test_occurrence_count_not_available_is_none() -> None:
    s = Stream("m1").add(1, dtcs=_with(127))
    raised = _code(engine_for("m1").process(frame_of(s)))
    assert raised[0].occurrences is None


def test_silence_does_not_close_an_episode() -> None:
    engine = engine_for("m1")
    engine.process(frame_of(Stream("m1").add(1, dtcs=_with())))
    # No readings at all for a long time: nothing proves the code absent until one arrives.
    late = Stream("m1", start_s=10 * CLEAR_S).add(1)
    found = _code(engine.process(frame_of(late)))
    assert [(e.transition, e.ts_ms) for e in found] == [(Transition.CLEARED, late.ts(0))]


def test_restore_opens_codes_the_store_has_open() -> None:
    engine = engine_for()
    engine.restore([MachineInfo("m1", "excavator")], frame_of(), {"m1": {FAULT}})
    s = Stream("m1").add(1, dtcs=_with()).add(int(CLEAR_S) + 2)
    found = _code(engine.process(frame_of(s)))
    # Continued, not raised again.
    assert [e.transition for e in found] == [Transition.UPDATED, Transition.CLEARED]


def test_two_codes_of_one_machine_are_separate_episodes() -> None:
    s = Stream("m1").add(2, dtcs=[(100, 1, 1), (110, 0, 2)]).add(2, dtcs=[(110, 0, 2)])
    events = engine_for("m1").process(frame_of(s))
    raised = sorted(e.fault for e in events if e.transition is Transition.RAISED)
    assert raised == sorted([dtc_code(100, 1), dtc_code(110, 0)])


MAX_OPEN = RULES.default.dtc.max_open


def test_a_machine_holds_at_most_max_open_episodes_and_the_rest_are_counted() -> None:
    """A gateway reporting garbage codes raises a bounded number of alarms, not one a code."""
    flood = [(1000 + i, 3, 1) for i in range(MAX_OPEN + 8)]
    engine = engine_for("m1", "m2")
    s = Stream("m1").add(2, dtcs=flood)
    other = Stream("m2").add(2, dtcs=[(100, 1, 1)])
    events = engine.process(frame_of(s, other))
    raised = [e for e in events if e.transition is Transition.RAISED]
    assert len([e for e in raised if e.machine_id == "m1"]) == MAX_OPEN
    assert {e.spn for e in raised if e.machine_id == "m1"} == {1000 + i for i in range(MAX_OPEN)}
    assert [e.fault for e in raised if e.machine_id == "m2"] == [FAULT]  # others unaffected
    assert engine.take_suppressed_dtcs() == {"m1": 16}  # 8 codes in each of two readings
    # Once the flood stops, its episodes close, and a new code opens again.
    later = Stream("m1", start_s=2.0).add(int(CLEAR_S) + 2).add(1, dtcs=_with())
    after = engine.process(frame_of(later))
    assert len([e for e in after if e.transition is Transition.CLEARED]) == MAX_OPEN
    assert [e.fault for e in after if e.transition is Transition.RAISED] == [FAULT]
    assert engine.take_suppressed_dtcs() == {}
