"""The engine's rules: persistence, hysteresis, carry across batches, restore and redelivery.

Scenarios are built reading by reading from a healthy baseline; expected times come from the
packaged rule book, so a changed threshold moves the expectation with it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pytest

from diagnosis import events as ev
from diagnosis.engine import Engine, UnknownMachineError
from diagnosis.events import AlarmEvent, Transition
from diagnosis.frame import FloatArray, Frame, MachineInfo
from diagnosis.rules import RuleBook, Thresholds
from diagnosis.signals import SIGNAL_NAMES
from diagnosis.windows import MODEL_SIGNALS

T0 = 1_700_000_040_000  # a whole minute, so windows line up with readings
RULES = RuleBook.load()
SITE = (52.5, 13.4, 300.0)

HEALTHY: dict[str, float] = {
    "engine_speed_rpm": 1800.0,
    "oil_pressure_kpa": 350.0,
    "coolant_temp_c": 85.0,
    "hydraulic_oil_temp_c": 60.0,
    "fuel_level_pct": 60.0,
    "battery_v": 27.7,
    "engine_hours": 1200.0,
    "lat": SITE[0],
    "lon": SITE[1],
    "load_pct": 55.0,
}


@dataclass
class Stream:
    """Readings of one machine, one per `period_s`, each a healthy baseline with changes."""

    machine_id: str
    period_s: float = 1.0
    start_s: float = 0.0
    rows: list[dict[str, float]] = field(default_factory=list)
    dtcs: list[list[tuple[int, int, int]] | None] = field(default_factory=list)

    def add(
        self, count: int = 1, dtcs: list[tuple[int, int, int]] | None = None, **changes: float
    ) -> Stream:
        for _ in range(count):
            self.rows.append({**HEALTHY, **changes})
            self.dtcs.append(dtcs)
        return self

    def ts(self, i: int) -> int:
        return T0 + round((self.start_s + i * self.period_s) * 1000)


def frame_of(*streams: Stream, lo: int = 0, hi: int | None = None) -> Frame:
    """A frame of the streams' readings `lo:hi`."""
    ids: list[str] = []
    ts: list[int] = []
    cols: list[list[float]] = [[] for _ in SIGNAL_NAMES]
    dtcs: list[list[tuple[int, int, int]] | None] = []
    for s in streams:
        for i in range(lo, len(s.rows) if hi is None else min(hi, len(s.rows))):
            ids.append(s.machine_id)
            ts.append(s.ts(i))
            dtcs.append(s.dtcs[i])
            for k, name in enumerate(SIGNAL_NAMES):
                cols[k].append(s.rows[i][name])
    return Frame.build(ids, ts, cols, dtcs)


def engine_for(*machines: str | MachineInfo, models: dict[str, object] | None = None) -> Engine:
    engine = Engine(RULES, models)  # type: ignore[arg-type]
    infos = [
        m if isinstance(m, MachineInfo) else MachineInfo(m, "excavator", *SITE) for m in machines
    ]
    engine.restore(infos, frame_of(), {})
    return engine


def of(events: Sequence[AlarmEvent], fault: str, tr: Transition | None = None) -> list[AlarmEvent]:
    return [e for e in events if e.fault == fault and (tr is None or e.transition is tr)]


def confirm_index(first: int, readings: int, seconds: float, period_s: float = 1.0) -> int:
    """Index of the reading at which a run starting at `first` has persisted."""
    return first + max(readings - 1, math.ceil(seconds / period_s - 1e-9))


def thresholds(machine_class: str = "excavator") -> Thresholds:
    return RULES.for_machine("", machine_class)


# --- persistence and hysteresis -------------------------------------------------------------


def test_low_oil_pressure_needs_persistence() -> None:
    t = thresholds().low_oil_pressure
    need = confirm_index(0, t.raise_readings, t.raise_s) + 1
    short = Stream("m1").add(5).add(need - 1, oil_pressure_kpa=40.0).add(20)
    assert of(engine_for("m1").process(frame_of(short)), ev.LOW_OIL_PRESSURE) == []
    long = Stream("m1").add(5).add(need, oil_pressure_kpa=40.0).add(5, oil_pressure_kpa=40.0)
    raised = of(engine_for("m1").process(frame_of(long)), ev.LOW_OIL_PRESSURE, Transition.RAISED)
    assert [e.ts_ms for e in raised] == [long.ts(5 + need - 1)]
    assert raised[0].value == 40.0
    assert raised[0].count == need


def test_low_oil_pressure_curve_follows_engine_speed() -> None:
    t = thresholds().low_oil_pressure
    idle, rated = t.curve_rpm[0], t.curve_rpm[-1]
    between = (t.curve_kpa[0] + t.curve_kpa[-1]) / 2  # fine at idle, too low at rated speed
    n = confirm_index(0, t.raise_readings, t.raise_s) + 3
    at_idle = Stream("m1").add(n, engine_speed_rpm=idle, oil_pressure_kpa=between)
    at_rated = Stream("m2").add(n, engine_speed_rpm=rated, oil_pressure_kpa=between)
    events = engine_for("m1", "m2").process(frame_of(at_idle, at_rated))
    assert {e.machine_id for e in of(events, ev.LOW_OIL_PRESSURE, Transition.RAISED)} == {"m2"}


def test_low_oil_pressure_against_the_machines_own_baseline() -> None:
    # 60 % of this machine's healthy pressure is still well above the model's curve: only the
    # baseline sees it, only for the machine that has one, and clearing needs the clear fraction.
    t = thresholds().low_oil_pressure
    healthy = HEALTHY["oil_pressure_kpa"]
    low = healthy * (t.baseline_raise_fraction - 0.05)
    between = healthy * (t.baseline_raise_fraction + t.baseline_clear_fraction) / 2
    curve = float(np.interp(HEALTHY["engine_speed_rpm"], t.curve_rpm, t.curve_kpa))
    assert low > curve + t.clear_margin_kpa
    need = confirm_index(0, t.raise_readings, t.raise_s) + 1
    clear = confirm_index(0, t.clear_readings, t.clear_s) + 1
    streams = [
        Stream(m)
        .add(5)
        .add(need + 2, oil_pressure_kpa=low)
        # Back in the band between: neither clears nor raises again.
        .add(clear + 5, oil_pressure_kpa=between)
        .add(clear, oil_pressure_kpa=healthy * t.baseline_clear_fraction)
        for m in ("known", "new")
    ]
    scorer = _FixedScorer(known=["known"], oil_kpa=healthy)
    events = engine_for("known", "new", models={"excavator": scorer}).process(frame_of(*streams))
    found = of(events, ev.LOW_OIL_PRESSURE)
    assert [
        (e.machine_id, e.transition) for e in found if e.transition is not Transition.UPDATED
    ] == [
        ("known", Transition.RAISED),
        ("known", Transition.CLEARED),
    ]
    s = streams[0]
    assert found[0].ts_ms == s.ts(5 + need - 1)
    assert "of this machine's healthy 350 kPa" in found[0].detail
    assert found[-1].ts_ms == s.ts(5 + need + 2 + clear + 5 + clear - 1)
    # Without a model, the same readings raise nothing.
    assert of(engine_for("known").process(frame_of(streams[0])), ev.LOW_OIL_PRESSURE) == []


def test_low_oil_pressure_ignores_a_stopped_engine() -> None:
    stopped = Stream("m1").add(60, engine_speed_rpm=0.0, oil_pressure_kpa=0.0)
    assert of(engine_for("m1").process(frame_of(stopped)), ev.LOW_OIL_PRESSURE) == []


def test_overheat_clears_only_below_the_hysteresis_threshold() -> None:
    t = thresholds().engine_overheat
    band = (t.raise_c + t.clear_c) / 2
    s = Stream("m1").add(40, coolant_temp_c=t.raise_c + 1).add(200, coolant_temp_c=band)
    engine = engine_for("m1")
    events = engine.process(frame_of(s))
    assert len(of(events, ev.ENGINE_OVERHEAT, Transition.RAISED)) == 1
    assert of(events, ev.ENGINE_OVERHEAT, Transition.CLEARED) == []
    cool = Stream("m1", start_s=240).add(100, coolant_temp_c=t.clear_c - 1)
    cleared = of(engine.process(frame_of(cool)), ev.ENGINE_OVERHEAT, Transition.CLEARED)
    assert [e.ts_ms for e in cleared] == [cool.ts(confirm_index(0, t.clear_readings, t.clear_s))]


def test_nan_neither_raises_nor_clears() -> None:
    t = thresholds().engine_overheat
    hot, nan = t.raise_c + 2, math.nan
    # NaN readings inside a raise run neither count nor break it.
    s = Stream("m1")
    for _ in range(t.raise_readings + int(t.raise_s) + 2):
        s.add(coolant_temp_c=hot).add(coolant_temp_c=nan)
    engine = engine_for("m1")
    raised = of(engine.process(frame_of(s)), ev.ENGINE_OVERHEAT, Transition.RAISED)
    assert len(raised) == 1
    # A long stretch without the signal does not clear an active fault.
    gap = Stream("m1", start_s=len(s.rows)).add(300, coolant_temp_c=nan)
    assert of(engine.process(frame_of(gap)), ev.ENGINE_OVERHEAT) == []


def test_one_reading_in_the_band_breaks_a_raise_run() -> None:
    t = thresholds().engine_overheat
    half = confirm_index(0, t.raise_readings, t.raise_s)  # one short of confirming
    s = Stream("m1").add(half, coolant_temp_c=t.raise_c + 1).add(coolant_temp_c=t.raise_c - 1)
    s.add(half, coolant_temp_c=t.raise_c + 1)
    assert of(engine_for("m1").process(frame_of(s)), ev.ENGINE_OVERHEAT) == []


def test_pending_persistence_carries_across_batches() -> None:
    t = thresholds().hydraulic_overheat
    k = confirm_index(0, t.raise_readings, t.raise_s)
    s = Stream("m1").add(k + 5, hydraulic_oil_temp_c=t.raise_c + 3)
    engine = engine_for("m1")
    assert engine.process(frame_of(s, hi=k - 2)) == []
    raised = of(engine.process(frame_of(s, lo=k - 2)), ev.HYDRAULIC_OVERHEAT, Transition.RAISED)
    assert [e.ts_ms for e in raised] == [s.ts(k)]


def test_raise_clear_raise_in_one_batch_is_emitted_in_order() -> None:
    t = thresholds().hydraulic_overheat
    up = confirm_index(0, t.raise_readings, t.raise_s) + 2
    down = confirm_index(0, t.clear_readings, t.clear_s) + 2
    s = Stream("m1")
    s.add(up, hydraulic_oil_temp_c=t.raise_c + 1).add(down, hydraulic_oil_temp_c=t.clear_c - 5)
    s.add(up, hydraulic_oil_temp_c=t.raise_c + 1)
    found = of(engine_for("m1").process(frame_of(s)), ev.HYDRAULIC_OVERHEAT)
    assert [e.transition for e in found] == [
        Transition.RAISED,
        Transition.CLEARED,
        Transition.RAISED,
        Transition.UPDATED,
    ]
    assert [e.ts_ms for e in found] == sorted(e.ts_ms for e in found)


def test_updated_once_per_batch_with_count_and_worst() -> None:
    t = thresholds().engine_overheat
    engine = engine_for("m1")
    first = Stream("m1").add(40, coolant_temp_c=t.raise_c + 1)
    engine.process(frame_of(first))
    temps = [t.raise_c + 1, t.raise_c + 4, t.raise_c + 2, (t.raise_c + t.clear_c) / 2]
    s = Stream("m1", start_s=40)
    for c in temps:
        s.add(coolant_temp_c=c)
    updated = of(engine.process(frame_of(s)), ev.ENGINE_OVERHEAT)
    assert [e.transition for e in updated] == [Transition.UPDATED]
    hot = [c for c in temps if c >= t.raise_c]
    assert updated[0].count == len(hot)
    assert updated[0].worst == max(hot)
    assert updated[0].ts_ms == s.ts(len(hot) - 1)  # the last reading still meeting it


def test_redelivered_batch_raises_nothing_twice() -> None:
    t = thresholds().engine_overheat
    s = Stream("m1").add(60, coolant_temp_c=t.raise_c + 1)
    engine = engine_for("m1")
    assert of(engine.process(frame_of(s)), ev.ENGINE_OVERHEAT, Transition.RAISED)
    assert engine.process(frame_of(s)) == []
    # A batch overlapping the last one is processed only from its new readings.
    more = Stream("m1").add(70, coolant_temp_c=t.raise_c + 1)
    again = engine.process(frame_of(more, lo=50))
    assert [e.transition for e in again] == [Transition.UPDATED]
    assert again[0].count == 10


# --- other rule kinds -----------------------------------------------------------------------


def test_coolant_rising_fast_only_counts_above_the_thermostat() -> None:
    t = thresholds().coolant_rising_fast
    fast = 2 * t.raise_c_per_min / 60  # °C per reading at 1 Hz
    warmup = Stream("m1")
    for i in range(400):
        warmup.add(coolant_temp_c=20 + fast * i)  # stays below min_temp_c throughout
    assert max(r["coolant_temp_c"] for r in warmup.rows) < t.min_temp_c
    assert of(engine_for("m1").process(frame_of(warmup)), ev.COOLANT_RISING_FAST) == []
    hot = Stream("m1")
    for i in range(700):
        hot.add(coolant_temp_c=t.min_temp_c - 2 + fast * min(i, 300))
    found = of(engine_for("m1").process(frame_of(hot)), ev.COOLANT_RISING_FAST)
    assert [e.transition for e in found] == [Transition.RAISED, Transition.CLEARED]
    assert found[0].value is not None
    assert found[0].value > t.min_temp_c
    assert found[1].ts_ms > hot.ts(300)  # cleared once the temperature levels off


def test_coolant_rate_is_the_same_across_batch_cuts() -> None:
    t = thresholds().coolant_rising_fast
    fast = 2 * t.raise_c_per_min / 60
    s = Stream("m1")
    for i in range(500):
        s.add(coolant_temp_c=t.min_temp_c - 5 + fast * min(i, 350))
    whole = engine_for("m1").process(frame_of(s))
    engine = engine_for("m1")
    cut: list[AlarmEvent] = []
    for lo in range(0, 500, 37):
        cut += engine.process(frame_of(s, lo=lo, hi=lo + 37))
    key = [
        (e.transition, e.ts_ms)
        for e in of(whole, ev.COOLANT_RISING_FAST)
        if e.transition is not Transition.UPDATED
    ]
    assert key
    assert key == [
        (e.transition, e.ts_ms)
        for e in of(cut, ev.COOLANT_RISING_FAST)
        if e.transition is not Transition.UPDATED
    ]


def test_fuel_drop_with_engine_off_is_remembered_across_batches() -> None:
    t = thresholds().fuel_drop_engine_off
    engine = engine_for("m1")
    run_then_stop = Stream("m1").add(10).add(10, engine_speed_rpm=0.0)
    assert engine.process(frame_of(run_then_stop)) == []
    level = HEALTHY["fuel_level_pct"] - t.raise_drop_pct - 2
    theft = Stream("m1", start_s=20).add(60, engine_speed_rpm=0.0, fuel_level_pct=level)
    raised = of(engine.process(frame_of(theft)), ev.FUEL_DROP_ENGINE_OFF, Transition.RAISED)
    assert [e.ts_ms for e in raised] == [theft.ts(confirm_index(0, t.raise_readings, t.raise_s))]
    refuel = Stream("m1", start_s=80).add(5, engine_speed_rpm=0.0, fuel_level_pct=95.0)
    cleared = of(engine.process(frame_of(refuel)), ev.FUEL_DROP_ENGINE_OFF, Transition.CLEARED)
    assert [e.ts_ms for e in cleared] == [refuel.ts(confirm_index(0, t.clear_readings, t.clear_s))]


def test_fuel_burnt_while_running_is_no_drop() -> None:
    s = Stream("m1")
    for i in range(100):
        s.add(fuel_level_pct=60 - 0.2 * i)  # 20 points burnt with the engine running
    s.add(60, engine_speed_rpm=0.0, fuel_level_pct=40.0)
    assert of(engine_for("m1").process(frame_of(s)), ev.FUEL_DROP_ENGINE_OFF) == []


def test_starting_the_engine_clears_a_fuel_drop() -> None:
    t = thresholds().fuel_drop_engine_off
    level = HEALTHY["fuel_level_pct"] - t.raise_drop_pct - 1
    s = (
        Stream("m1")
        .add(3, engine_speed_rpm=0.0)
        .add(60, engine_speed_rpm=0.0, fuel_level_pct=level)
    )
    s.add(5, fuel_level_pct=level)
    found = of(engine_for("m1").process(frame_of(s)), ev.FUEL_DROP_ENGINE_OFF)
    assert [e.transition for e in found] == [Transition.RAISED, Transition.CLEARED]
    assert found[1].ts_ms == s.ts(63 + confirm_index(0, t.clear_readings, t.clear_s))


def test_charging_failure_waits_until_the_engine_has_run() -> None:
    t = thresholds().charging_failure
    low = t.raise_v - 0.5
    s = Stream("m1").add(5, engine_speed_rpm=0.0, battery_v=24.5).add(200, battery_v=low)
    raised = of(engine_for("m1").process(frame_of(s)), ev.CHARGING_FAILURE, Transition.RAISED)
    assert len(raised) == 1
    start = 5 + math.ceil(t.min_running_s)  # first reading after the warm-up
    assert raised[0].ts_ms == s.ts(confirm_index(start, t.raise_readings, t.raise_s))


def test_battery_noise_just_above_the_charging_limit_does_not_reset_the_raise() -> None:
    # A slowly sinking battery crossing the limit, every other reading a little above it (the
    # sender's noise): those neither count nor break the run. One clearly above breaks it.
    t = thresholds().charging_failure
    below, noise = t.raise_v - 0.02, t.raise_v + t.raise_band_v / 2
    n = 4 * max(t.raise_readings, math.ceil(t.raise_s))
    run_in = 5 + math.ceil(t.min_running_s)

    def crossing(machine: str, breaking_at: int | None) -> Stream:
        s = Stream(machine).add(5, engine_speed_rpm=0.0, battery_v=24.5).add(run_in - 5)
        for i in range(n):
            s.add(battery_v=below if i % 2 else noise)
        if breaking_at is not None:
            s.rows[run_in + breaking_at]["battery_v"] = t.raise_v + t.raise_band_v + 0.05
        return s

    noisy, broken = crossing("noisy", None), crossing("broken", n // 4)
    events = engine_for("noisy", "broken").process(frame_of(noisy, broken))
    raised = of(events, ev.CHARGING_FAILURE, Transition.RAISED)
    first = run_in + 1  # the first reading below the limit
    # Every other reading counts: the N-th below the limit, at least T after the first.
    at = max(first + 2 * (t.raise_readings - 1), first + math.ceil(t.raise_s))
    at += (at - first) % 2  # on a reading below the limit
    by_machine = {e.machine_id: e.ts_ms for e in raised}
    assert by_machine["noisy"] == noisy.ts(at)
    assert by_machine["broken"] > noisy.ts(at)  # the run began again after the break


def test_engine_power_loss_uses_the_class_rated_speed() -> None:
    crane = thresholds("crane").engine_power_loss
    excavator = thresholds("excavator").engine_power_loss
    assert crane.rated_rpm != excavator.rated_rpm
    rpm = (crane.rated_rpm + excavator.rated_rpm) / 2 * crane.raise_speed_frac
    # Below 80 % of one model's rated speed but not of the other's.
    assert (rpm < crane.rated_rpm * crane.raise_speed_frac) != (
        rpm < excavator.rated_rpm * excavator.raise_speed_frac
    )
    engine = engine_for(
        MachineInfo("c", "STC500", machine_class="crane"),
        MachineInfo("x", "SY215C", machine_class="excavator"),
    )
    streams = [Stream(m).add(60, engine_speed_rpm=rpm, load_pct=95.0) for m in ("c", "x")]
    raised = of(engine.process(frame_of(*streams)), ev.ENGINE_POWER_LOSS, Transition.RAISED)
    slower = "c" if rpm < crane.rated_rpm * crane.raise_speed_frac else "x"
    assert [e.machine_id for e in raised] == [slower]


def test_machine_silent_after_running_and_cleared_by_the_next_reading() -> None:
    timeout_ms = round(thresholds().machine_silent.timeout_s * 1000)
    engine = engine_for("on", "off")
    on = Stream("on").add(10)
    off = Stream("off").add(10, engine_speed_rpm=0.0)
    engine.process(frame_of(on, off))
    assert engine.check_silence(on.ts(9) + timeout_ms - 1) == []
    raised = engine.check_silence(on.ts(9) + timeout_ms + 5000)
    assert [(e.machine_id, e.transition) for e in raised] == [("on", Transition.RAISED)]
    assert engine.check_silence(on.ts(9) + 2 * timeout_ms) == []  # raised once
    back = Stream("on", start_s=1000).add(1)
    cleared = of(engine.process(frame_of(back)), ev.MACHINE_SILENT)
    assert [(e.transition, e.ts_ms) for e in cleared] == [(Transition.CLEARED, back.ts(0))]


def test_silence_counts_only_from_when_the_machines_could_be_heard() -> None:
    # The gateway was cut off from the broker: the machines' quiet time before it could hear
    # them again is not theirs.
    timeout_ms = round(thresholds().machine_silent.timeout_s * 1000)
    engine = engine_for("on")
    on = Stream("on").add(10)
    engine.process(frame_of(on))
    heard = on.ts(9) + 10 * timeout_ms
    assert engine.check_silence(heard + timeout_ms - 1, heard_since_ms=heard) == []
    raised = engine.check_silence(heard + timeout_ms, heard_since_ms=heard)
    assert [(e.machine_id, e.ts_ms) for e in raised] == [("on", heard + timeout_ms)]


def test_outside_site_is_persisted_and_needs_a_site() -> None:
    t = thresholds().outside_site
    away_deg = (SITE[2] + t.raise_margin_m + 200) / 111_195  # metres north, in degrees
    engine = engine_for("sited", MachineInfo("free", "excavator"))
    blip = Stream("sited").add(5).add(1, lat=SITE[0] + away_deg).add(5)
    assert engine.process(frame_of(blip)) == []
    n = confirm_index(0, t.raise_readings, t.raise_s) + 3
    away = [Stream(m, start_s=20).add(n, lat=SITE[0] + away_deg) for m in ("sited", "free")]
    raised = of(engine.process(frame_of(*away)), ev.OUTSIDE_SITE, Transition.RAISED)
    assert [e.machine_id for e in raised] == ["sited"]
    assert raised[0].value is not None
    assert raised[0].value > SITE[2] + t.raise_margin_m


# --- fault codes, the model, the registry ---------------------------------------------------


def test_fault_code_in_a_reading_raises_its_episode() -> None:
    s = Stream("m1").add(3).add(2, dtcs=[(100, 1, 4)]).add(3)
    raised = of(engine_for("m1").process(frame_of(s)), ev.dtc_code(100, 1), Transition.RAISED)
    assert [(e.ts_ms, e.spn, e.fmi, e.occurrences) for e in raised] == [(s.ts(3), 100, 1, 4)]


class _FixedScorer:
    """Scores a window by its oil pressure mean (low pressure is anomalous), for the machines it
    has a baseline of (NaN for others), and records the machine ids it was given."""

    threshold = 1.0

    def __init__(self, known: Sequence[str] | None = None, oil_kpa: float = math.nan) -> None:
        self.known = known
        self.oil_kpa = oil_kpa  # healthy oil pressure of every known machine
        self.scored: list[str] = []
        self.explained: list[str] = []

    def score(self, X: FloatArray, machine_ids: Sequence[str]) -> FloatArray:  # noqa: N803
        assert len(machine_ids) == len(X)
        self.scored += machine_ids
        oil = X[:, MODEL_SIGNALS.index("oil_pressure_kpa")]
        scores = np.asarray(200.0 / oil, np.float64)
        if self.known is not None:
            scores[[m not in self.known for m in machine_ids]] = np.nan
        return scores

    def explain(self, X: FloatArray, machine_ids: Sequence[str]) -> FloatArray:  # noqa: N803
        assert len(machine_ids) == len(X)
        self.explained += machine_ids
        z = np.zeros_like(X)
        z[:, MODEL_SIGNALS.index("oil_pressure_kpa")] = -5.0
        z[:, MODEL_SIGNALS.index("coolant_temp_c")] = 2.0
        return z

    def oil_baseline(self, machine_ids: Sequence[str]) -> FloatArray:
        """`oil_kpa` at every speed in every regime for every known machine."""
        lines = np.zeros((len(machine_ids), 3, 2))
        lines[:, :, 0] = self.oil_kpa
        if self.known is not None:
            lines[[m not in self.known for m in machine_ids]] = np.nan
        return lines


def settled_lead() -> int:
    """Readings (one a second) from an engine start until windows count, in whole windows."""
    a = thresholds().anomaly
    return math.ceil(a.settle_s / a.window_s) * round(a.window_s)


def test_anomaly_needs_two_windows_and_names_the_deviating_signals() -> None:
    windows = thresholds().anomaly
    w, lead = round(windows.window_s), settled_lead()
    s = Stream("m1").add(lead + 2 * w).add(4 * w, oil_pressure_kpa=190.0).add(5 * w)
    engine = engine_for("m1", MachineInfo("other", "crane"), models={"excavator": _FixedScorer()})
    other = Stream("other").add(lead + 2 * w).add(4 * w, oil_pressure_kpa=190.0).add(5 * w)
    found = of(engine.process(frame_of(s, other)), ev.UNEXPLAINED_ANOMALY)
    assert {e.machine_id for e in found} == {"m1"}  # no scorer for cranes
    raised = [e for e in found if e.transition is Transition.RAISED]
    assert len(raised) == 1
    # The second anomalous window confirms it; it ends at its last reading.
    assert raised[0].ts_ms == s.ts(lead + (2 + windows.raise_windows) * w - 1)
    assert raised[0].deviations[0] == ("oil_pressure_kpa", -5.0)
    assert len(raised[0].deviations) == 3
    assert [e.transition for e in found][-1] is Transition.CLEARED


class _RelationScorer(_FixedScorer):
    """A `_FixedScorer` that also says which relation broke, as `RegimeModel` does."""

    def broken_relations(self, X: FloatArray, machine_ids: Sequence[str]) -> list[str]:  # noqa: N803
        return ["oil_pressure_kpa low for engine_speed_rpm (-9.0)"] * len(X)


def test_anomaly_of_a_broken_relation_says_which_in_its_detail() -> None:
    w, lead = round(thresholds().anomaly.window_s), settled_lead()
    s = Stream("m1").add(lead + 2 * w).add(4 * w, oil_pressure_kpa=190.0).add(5 * w)
    plain = engine_for("m1", models={"excavator": _FixedScorer()}).process(frame_of(s))
    related = engine_for("m1", models={"excavator": _RelationScorer()}).process(frame_of(s))
    (raised,) = of(related, ev.UNEXPLAINED_ANOMALY, Transition.RAISED)
    assert "relation broken: oil_pressure_kpa low for engine_speed_rpm (-9.0)" in raised.detail
    assert raised.deviations[0] == ("oil_pressure_kpa", -5.0)
    (before,) = of(plain, ev.UNEXPLAINED_ANOMALY, Transition.RAISED)
    assert "relation" not in before.detail


def test_anomaly_scorer_gets_each_window_with_its_machine_and_nan_never_alarms() -> None:
    # The scorer judges machines against their own baselines: it must learn whose window each
    # row is, and a machine it has no baseline for (NaN) neither raises nor clears.
    w, lead = round(thresholds().anomaly.window_s), settled_lead()
    scorer = _FixedScorer(known=["known"])
    engine = engine_for("known", "new", "healthy", models={"excavator": scorer})
    sick = [
        Stream(m).add(lead + 2 * w).add(4 * w, oil_pressure_kpa=190.0) for m in ("known", "new")
    ]
    found = of(
        engine.process(frame_of(*sick, Stream("healthy").add(lead + 6 * w))),
        ev.UNEXPLAINED_ANOMALY,
    )
    assert {(e.machine_id, e.transition) for e in found} >= {("known", Transition.RAISED)}
    assert {e.machine_id for e in found} == {"known"}
    # Windows close when a later one begins: 5 complete windows per machine, in machine order.
    assert sorted(scorer.scored) == sorted(["known"] * 5 + ["new"] * 5 + ["healthy"] * 5)
    assert set(scorer.explained) == {"known"}


def test_anomaly_explained_by_an_open_rule_alarm_is_not_raised() -> None:
    # Oil pressure under the curve: the rule raises low_oil_pressure, and the model's windows,
    # anomalous because of that same oil pressure (its top deviation), add nothing. Without the
    # rule alarm (oil pressure above the curve, still anomalous to the model) they are raised.
    w, lead = round(thresholds().anomaly.window_s), settled_lead()
    t = thresholds().low_oil_pressure
    curve = float(np.interp(HEALTHY["engine_speed_rpm"], t.curve_rpm, t.curve_kpa))
    scorer = _FixedScorer()
    engine = engine_for("ruled", "unruled", models={"excavator": scorer})
    ruled = Stream("ruled").add(lead + 2 * w).add(4 * w, oil_pressure_kpa=curve - 10.0).add(w)
    unruled = Stream("unruled").add(lead + 2 * w).add(4 * w, oil_pressure_kpa=curve + 30.0)
    unruled.add(w)
    assert 200.0 / (curve - 10.0) > scorer.threshold  # both anomalous to the model
    assert 200.0 / (curve + 30.0) > scorer.threshold
    events = engine.process(frame_of(ruled, unruled))
    assert {e.machine_id for e in of(events, ev.LOW_OIL_PRESSURE, Transition.RAISED)} == {"ruled"}
    raised = of(events, ev.UNEXPLAINED_ANOMALY, Transition.RAISED)
    assert [e.machine_id for e in raised] == ["unruled"]


def test_windows_after_an_engine_start_are_not_scored_until_it_settled() -> None:
    # A restart: the first settle_s of running readings count towards no window, whichever
    # batch they come in, and the windows after them are scored as before.
    a = thresholds().anomaly
    w, lead = round(a.window_s), settled_lead()
    scorer = _FixedScorer()
    engine = engine_for("m1", models={"excavator": scorer})
    s = Stream("m1").add(lead + 3 * w).add(2 * w, engine_speed_rpm=0.0).add(lead + 3 * w)
    n = len(s.rows)
    for lo in range(0, n, 37):  # batch cuts do not matter
        engine.process(frame_of(s, lo=lo, hi=lo + 37))
    # Three settled windows before the stop, three after the restart; the last is still open.
    assert len(scorer.scored) == 5


def test_process_refuses_unknown_machines_and_forget_makes_them_unknown() -> None:
    engine = engine_for("m1")
    with pytest.raises(UnknownMachineError) as err:
        engine.process(frame_of(Stream("m2").add(1)))
    assert err.value.machine_ids == ("m2",)
    assert engine.unknown(["m1", "m2"]) == ["m2"]
    engine.forget(["m1"])
    assert engine.unknown(["m1"]) == ["m1"]


def test_events_are_ordered_by_machine_then_time() -> None:
    t = thresholds()
    streams = [
        Stream(m).add(60, coolant_temp_c=t.engine_overheat.raise_c + 1, oil_pressure_kpa=30.0)
        for m in ("b", "a", "c")
    ]
    events = engine_for("a", "b", "c").process(frame_of(*streams))
    assert len(events) > 3
    assert [(e.machine_id, e.ts_ms) for e in events] == sorted(
        (e.machine_id, e.ts_ms) for e in events
    )


# --- restore --------------------------------------------------------------------------------


def _open_faults(events: Sequence[AlarmEvent]) -> dict[str, set[str]]:
    """What the store would hold open after applying these events."""
    open_: dict[str, set[str]] = {}
    for e in events:
        faults = open_.setdefault(e.machine_id, set())
        if e.transition is Transition.CLEARED:
            faults.discard(e.fault)
        else:
            faults.add(e.fault)
    return open_


def _transitions(events: Sequence[AlarmEvent]) -> list[tuple[str, str, Transition, int]]:
    return [
        (e.machine_id, e.fault, e.transition, e.ts_ms)
        for e in events
        if e.transition is not Transition.UPDATED
    ]


def test_restore_from_recent_history_gives_the_same_alarms() -> None:
    t = thresholds()
    k = confirm_index(0, t.engine_overheat.raise_readings, t.engine_overheat.raise_s)
    a = Stream("a").add(300)
    a.add(400, coolant_temp_c=t.engine_overheat.raise_c + 1)  # raised before the cut
    a.add(200, coolant_temp_c=t.engine_overheat.clear_c - 1)
    b = Stream("b").add(600 - k // 2)
    b.add(100, hydraulic_oil_temp_c=t.hydraulic_overheat.raise_c + 2)  # pending across the cut
    b.add(100)
    c = Stream("c").add(560).add(100, engine_speed_rpm=0.0)  # engine stops before the cut...
    c.add(100, engine_speed_rpm=0.0, fuel_level_pct=40.0)  # ...and fuel goes after it
    cut, keep_s = 600, 15 * 60
    infos = [MachineInfo(m, "excavator", *SITE) for m in "abc"]

    whole = engine_for(*infos)
    before = whole.process(frame_of(a, b, c, hi=cut))
    after = whole.process(frame_of(a, b, c, lo=cut))

    restored = Engine(RULES)
    history = frame_of(a, b, c, lo=max(0, cut - keep_s), hi=cut)
    restored.restore(infos, history, _open_faults(before))
    assert _transitions(restored.process(frame_of(a, b, c, lo=cut))) == _transitions(after)
    assert {e[0] for e in _transitions(after)} == {"a", "b", "c"}  # every machine has a say
    # Which episodes are open comes from the store, not from the replayed minutes.
    amnesiac = Engine(RULES)
    amnesiac.restore(infos, frame_of(a, b, c, lo=cut - 1, hi=cut), {})
    assert _transitions(amnesiac.process(frame_of(a, b, c, lo=cut))) != _transitions(after)


def test_restore_takes_open_episodes_from_the_store() -> None:
    t = thresholds().engine_overheat
    engine = Engine(RULES)
    engine.restore([MachineInfo("m1", "excavator")], frame_of(), {"m1": {ev.ENGINE_OVERHEAT}})
    cool = Stream("m1").add(100, coolant_temp_c=t.clear_c - 1)
    cleared = of(engine.process(frame_of(cool)), ev.ENGINE_OVERHEAT, Transition.CLEARED)
    assert len(cleared) == 1


def test_silence_sweeps_exactly_the_machines_held_after_forget_and_slot_reuse() -> None:
    # The sweep reads the slots in use, not the machine table: a forgotten machine's slot is
    # swept no more, and the machine that takes the slot over is swept.
    timeout_ms = round(thresholds().machine_silent.timeout_s * 1000)
    engine = engine_for("a", "b")
    engine.process(frame_of(Stream("a").add(3), Stream("b").add(3)))
    engine.forget(["a"])
    engine.restore([MachineInfo("c", "excavator")], frame_of(), {})
    engine.process(frame_of(Stream("c").add(3)))
    raised = engine.check_silence(Stream("a").ts(2) + timeout_ms + 5000)
    assert sorted(e.machine_id for e in raised) == ["b", "c"]


def test_restore_takes_every_fault_flag_from_the_store() -> None:
    # Restoring a machine the engine holds: an episode open in memory but closed in the store is
    # forgotten (the next hot stretch raises anew); one open in the store is kept (no raise).
    t = thresholds().engine_overheat
    n = confirm_index(0, t.raise_readings, t.raise_s) + 3
    hot = t.raise_c + 5
    engine = engine_for("m1", "m2")
    first = engine.process(frame_of(*(Stream(m).add(n, coolant_temp_c=hot) for m in ("m1", "m2"))))
    assert len(of(first, ev.ENGINE_OVERHEAT, Transition.RAISED)) == 2
    infos = [MachineInfo("m1", "excavator"), MachineInfo("m2", "excavator")]
    engine.restore(infos, frame_of(), {"m2": {ev.ENGINE_OVERHEAT}})
    again = engine.process(
        frame_of(*(Stream(m, start_s=1000).add(n, coolant_temp_c=hot) for m in ("m1", "m2")))
    )
    assert [e.machine_id for e in of(again, ev.ENGINE_OVERHEAT, Transition.RAISED)] == ["m1"]
