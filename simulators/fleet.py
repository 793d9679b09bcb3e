"""The fleet model: duty cycles of every machine and the signals its controller would report.

This module owns the physics-ish simulation and nothing else. It is pure: no clock, no sockets, no
files. Time comes in as `ts_ms` arguments, randomness from one seeded `numpy.random.Generator`, so
the same machines, seed and timestamps always give the same readings.

Everything is vectorised across machines: `Fleet.step` advances every machine by one reporting
period with a fixed number of numpy operations, whatever the fleet size, so the cost per reading
falls as the fleet grows (the per-step overhead dominates below ~100 machines). Slow quantities
(temperatures, battery, fuel) are integrated every `SLOW_STEP_S` of simulated time rather than
every step: their time constants are minutes, and fuel burn is accumulated exactly in between.

Invariants:

* A machine that is off reports exactly 0 rpm and 0 kPa oil pressure; engine hours advance by
  exactly the elapsed time while the engine runs and not at all while it is off.
* Fuel only falls, except at a refuel (flagged in `Frame.is_refuelled`), which fills to ~95 %.
* Positions stay inside the machine's site (centre and radius), and change only while travelling.
* Within one machine, `ts_ms` strictly increases from step to step.

Fault injection hook: `Fleet.modifiers` is a list of `StepModifier` callables run on every step,
after the physics and before the sensors are read. They may change any array of the mutable
`FleetState` in place (signal values, the fuel in the tank, per-machine parameters such as
`oil_rated_kpa`) and set `FleetState.dtcs`. No faults are implemented here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final

import numpy as np

from simulators.machines import MODEL_SPECS, MachineSpec, ModelSpec
from simulators.state import (
    IDLE,
    OFF,
    TRAVELLING,
    WIRE_SIGNALS,
    WORKING,
    FleetState,
    FloatArray,
    Frame,
    IntArray,
    StepModifier,
)

M_PER_DEG_LAT: Final = 111_320.0
"""Metres per degree of latitude (and of longitude at the equator), spherical approximation."""

SLOW_STEP_S: Final = 5.0
"""Simulated time between updates of temperatures, battery and fuel level."""

# Sensor resolution, as decimals, row by row of `Frame.values`.
_DECIMALS: Final = (1, 1, 1, 1, 2, 2, 4, 7, 7, 1)
_SITE_MARGIN_M: Final = 2.0  # keep positions, noise included, strictly inside the site
_MIN_DWELL_S: Final = 10.0
_TAU_S: Final = {  # first-order lag time constants: (engine running, engine off)
    "coolant": (480.0, 2400.0),
    "hydraulic": (900.0, 3600.0),
    "battery": (20.0, 60.0),
}


def _lag(
    signal: FloatArray,
    running_target: FloatArray,
    resting_target: FloatArray,
    run_f: FloatArray,
    dt_s: float,
    tau: str,
) -> None:
    """Move `signal` in place towards its target through a first-order lag over `dt_s`."""
    tau_on_s, tau_off_s = _TAU_S[tau]
    target = resting_target + run_f * (running_target - resting_target)
    gain_off = 1.0 - math.exp(-dt_s / tau_off_s)
    gain = gain_off + run_f * (1.0 - math.exp(-dt_s / tau_on_s) - gain_off)
    target -= signal
    target *= gain
    signal += target


def _table(specs: Sequence[ModelSpec], name: str) -> FloatArray:
    return np.array([getattr(spec, name) for spec in specs], dtype=np.float64)


class Fleet:
    """A vectorised simulation of a fleet; `step` advances every machine to its next reading.

    Args:
        machines: The machines, in the order of every array and frame column.
        seed: Seed of the random generator; same machines, seed and steps give the same output.
        start_ts_ms: Simulated time of the initial state, epoch milliseconds.
        offsets_ms: Per-machine offset added to each step's base time, so that machines need not
            all report on the same millisecond. Defaults to zeros.
        ambient_c: Mean ambient temperature of the sites.

    Attributes:
        machines: The machines.
        modifiers: Fault-injection hook; see `StepModifier`. Run in list order on every step.
        state: The mutable state the modifiers work on.
    """

    def __init__(
        self,
        machines: Sequence[MachineSpec],
        *,
        seed: int,
        start_ts_ms: int,
        offsets_ms: Sequence[int] | IntArray | None = None,
        ambient_c: float = 20.0,
    ) -> None:
        if not machines:
            raise ValueError("a fleet needs at least one machine")
        self.machines: tuple[MachineSpec, ...] = tuple(machines)
        self.modifiers: list[StepModifier] = []
        n = len(self.machines)
        offsets = np.zeros(n, dtype=np.int64) if offsets_ms is None else np.asarray(offsets_ms)
        if offsets.shape != (n,) or bool(np.any(offsets < 0)):
            raise ValueError("offsets_ms needs one non-negative offset per machine")
        self.offsets_ms: IntArray = offsets.astype(np.int64)
        self._rng = np.random.default_rng(seed)
        self._last_ts_ms = start_ts_ms
        self._slow_elapsed_s = 0.0
        specs = list(MODEL_SPECS.values())
        names = list(MODEL_SPECS)
        self._model_idx = np.array([names.index(m.model) for m in self.machines], dtype=np.int64)
        self._dwell_mean_s = np.array([s.dwell_mean_s for s in specs], dtype=np.float64)
        self._cum_transitions = np.cumsum(np.array([s.transitions for s in specs]), axis=2)
        self._session_lo = np.array(  # (model, state): lowest rpm and load of a session
            [[(0, 0), (s.idle_rpm, s.idle_load_pct), (s.work_rpm[0], s.work_load_pct[0]),
              (s.travel_rpm[0], s.travel_load_pct[0])] for s in specs], dtype=np.float64
        )  # fmt: skip
        self._session_hi = np.array(
            [[(0, 0), (s.idle_rpm, s.idle_load_pct), (s.work_rpm[1], s.work_load_pct[1]),
              (s.travel_rpm[1], s.travel_load_pct[1])] for s in specs], dtype=np.float64
        )  # fmt: skip
        lat = np.array([m.site.lat for m in self.machines])
        self._site_lat, self._site_lon = lat, np.array([m.site.lon for m in self.machines])
        self._deg_per_m = np.stack([np.full(n, 1 / M_PER_DEG_LAT), 1 / np.cos(np.radians(lat))])
        self._deg_per_m[1] /= M_PER_DEG_LAT
        self._scale = 10.0 ** np.array(_DECIMALS, dtype=np.float64)[:, None]
        self._no_refuel = np.zeros(n, dtype=np.bool_)
        self._no_refuel.flags.writeable = False
        self._is_refuelled = self._no_refuel
        self._run_s = np.zeros(n)  # engine-running seconds since the last slow update
        self._load_s = np.zeros(n)  # integral of load_pct over that time, %·s
        self.state = self._initial_state(specs, ambient_c)

    @property
    def last_ts_ms(self) -> int:
        """Base time of the latest step (the start time before the first step)."""
        return self._last_ts_ms

    def _initial_state(self, specs: Sequence[ModelSpec], ambient_c: float) -> FleetState:
        rng, n, m = self._rng, len(self.machines), self._model_idx
        state = rng.choice(4, size=n, p=[0.3, 0.2, 0.4, 0.1]).astype(np.int64)
        running = state != OFF
        ambient = ambient_c + rng.normal(0.0, 2.0, n)
        tank_l = _table(specs, "tank_l")[m]
        radius = np.array([mc.site.radius_m for mc in self.machines], dtype=np.float64)
        r = np.sqrt(rng.uniform(0.0, 1.0, n)) * np.maximum(radius - 4 * _SITE_MARGIN_M, 0.0)
        angle = rng.uniform(0.0, 2 * math.pi, n)
        alternator_v, rest_v = rng.uniform(27.4, 28.0, n), rng.uniform(24.4, 24.9, n)
        s = FleetState(
            state=state,
            dwell_left_s=rng.exponential(self._dwell_mean_s[m, state]),
            engine_speed_rpm=np.zeros(n),
            oil_pressure_kpa=np.zeros(n),
            load_pct=np.zeros(n),
            coolant_temp_c=np.where(
                running, rng.uniform(70, 92, n), ambient + rng.uniform(0, 30, n)
            ),
            hydraulic_oil_temp_c=np.where(
                running, rng.uniform(40, 65, n), ambient + rng.uniform(0, 20, n)
            ),
            fuel_l=tank_l * rng.uniform(0.3, 0.95, n),
            battery_v=np.where(running, alternator_v, rest_v),
            engine_hours=rng.uniform(200.0, 12_000.0, n),
            x_m=r * np.cos(angle),
            y_m=r * np.sin(angle),
            heading_rad=rng.uniform(0.0, 2 * math.pi, n),
            tank_l=tank_l,
            idle_rpm=np.clip(_table(specs, "idle_rpm")[m] + rng.normal(0.0, 30.0, n), 700, 900),
            rated_rpm=_table(specs, "rated_rpm")[m],
            oil_rated_kpa=rng.uniform(320.0, 430.0, n),
            ambient_c=ambient,
            rest_v=rest_v,
            alternator_v=alternator_v,
            refuel_below_pct=rng.uniform(10.0, 25.0, n),
            site_radius_m=radius,
            idle_fuel_lph=_table(specs, "idle_fuel_lph")[m],
            full_load_fuel_lph=_table(specs, "full_load_fuel_lph")[m],
            hydraulic_rise_c=_table(specs, "hydraulic_rise_c")[m],
            travel_speed_mps=_table(specs, "travel_speed_mps")[m],
            cycle_rad_per_s=2 * math.pi / _table(specs, "work_cycle_s")[m],
            cycle_amp_pct=_table(specs, "work_cycle_amp_pct")[m],
            cycle_phase_rad=rng.uniform(0.0, 2 * math.pi, n),
            session_rpm=np.zeros(n),
            session_load_pct=np.zeros(n),
        )
        self._draw_sessions(s, np.arange(n))
        return s

    def _draw_sessions(self, s: FleetState, idx: IntArray) -> None:
        """Draw engine speed and mean load for machines `idx`, which just entered their state."""
        m, st = self._model_idx[idx], s.state[idx]
        lo, hi = self._session_lo[m, st], self._session_hi[m, st]
        draw = lo + self._rng.uniform(0.0, 1.0, (len(idx), 2)) * (hi - lo)
        # Idle speed is the machine's own governor setting, not the model's.
        s.session_rpm[idx] = np.where(st == IDLE, s.idle_rpm[idx], draw[:, 0])
        s.session_load_pct[idx] = draw[:, 1]

    def step(self, ts_ms: int) -> Frame:
        """Advance every machine to base time `ts_ms` and read its sensors.

        Args:
            ts_ms: Base time of this step, epoch milliseconds; machine `i` reports at
                `ts_ms + offsets_ms[i]`. Must be later than the previous step.

        Returns:
            One reading per machine.

        Raises:
            ValueError: `ts_ms` is not later than the previous step.
        """
        if ts_ms <= self._last_ts_ms:
            raise ValueError(f"step to {ts_ms} is not after the previous step {self._last_ts_ms}")
        dt_s = (ts_ms - self._last_ts_ms) / 1000.0
        self._last_ts_ms = ts_ms
        s = self.state
        s.dwell_left_s -= dt_s
        if s.dwell_left_s.min() <= 0.0:
            self._transition(s)
        run_f = (s.state != OFF).astype(np.float64)
        noise = self._rng.standard_normal((8, len(run_f)))
        self._engine(s, ts_ms, dt_s, run_f, noise)
        self._slow_elapsed_s += dt_s
        if self._slow_elapsed_s >= SLOW_STEP_S:
            self._slow(s, run_f)
        else:
            self._is_refuelled = self._no_refuel
        if s.state.max() == TRAVELLING:
            self._move(s, dt_s)
        for modifier in self.modifiers:
            modifier(s, ts_ms, dt_s)
        return self._read(s, ts_ms, noise)

    def _transition(self, s: FleetState) -> None:
        idx = np.flatnonzero(s.dwell_left_s <= 0.0)
        m = self._model_idx[idx]
        cum = self._cum_transitions[m, s.state[idx]]
        u = self._rng.uniform(0.0, 1.0, len(idx))
        new_state = np.minimum(np.sum(u[:, None] >= cum, axis=1), TRAVELLING)
        s.state[idx] = new_state
        s.dwell_left_s[idx] = np.maximum(
            self._rng.exponential(self._dwell_mean_s[m, new_state]), _MIN_DWELL_S
        )
        self._draw_sessions(s, idx)

    def _engine(
        self, s: FleetState, ts_ms: int, dt_s: float, run_f: FloatArray, noise: FloatArray
    ) -> None:
        # Digging, pumping or lifting cycles swing the load around the session's mean.
        swing = np.sin(s.cycle_rad_per_s * (ts_ms / 1000.0) + s.cycle_phase_rad)
        swing *= s.cycle_amp_pct
        swing *= s.state == WORKING
        load = s.session_load_pct + swing
        load += 3.0 * noise[0]
        np.minimum(np.maximum(load, 0.0, out=load), 100.0, out=load)
        load *= run_f
        s.load_pct = load
        # Governor droop: engine speed sags a little as the load rises.
        rpm = s.session_rpm - 0.6 * swing
        rpm += 12.0 * noise[1]
        np.maximum(rpm, 0.0, out=rpm)
        rpm *= run_f
        s.engine_speed_rpm = rpm
        s.engine_hours += run_f * (dt_s / 3600.0)
        self._run_s += run_f * dt_s
        self._load_s += load * dt_s
        # Oil pressure rises from ~100 kPa at idle to the rated pressure at rated speed; cold,
        # viscous oil reads higher and hot oil lower.
        frac = (rpm - s.idle_rpm) / (s.rated_rpm - s.idle_rpm)
        np.minimum(np.maximum(frac, 0.0, out=frac), 1.0, out=frac)
        frac **= 0.8
        frac *= s.oil_rated_kpa - 100.0
        oil = np.minimum(rpm / s.idle_rpm, 1.0)
        oil *= 100.0
        oil += frac
        viscosity = np.minimum(np.maximum(1.36 - 0.004 * s.coolant_temp_c, 0.9), 1.3)
        oil *= viscosity
        s.oil_pressure_kpa = oil

    def _slow(self, s: FleetState, run_f: FloatArray) -> None:
        """Integrate temperatures, battery and fuel over the time since the last slow update."""
        dt_s, self._slow_elapsed_s = self._slow_elapsed_s, 0.0
        hydraulic_target = s.hydraulic_rise_c * s.load_pct
        hydraulic_target *= 0.01
        hydraulic_target += s.ambient_c + 10.0
        # The thermostat holds coolant near 85-93 °C once warm; off, all cools to ambient.
        _lag(s.coolant_temp_c, 85.0 + 0.08 * s.load_pct, s.ambient_c, run_f, dt_s, "coolant")
        _lag(s.hydraulic_oil_temp_c, hydraulic_target, s.ambient_c, run_f, dt_s, "hydraulic")
        battery_target = s.alternator_v - 0.004 * s.load_pct
        _lag(s.battery_v, battery_target, s.rest_v, run_f, dt_s, "battery")
        burn_l = s.idle_fuel_lph * self._run_s
        burn_l += (s.full_load_fuel_lph - s.idle_fuel_lph) * self._load_s * 0.01
        burn_l *= 1.0 / 3600.0
        self._run_s[:] = 0.0
        self._load_s[:] = 0.0
        np.maximum(s.fuel_l - burn_l, 0.0, out=s.fuel_l)
        pct = s.fuel_l / s.tank_l * 100.0
        self._is_refuelled = self._no_refuel
        if bool((pct < s.refuel_below_pct).any()):
            # Refuelled when parked and low, or in any state once nearly empty.
            refuel = ((pct < s.refuel_below_pct) & (s.state <= IDLE)) | (pct < 5.0)
            idx = np.flatnonzero(refuel)
            s.fuel_l[idx] = s.tank_l[idx] * self._rng.uniform(0.93, 0.97, len(idx))
            self._is_refuelled = refuel

    def _move(self, s: FleetState, dt_s: float) -> None:
        idx = np.flatnonzero(s.state == TRAVELLING)
        rng, k = self._rng, len(idx)
        heading = s.heading_rad[idx] + rng.normal(0.0, 0.3, k) * math.sqrt(dt_s)
        distance_m = s.travel_speed_mps[idx] * rng.uniform(0.6, 1.0, k) * dt_s
        x = s.x_m[idx] + distance_m * np.cos(heading)
        y = s.y_m[idx] + distance_m * np.sin(heading)
        limit = np.maximum(s.site_radius_m[idx] - 4 * _SITE_MARGIN_M, 0.0)
        r = np.hypot(x, y)
        out = r > limit
        if bool(out.any()):
            # At the edge of the site: stop just inside and turn back towards the centre.
            scale = np.where(out, limit / np.maximum(r, 1e-9), 1.0)
            x, y = x * scale, y * scale
            back = np.arctan2(-y, -x) + rng.normal(0.0, 0.5, k)
            heading = np.where(out, back, heading)
        s.heading_rad[idx], s.x_m[idx], s.y_m[idx] = heading, x, y

    def _read(self, s: FleetState, ts_ms: int, noise: FloatArray) -> Frame:
        v = np.empty((len(WIRE_SIGNALS), len(s.state)))
        v[0] = s.engine_speed_rpm
        np.add(s.oil_pressure_kpa, 3.0 * noise[2], out=v[1])
        np.maximum(v[1], 0.0, out=v[1])
        v[1] *= s.engine_speed_rpm > 0.0  # an engine that is off reads exactly 0 kPa
        np.add(s.coolant_temp_c, 0.3 * noise[3], out=v[2])
        np.add(s.hydraulic_oil_temp_c, 0.3 * noise[4], out=v[3])
        # The tank sender is damped: no noise, so the level never rises between refuels.
        np.divide(s.fuel_l, s.tank_l, out=v[4])
        v[4] *= 100.0
        np.add(s.battery_v, 0.04 * noise[5], out=v[5])
        v[6] = s.engine_hours
        # GPS jitters by a metre or two, but the fix stays inside the site.
        xy = np.stack([s.y_m, s.x_m])
        xy += 1.5 * noise[6:8]
        limit = s.site_radius_m - _SITE_MARGIN_M
        r = np.hypot(xy[0], xy[1])
        if bool((r > limit).any()):
            xy *= np.minimum(limit / np.maximum(r, 1e-9), 1.0)
        xy *= self._deg_per_m
        np.add(xy[0], self._site_lat, out=v[7])
        np.add(xy[1], self._site_lon, out=v[8])
        v[9] = s.load_pct
        v *= self._scale
        np.rint(v, out=v)
        v /= self._scale
        return Frame(
            ts_ms=ts_ms + self.offsets_ms,
            values=v,
            state=s.state.copy(),
            is_refuelled=self._is_refuelled,
            dtcs=dict(s.dtcs),
        )
