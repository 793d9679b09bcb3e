"""The faults that change the engine's signals: oil, thermal, fuel, electrical, power, anomaly.

This module owns low_oil_pressure, the temperature climbs (engine_overheat, hydraulic_overheat,
coolant_rising_fast), fuel_drop_engine_off, charging_failure, engine_power_loss and
unexplained_anomaly (oil pressure too high, overcharging, oil pressure too low for the engine
speed). Each is a `_Fault` that changes the
fleet state inside `Fleet.step`; their effects, duties and criteria are tabled in the package
docstring (`simulators.faults`).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import replace
from typing import ClassVar, Final

import numpy as np

from simulators.faults.effect import _Fault, _FrameEdit, _RunClock
from simulators.faults.ground_truth import GroundTruth
from simulators.faults.spec import ANOMALY_VARIANTS, AnomalyVariant, FaultSpec
from simulators.state import OFF, WORKING, BoolArray, FleetState, FloatArray, Frame

_WARM_COOLANT_C: Final = 90.0
_WARM_HYDRAULIC_C: Final = 70.0
_RUN_FOR_S: Final = 60.0


class _LowOilPressure(_Fault):
    criterion = "engine running and oil_pressure_kpa < 0.6 x healthy"

    def __init__(self, spec: FaultSpec, idx: int, rng: np.random.Generator) -> None:
        super().__init__(spec, idx, rng)
        self.kept = self.draw(spec.magnitude, 0.35, 0.45)
        self.params["kept_fraction"] = self.kept
        self.healthy_kpa = 0.0

    def apply(self, state: FleetState, ts_ms: int, dt_s: float) -> None:
        # Oil pressure is recomputed from engine speed on every step, so scaling it never compounds.
        self.healthy_kpa = float(state.oil_pressure_kpa[self.idx])
        state.oil_pressure_kpa[self.idx] *= 1.0 - self.ramp(ts_ms) * (1.0 - self.kept)

    def visible(self, frame: Frame, is_sent: BoolArray) -> bool:
        rpm, oil = self.signal(frame, "engine_speed_rpm"), self.signal(frame, "oil_pressure_kpa")
        return rpm > 0.0 and oil < 0.6 * self.healthy_kpa


class _Climb(_Fault):
    """A temperature that climbs at a rate to a ceiling while the engine runs, then holds there.

    Sudden: the ceiling is the target from the start. Gradual: the ceiling rises from the warm
    running level to the target over ramp_s (the cooler fouls progressively) and the temperature
    follows it at no more than `rate` (0.6 °C/min by default). While the engine is off the fleet's
    physics cools it; when it runs again the climb resumes. The climb never lags the fleet's own
    warm-up (the faster of the two wins), and nothing changes while the fleet's own temperature
    is above the ceiling.
    """

    signal_name: ClassVar[str]
    warm_c: ClassVar[float]
    levels_c: ClassVar[tuple[float, float]]
    sudden_rates: ClassVar[tuple[float, float]]

    def __init__(self, spec: FaultSpec, idx: int, rng: np.random.Generator) -> None:
        super().__init__(spec, idx, rng)
        self.target_c = self.draw(spec.magnitude, *self.levels_c)
        if spec.rate is not None:
            self.rate = spec.rate
        elif spec.form == "gradual":
            self.rate = 0.6
        else:
            self.rate = self.draw(None, *self.sudden_rates)
        self.params.update(target_c=self.target_c, rate_c_per_min=self.rate)
        self.temp_c: float | None = None  # None: the fleet's physics has the temperature
        self.wander_c = 0.0

    def ceiling_c(self, ts_ms: int) -> float:
        start_c = min(self.warm_c, self.target_c)
        return start_c + self.ramp(ts_ms) * (self.target_c - start_c)

    def apply(self, state: FleetState, ts_ms: int, dt_s: float) -> None:
        temps: FloatArray = getattr(state, self.signal_name)
        physics_c, ceiling_c = float(temps[self.idx]), self.ceiling_c(ts_ms)
        if state.state[self.idx] == OFF or (self.temp_c is None and physics_c >= ceiling_c):
            self.temp_c = None
            return
        temp = physics_c if self.temp_c is None else self.temp_c
        if temp >= ceiling_c - 0.5:
            # Hold near the ceiling, wandering slowly (the fan cycling, the load changing).
            self.wander_c += 0.02 * math.sqrt(dt_s) * float(self.rng.standard_normal())
            self.wander_c = min(max(self.wander_c, -1.0), 1.0)
            temp = min(ceiling_c + self.wander_c, temp + self.rate * dt_s / 60.0)
        else:
            temp = min(max(physics_c, temp + self.rate * dt_s / 60.0), ceiling_c)
        self.temp_c = temp
        temps[self.idx] = temp


class _EngineOverheat(_Climb):
    criterion = "coolant_temp_c >= 105"
    signal_name = "coolant_temp_c"
    warm_c = _WARM_COOLANT_C
    levels_c = (108.0, 115.0)
    sudden_rates = (2.0, 4.0)

    def expected_faults(self) -> tuple[str, ...]:
        fast = self.rate >= 1.5
        return ("engine_overheat", "coolant_rising_fast") if fast else ("engine_overheat",)

    def visible(self, frame: Frame, is_sent: BoolArray) -> bool:
        return self.signal(frame, "coolant_temp_c") >= 105.0


class _HydraulicOverheat(_Climb):
    criterion = "hydraulic_oil_temp_c >= 95"
    signal_name = "hydraulic_oil_temp_c"
    warm_c = _WARM_HYDRAULIC_C
    levels_c = (98.0, 110.0)
    sudden_rates = (1.0, 2.0)

    def visible(self, frame: Frame, is_sent: BoolArray) -> bool:
        return self.signal(frame, "hydraulic_oil_temp_c") >= 95.0


class _CoolantRisingFast(_Climb):
    """Sudden coolant loss: the climb starts from running temperature and stops at its peak."""

    criterion = "coolant_temp_c > 90 and rising >= 1.5 C/min since the reading >= 120 s older"
    signal_name = "coolant_temp_c"
    warm_c = _WARM_COOLANT_C
    levels_c = (100.0, 103.0)
    sudden_rates = (2.0, 4.0)

    def __init__(self, spec: FaultSpec, idx: int, rng: np.random.Generator) -> None:
        super().__init__(spec, idx, rng)
        self.history: deque[tuple[int, float]] = deque()

    def ready(self, state: FleetState, ts_ms: int, dt_s: float) -> bool:
        i = self.idx
        warm = state.state[i] != OFF and state.coolant_temp_c[i] >= 85.0
        return bool(warm) and self.window_left_s(ts_ms) >= 300.0

    def finished(self, state: FleetState, ts_ms: int, dt_s: float) -> bool:
        # Ends at its peak (the leak stops mattering once the operator sees the gauge), when the
        # engine is shut down, or with the window.
        peaked = self.temp_c is not None and self.temp_c >= self.target_c - 0.5
        return peaked or state.state[self.idx] == OFF or super().finished(state, ts_ms, dt_s)

    def track(self, frame: Frame, is_sent: BoolArray) -> None:
        ts = int(frame.ts_ms[self.idx])
        self.history.append((ts, self.signal(frame, "coolant_temp_c")))
        while self.history and self.history[0][0] < ts - 900_000:
            self.history.popleft()

    def visible(self, frame: Frame, is_sent: BoolArray) -> bool:
        ts, coolant = self.history[-1]
        older = [(t, c) for t, c in self.history if t <= ts - 120_000]
        if coolant <= 90.0 or not older:
            return False
        then_ts, then_c = older[-1]
        return (coolant - then_c) / ((ts - then_ts) / 60_000.0) >= 1.5


class _FuelDrop(_Fault):
    """Theft (sudden) or a leak (gradual) while the engine is off; the tank is topped back up."""

    criterion = "engine off and fuel_level_pct < level at the first reading of this stop - 3"

    def __init__(self, spec: FaultSpec, idx: int, rng: np.random.Generator) -> None:
        super().__init__(spec, idx, rng)
        if spec.form == "sudden":
            self.fraction = self.draw(spec.magnitude, 0.2, 0.4)
            drain_s = self.draw(None, 120.0, 300.0)
            self.rate_pct_min = spec.rate or self.fraction * 100.0 / (drain_s / 60.0)
            self.need_s = self.fraction * 100.0 / self.rate_pct_min * 60.0 + 300.0
            self.min_drop_pct = 5.0
        else:
            self.fraction = spec.magnitude if spec.magnitude is not None else 0.15
            self.rate_pct_min = self.draw(spec.rate, 0.08, 0.15)
            self.need_s = 3.5 / self.rate_pct_min * 60.0 + 120.0
            self.min_drop_pct = 3.5
        self.params.update(tank_fraction=self.fraction, rate_pct_per_min=self.rate_pct_min)
        self.off_s = 0.0
        self.fuel0_l = self.cap_l = self.taken_l = 0.0
        self.refuelled_now = False
        self.stop_level_pct: float | None = None

    def watch(self, state: FleetState, dt_s: float) -> None:
        self.refuelled_now = False
        self.off_s = self.off_s + dt_s if state.state[self.idx] == OFF else 0.0

    def _floor_pct(self, state: FleetState) -> float:
        # Stay clear of the refuel threshold: a refuel the healthy run does not have would take a
        # draw from the fleet's shared generator.
        return max(float(state.refuel_below_pct[self.idx]), 5.0) + 2.0

    def ready(self, state: FleetState, ts_ms: int, dt_s: float) -> bool:
        i = self.idx
        if state.state[i] != OFF or self.off_s < 60.0:
            return False
        room_pct = state.fuel_l[i] / state.tank_l[i] * 100.0 - self._floor_pct(state)
        long_enough = min(float(state.dwell_left_s[i]), self.window_left_s(ts_ms)) >= self.need_s
        return long_enough and room_pct >= self.min_drop_pct

    def begin(self, state: FleetState) -> None:
        i = self.idx
        self.fuel0_l = float(state.fuel_l[i])
        floor_l = self._floor_pct(state) / 100.0 * float(state.tank_l[i])
        self.cap_l = min(self.fraction * float(state.tank_l[i]), self.fuel0_l - floor_l)
        self.params["taken_pct"] = round(self.cap_l / float(state.tank_l[i]) * 100.0, 3)

    def finished(self, state: FleetState, ts_ms: int, dt_s: float) -> bool:
        # The off dwell says when the engine restarts: refill on one of the last off steps.
        i = self.idx
        restarting = state.state[i] != OFF or state.dwell_left_s[i] <= 2.0 * dt_s
        return bool(restarting) or super().finished(state, ts_ms, dt_s)

    def apply(self, state: FleetState, ts_ms: int, dt_s: float) -> None:
        i = self.idx
        minutes = (ts_ms - self.effect_ts_ms) / 60_000.0
        pct_taken = self.rate_pct_min * minutes
        self.taken_l = min(pct_taken / 100.0 * float(state.tank_l[i]), self.cap_l)
        # The engine is off, so the fleet burns nothing: the healthy level is still fuel0.
        state.fuel_l[i] = self.fuel0_l - self.taken_l

    def release(self, state: FleetState) -> None:
        i = self.idx
        if state.state[i] == OFF:
            state.fuel_l[i] = self.fuel0_l  # exactly the healthy level
        else:
            state.fuel_l[i] += self.taken_l
        self.refuelled_now = True

    def edit(self, edit: _FrameEdit) -> None:
        if self.refuelled_now:
            edit.mark_refuelled(self.idx)

    def track(self, frame: Frame, is_sent: BoolArray) -> None:
        if self.signal(frame, "engine_speed_rpm") > 0.0:
            self.stop_level_pct = None
        elif self.stop_level_pct is None:
            self.stop_level_pct = self.signal(frame, "fuel_level_pct")

    def visible(self, frame: Frame, is_sent: BoolArray) -> bool:
        if self.stop_level_pct is None:
            return False
        return self.signal(frame, "fuel_level_pct") < self.stop_level_pct - 3.0


class _ChargingFailure(_RunClock):
    criterion = "engine running > 60 s and battery_v < 25.5"

    def __init__(self, spec: FaultSpec, idx: int, rng: np.random.Generator) -> None:
        super().__init__(spec, idx, rng)
        self.loss_v = self.draw(spec.magnitude, 0.8, 1.2)
        self.drain_v_h = spec.rate if spec.rate is not None else 1.0
        self.params.update(max_loss_v=self.loss_v, drain_v_per_h=self.drain_v_h)
        self.alternator0_v = self.rest0_v = self.deficit_v = 0.0

    def begin(self, state: FleetState) -> None:
        self.alternator0_v = float(state.alternator_v[self.idx])
        self.rest0_v = float(state.rest_v[self.idx])

    def apply(self, state: FleetState, ts_ms: int, dt_s: float) -> None:
        # With no charge the running battery settles at its rest voltage less the load's sag,
        # and the ignition, controllers and lights discharge it while the engine runs.
        i, e = self.idx, self.ramp(ts_ms)
        if state.state[i] != OFF:
            self.deficit_v = min(self.loss_v, self.deficit_v + self.drain_v_h * e * dt_s / 3600.0)
        fade_v = e * (self.alternator0_v - self.rest0_v)
        state.alternator_v[i] = self.alternator0_v - fade_v - self.deficit_v
        state.rest_v[i] = self.rest0_v - self.deficit_v

    def release(self, state: FleetState) -> None:
        state.alternator_v[self.idx] = self.alternator0_v
        state.rest_v[self.idx] = self.rest0_v

    def visible(self, frame: Frame, is_sent: BoolArray) -> bool:
        low = self.signal(frame, "battery_v") < 25.5
        return low and self.running_for_s(frame) > _RUN_FOR_S


def _oil_curve_kpa(state: FleetState, idx: int, rpm: float) -> float:
    """Oil pressure at `rpm` before the viscosity factor: mirrors `Fleet`'s oil-pump curve."""
    idle, rated = float(state.idle_rpm[idx]), float(state.rated_rpm[idx])
    frac = math.pow(min(max((rpm - idle) / (rated - idle), 0.0), 1.0), 0.8)
    return min(rpm / idle, 1.0) * 100.0 + frac * (float(state.oil_rated_kpa[idx]) - 100.0)


class _EnginePowerLoss(_Fault):
    criterion = "load_pct >= 85 and engine_speed_rpm <= 0.8 x healthy"

    def __init__(self, spec: FaultSpec, idx: int, rng: np.random.Generator) -> None:
        super().__init__(spec, idx, rng)
        self.drop = self.draw(spec.magnitude, 0.22, 0.30)
        self.params["speed_drop"] = self.drop
        self.healthy_rpm: float | None = None

    def apply(self, state: FleetState, ts_ms: int, dt_s: float) -> None:
        i = self.idx
        if state.state[i] != WORKING:
            self.healthy_rpm = None
            return
        e = self.ramp(ts_ms)
        rpm, load = float(state.engine_speed_rpm[i]), float(state.load_pct[i])
        # Short of power, the engine runs at full fuel (load 95-100 %) and the speed sags to
        # where its reduced torque meets the demand, below the set speed and the rated speed.
        limited = (1.0 - self.drop) * min(rpm, float(state.rated_rpm[i]))
        new_rpm = rpm - e * (rpm - limited)
        state.engine_speed_rpm[i] = new_rpm
        state.load_pct[i] = load + e * (float(self.rng.uniform(95.0, 100.0)) - load)
        curve = _oil_curve_kpa(state, i, rpm)
        if curve > 0.0:
            state.oil_pressure_kpa[i] *= _oil_curve_kpa(state, i, new_rpm) / curve
        self.healthy_rpm = rpm

    def visible(self, frame: Frame, is_sent: BoolArray) -> bool:
        if self.healthy_rpm is None:
            return False
        loaded = self.signal(frame, "load_pct") >= 85.0
        return loaded and self.signal(frame, "engine_speed_rpm") <= 0.8 * self.healthy_rpm


class _UnexplainedAnomaly(_RunClock):
    """Something the rules do not cover but a model of healthy behaviour should flag."""

    def __init__(self, spec: FaultSpec, idx: int, rng: np.random.Generator) -> None:
        super().__init__(spec, idx, rng)
        drawn = ANOMALY_VARIANTS[int(rng.integers(len(ANOMALY_VARIANTS)))]
        self.variant: AnomalyVariant = spec.variant or drawn
        if self.variant == "oil_pressure_high":
            self.level = self.draw(spec.magnitude, 1.4, 1.6)
            self.criterion_text = "engine running and oil_pressure_kpa >= 1.25 x healthy"
        elif self.variant == "oil_pressure_low_for_speed":
            self.level = self.draw(spec.magnitude, 0.75, 0.85)
            self.criterion_text = "engine running and oil_pressure_kpa <= 0.9 x healthy"
        else:
            self.level = self.draw(spec.magnitude, 29.5, 30.5)
            self.criterion_text = "engine running > 60 s and battery_v >= 29.0"
        self.params.update(variant=self.variant, level=self.level)
        self.healthy_kpa = 0.0
        self.alternator0_v = 0.0

    def ground_truth(self) -> GroundTruth:
        return replace(super().ground_truth(), criterion=self.criterion_text)

    def begin(self, state: FleetState) -> None:
        self.alternator0_v = float(state.alternator_v[self.idx])

    def apply(self, state: FleetState, ts_ms: int, dt_s: float) -> None:
        i, e = self.idx, self.ramp(ts_ms)
        if self.variant == "oil_pressure_high":
            # A relief valve stuck closed: the pump's full pressure reaches the gallery.
            self.healthy_kpa = float(state.oil_pressure_kpa[i])
            state.oil_pressure_kpa[i] = min(
                self.healthy_kpa * (1.0 + e * (self.level - 1.0)), 950.0
            )
        elif self.variant == "oil_pressure_low_for_speed":
            # A weak pressure-regulator spring: the valve opens early, so the pressure is right
            # at idle but rises less than it should with speed, `level` of healthy at rated
            # speed. Every reading stays inside the healthy range and above both low-pressure
            # limits; only its relation to engine speed is broken.
            self.healthy_kpa = float(state.oil_pressure_kpa[i])
            idle, rated = float(state.idle_rpm[i]), float(state.rated_rpm[i])
            rise = min(max((float(state.engine_speed_rpm[i]) - idle) / (rated - idle), 0.0), 1.0)
            state.oil_pressure_kpa[i] = self.healthy_kpa * (1.0 + e * rise * (self.level - 1.0))
        else:
            # A failed regulator lets the alternator overcharge the battery.
            target_v = self.alternator0_v + e * (self.level - self.alternator0_v)
            state.alternator_v[i] = target_v

    def release(self, state: FleetState) -> None:
        if self.variant == "overcharging":
            state.alternator_v[self.idx] = self.alternator0_v

    def visible(self, frame: Frame, is_sent: BoolArray) -> bool:
        if self.variant == "oil_pressure_high":
            running = self.signal(frame, "engine_speed_rpm") > 0.0
            return running and self.signal(frame, "oil_pressure_kpa") >= 1.25 * self.healthy_kpa
        if self.variant == "oil_pressure_low_for_speed":
            running = self.signal(frame, "engine_speed_rpm") > 0.0
            return running and self.signal(frame, "oil_pressure_kpa") <= 0.9 * self.healthy_kpa
        high = self.signal(frame, "battery_v") >= 29.0
        return high and self.running_for_s(frame) > _RUN_FOR_S
