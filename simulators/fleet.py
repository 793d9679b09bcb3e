"""The fleet model: machines, their duty cycles and the signals their controllers would report.

This module owns the physics-ish simulation and nothing else. It is pure: no clock, no sockets, no
files. Time comes in as `ts_ms` arguments, randomness from one seeded `numpy.random.Generator`, so
the same machines, seed and timestamps always give the same readings.

Everything is vectorised across machines: `Fleet.step` advances every machine by one reporting
period with a few dozen numpy operations, whatever the fleet size. One step yields one `Frame`, a
columnar snapshot with one row per machine; `simulators.wire` turns rows into JSON.

Invariants:

* A machine that is off reports exactly 0 rpm and 0 kPa oil pressure; engine hours advance by
  exactly the elapsed time while the engine runs and not at all while it is off.
* Fuel only falls, except at a refuel (flagged in `Frame.is_refuelled`), which fills to ~95 %.
* Positions stay inside the machine's site (centre and radius), and move only while travelling.
* Within one machine, `ts_ms` strictly increases from step to step.

Fault injection hook: `Fleet.modifiers` is a list of `StepModifier` callables run on every step
after the physics and before the sensors are read. They may change any array of the mutable
`FleetState` (signal values, per-machine parameters such as `oil_rated_kpa`, the fuel in the tank)
and set `FleetState.dtcs`. Faults are not implemented here; a later module supplies modifiers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

import numpy as np
from numpy.typing import NDArray

from simulators.machines import MODEL_SPECS, MachineSpec

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

OFF: Final = 0
IDLE: Final = 1
WORKING: Final = 2
TRAVELLING: Final = 3
STATE_NAMES: Final = ("off", "idle", "working", "travelling")

M_PER_DEG_LAT: Final = 111_320.0
"""Metres per degree of latitude (and of longitude at the equator), spherical approximation."""

WIRE_SIGNALS: Final = (
    "engine_speed_rpm",
    "oil_pressure_kpa",
    "coolant_temp_c",
    "hydraulic_oil_temp_c",
    "fuel_level_pct",
    "battery_v",
    "engine_hours",
    "lat",
    "lon",
    "load_pct",
)
"""The signals a `Frame` carries, by their wire names (the `Frame` attributes of the same name)."""

_SITE_MARGIN_M: Final = 2.0  # keep positions (noise included) strictly inside the site
_MIN_DWELL_S: Final = 10.0


@dataclass(frozen=True, slots=True)
class Dtc:
    """One active J1939 diagnostic trouble code, as on the wire.

    Attributes:
        spn: Suspect Parameter Number (19 bits).
        fmi: Failure Mode Identifier (0-31).
        oc: Occurrence count (0-126).
    """

    spn: int
    fmi: int
    oc: int


@dataclass(slots=True)
class FleetState:
    """The mutable state of every machine, one array element per machine (fleet order).

    Fault modifiers (see `StepModifier`) read and write these arrays in place. Values are true
    physical quantities; sensor noise and rounding are applied later, when the frame is read.
    """

    model_idx: IntArray
    state: IntArray
    dwell_left_s: FloatArray
    engine_speed_rpm: FloatArray
    oil_pressure_kpa: FloatArray
    load_pct: FloatArray
    coolant_temp_c: FloatArray
    hydraulic_oil_temp_c: FloatArray
    fuel_l: FloatArray
    battery_v: FloatArray
    engine_hours: FloatArray
    x_m: FloatArray
    y_m: FloatArray
    heading_rad: FloatArray
    # Per-machine parameters: constant unless a modifier changes them.
    tank_l: FloatArray
    idle_rpm: FloatArray
    oil_rated_kpa: FloatArray
    ambient_c: FloatArray
    rest_v: FloatArray
    alternator_v: FloatArray
    refuel_below_pct: FloatArray
    site_radius_m: FloatArray
    # Per-session values, redrawn whenever a machine enters a state.
    session_rpm: FloatArray
    session_load_pct: FloatArray
    cycle_phase_rad: FloatArray
    is_refuelled: BoolArray
    dtcs: dict[int, tuple[Dtc, ...]] = field(default_factory=dict)
    """Active fault codes by machine index; machines without codes are absent."""

    @property
    def is_running(self) -> BoolArray:
        """Machines whose engine runs."""
        return self.state != OFF


StepModifier = Callable[[FleetState, int, float], None]
"""A per-step change of the fleet state: `modifier(state, ts_ms, dt_s)`, run after the physics.

`ts_ms` is the step's base time and `dt_s` the simulated time since the previous step. The
modifier changes `state` in place; it must use only its own randomness (seeded by its creator) so
that runs stay reproducible.
"""


@dataclass(frozen=True, slots=True)
class Frame:
    """One reading per machine at one step, as the sensors report it (noisy, rounded).

    Arrays are indexed like the fleet's machines; treat them as read-only.

    Attributes:
        ts_ms: Reading time of each machine, epoch milliseconds.
        state: Duty-cycle state of each machine (`OFF`, `IDLE`, `WORKING`, `TRAVELLING`); ground
            truth, not sent on the wire.
        is_refuelled: Machines refuelled during this step; ground truth, not sent.
        dtcs: Active fault codes by machine index; machines without codes are absent.
    """

    ts_ms: IntArray
    engine_speed_rpm: FloatArray
    oil_pressure_kpa: FloatArray
    coolant_temp_c: FloatArray
    hydraulic_oil_temp_c: FloatArray
    fuel_level_pct: FloatArray
    battery_v: FloatArray
    engine_hours: FloatArray
    lat: FloatArray
    lon: FloatArray
    load_pct: FloatArray
    state: IntArray
    is_refuelled: BoolArray
    dtcs: Mapping[int, tuple[Dtc, ...]]


def _model_table(name: str) -> FloatArray:
    """One per-model parameter as an array indexed by model index."""
    return np.array([getattr(spec, name) for spec in MODEL_SPECS.values()], dtype=np.float64)


class Fleet:
    """A vectorised simulation of a fleet; `step` advances every machine to the next reading.

    Args:
        machines: The machines, in the order of every array and frame row.
        seed: Seed of the random generator; same machines, seed and steps give the same output.
        start_ts_ms: Simulated time of the initial state, epoch milliseconds.
        offsets_ms: Per-machine offset added to each step's base time, so that machines do not
            all report on the same millisecond. Defaults to zeros.
        ambient_c: Mean ambient temperature of the sites.

    Attributes:
        modifiers: Fault-injection hook; see `StepModifier`. Run in list order on every step.
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
        self._rng = np.random.default_rng(seed)
        self._last_ts_ms = start_ts_ms
        n = len(self.machines)
        if offsets_ms is None:
            self.offsets_ms: IntArray = np.zeros(n, dtype=np.int64)
        else:
            self.offsets_ms = np.asarray(offsets_ms, dtype=np.int64)
            if self.offsets_ms.shape != (n,) or bool(np.any(self.offsets_ms < 0)):
                raise ValueError("offsets_ms needs one non-negative offset per machine")
        model_names = list(MODEL_SPECS)
        model_idx = np.array([model_names.index(m.model) for m in self.machines], dtype=np.int64)
        self._init_tables()
        self._site_lat = np.array([m.site.lat for m in self.machines])
        self._site_lon = np.array([m.site.lon for m in self.machines])
        self._m_per_deg_lon = M_PER_DEG_LAT * np.cos(np.radians(self._site_lat))
        self.state = self._initial_state(model_idx, ambient_c)

    @property
    def last_ts_ms(self) -> int:
        """Base time of the latest step (or the start time before the first step)."""
        return self._last_ts_ms

    def _init_tables(self) -> None:
        specs = list(MODEL_SPECS.values())
        self._dwell_mean_s = np.array([s.dwell_mean_s for s in specs], dtype=np.float64)
        self._cum_transitions = np.cumsum(
            np.array([s.transitions for s in specs], dtype=np.float64), axis=2
        )
        self._work_rpm_lo = np.array([s.work_rpm[0] for s in specs])
        self._work_rpm_hi = np.array([s.work_rpm[1] for s in specs])
        self._travel_rpm_lo = np.array([s.travel_rpm[0] for s in specs])
        self._travel_rpm_hi = np.array([s.travel_rpm[1] for s in specs])
        self._work_load_lo = np.array([s.work_load_pct[0] for s in specs])
        self._work_load_hi = np.array([s.work_load_pct[1] for s in specs])
        self._travel_load_lo = np.array([s.travel_load_pct[0] for s in specs])
        self._travel_load_hi = np.array([s.travel_load_pct[1] for s in specs])
        self._rated_rpm = _model_table("rated_rpm")
        self._idle_load_pct = _model_table("idle_load_pct")
        self._cycle_s = _model_table("work_cycle_s")
        self._cycle_amp_pct = _model_table("work_cycle_amp_pct")
        self._idle_lph = _model_table("idle_fuel_lph")
        self._full_lph = _model_table("full_load_fuel_lph")
        self._travel_mps = _model_table("travel_speed_mps")
        self._hyd_rise_c = _model_table("hydraulic_rise_c")

    def _initial_state(self, model_idx: IntArray, ambient_c: float) -> FleetState:
        rng, n = self._rng, len(self.machines)
        state = rng.choice(4, size=n, p=[0.3, 0.2, 0.4, 0.1]).astype(np.int64)
        running = state != OFF
        ambient = ambient_c + rng.normal(0.0, 2.0, n)
        tank_l = _model_table("tank_l")[model_idx]
        radius = np.array([m.site.radius_m for m in self.machines], dtype=np.float64)
        r = np.sqrt(rng.uniform(0.0, 1.0, n)) * np.maximum(radius - _SITE_MARGIN_M, 0.0) * 0.8
        angle = rng.uniform(0.0, 2 * math.pi, n)
        idle_rpm = np.clip(_model_table("idle_rpm")[model_idx] + rng.normal(0.0, 30.0, n), 700, 900)
        s = FleetState(
            model_idx=model_idx,
            state=state,
            dwell_left_s=rng.exponential(self._dwell_mean_s[model_idx, state]),
            engine_speed_rpm=np.zeros(n),
            oil_pressure_kpa=np.zeros(n),
            load_pct=np.zeros(n),
            coolant_temp_c=np.where(running, rng.uniform(70, 92, n), ambient + rng.uniform(0, 30, n)),
            hydraulic_oil_temp_c=np.where(
                running, rng.uniform(40, 65, n), ambient + rng.uniform(0, 20, n)
            ),
            fuel_l=tank_l * rng.uniform(0.3, 0.95, n),
            battery_v=np.zeros(n),
            engine_hours=rng.uniform(200.0, 12_000.0, n),
            x_m=r * np.cos(angle),
            y_m=r * np.sin(angle),
            heading_rad=rng.uniform(0.0, 2 * math.pi, n),
            tank_l=tank_l,
            idle_rpm=idle_rpm,
            oil_rated_kpa=rng.uniform(320.0, 430.0, n),
            ambient_c=ambient,
            rest_v=rng.uniform(24.4, 24.9, n),
            alternator_v=rng.uniform(27.4, 28.0, n),
            refuel_below_pct=rng.uniform(10.0, 25.0, n),
            site_radius_m=radius,
            session_rpm=np.zeros(n),
            session_load_pct=np.zeros(n),
            cycle_phase_rad=rng.uniform(0.0, 2 * math.pi, n),
            is_refuelled=np.zeros(n, dtype=np.bool_),
        )
        self._draw_sessions(s, np.arange(n))
        s.battery_v = np.where(running, s.alternator_v, s.rest_v)
        return s

    def _draw_sessions(self, s: FleetState, idx: IntArray) -> None:
        """Draw engine speed and load for machines `idx` entering their current state."""
        rng, k = self._rng, len(idx)
        if k == 0:
            return
        m, st = s.model_idx[idx], s.state[idx]
        u_rpm, u_load = rng.uniform(0.0, 1.0, k), rng.uniform(0.0, 1.0, k)
        work_rpm = self._work_rpm_lo[m] + u_rpm * (self._work_rpm_hi[m] - self._work_rpm_lo[m])
        trav_rpm = self._travel_rpm_lo[m] + u_rpm * (self._travel_rpm_hi[m] - self._travel_rpm_lo[m])
        work_load = self._work_load_lo[m] + u_load * (self._work_load_hi[m] - self._work_load_lo[m])
        trav_load = self._travel_load_lo[m] + u_load * (
            self._travel_load_hi[m] - self._travel_load_lo[m]
        )
        s.session_rpm[idx] = np.select(
            [st == IDLE, st == WORKING, st == TRAVELLING], [s.idle_rpm[idx], work_rpm, trav_rpm], 0.0
        )
        s.session_load_pct[idx] = np.select(
            [st == IDLE, st == WORKING, st == TRAVELLING],
            [self._idle_load_pct[m], work_load, trav_load],
            0.0,
        )

    def step(self, ts_ms: int) -> Frame:
        """Advance every machine to base time `ts_ms` and read its sensors.

        Args:
            ts_ms: Base time of this step, epoch milliseconds; each machine's reading is stamped
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
        self._transition(s, dt_s)
        self._engine(s, ts_ms, dt_s)
        self._thermal(s, dt_s)
        self._fuel(s, dt_s)
        self._move(s, dt_s)
        for modifier in self.modifiers:
            modifier(s, ts_ms, dt_s)
        return self._read(s, ts_ms)

    def _transition(self, s: FleetState, dt_s: float) -> None:
        s.dwell_left_s -= dt_s
        idx = np.flatnonzero(s.dwell_left_s <= 0.0)
        if len(idx) == 0:
            return
        cum = self._cum_transitions[s.model_idx[idx], s.state[idx]]
        u = self._rng.uniform(0.0, 1.0, len(idx))
        new_state = np.minimum(np.sum(u[:, None] >= cum, axis=1), 3).astype(np.int64)
        s.state[idx] = new_state
        mean_s = self._dwell_mean_s[s.model_idx[idx], new_state]
        s.dwell_left_s[idx] = np.maximum(self._rng.exponential(mean_s), _MIN_DWELL_S)
        self._draw_sessions(s, idx)

    def _engine(self, s: FleetState, ts_ms: int, dt_s: float) -> None:
        running = s.is_running
        n = len(running)
        m = s.model_idx
        working = s.state == WORKING
        # Digging, pumping or slewing cycles make the load swing around the session's mean.
        t_s = ts_ms / 1000.0
        swing = self._cycle_amp_pct[m] * np.sin(2 * math.pi * t_s / self._cycle_s[m] + s.cycle_phase_rad)
        load = s.session_load_pct + np.where(working, swing, 0.0) + self._rng.normal(0.0, 3.0, n)
        s.load_pct = np.where(running, np.clip(load, 0.0, 100.0), 0.0)
        # Governor droop: engine speed sags a little under load.
        rpm = s.session_rpm - 0.6 * np.where(working, swing, 0.0) + self._rng.normal(0.0, 12.0, n)
        s.engine_speed_rpm = np.where(running, np.maximum(rpm, 0.0), 0.0)
        s.engine_hours += np.where(running, dt_s / 3600.0, 0.0)
        # Oil pressure rises with speed from ~100 kPa at idle to the machine's rated pressure; cold
        # (viscous) oil reads higher, hot oil lower.
        span = np.maximum(self._rated_rpm[m] - s.idle_rpm, 1.0)
        frac = np.clip((s.engine_speed_rpm - s.idle_rpm) / span, 0.0, 1.0)
        below_idle = np.clip(s.engine_speed_rpm / s.idle_rpm, 0.0, 1.0)
        base = 100.0 * below_idle + (s.oil_rated_kpa - 100.0) * frac**0.8
        viscosity = np.clip(1.0 + 0.004 * (90.0 - s.coolant_temp_c), 0.9, 1.3)
        s.oil_pressure_kpa = np.where(running, base * viscosity, 0.0)
        target_v = np.where(running, s.alternator_v - 0.004 * s.load_pct, s.rest_v)
        tau_v = np.where(running, 20.0, 60.0)
        s.battery_v += (target_v - s.battery_v) * (1.0 - np.exp(-dt_s / tau_v))

    def _thermal(self, s: FleetState, dt_s: float) -> None:
        running = s.is_running
        load_frac = s.load_pct / 100.0
        # The thermostat holds coolant near 85-93 °C once warm; off, everything cools to ambient.
        coolant_target = np.where(running, 85.0 + 8.0 * load_frac, s.ambient_c)
        tau_coolant = np.where(running, 480.0, 2400.0)
        s.coolant_temp_c += (coolant_target - s.coolant_temp_c) * (
            1.0 - np.exp(-dt_s / tau_coolant)
        )
        hyd_target = np.where(
            running, s.ambient_c + 10.0 + self._hyd_rise_c[s.model_idx] * load_frac, s.ambient_c
        )
        tau_hyd = np.where(running, 900.0, 3600.0)
        s.hydraulic_oil_temp_c += (hyd_target - s.hydraulic_oil_temp_c) * (
            1.0 - np.exp(-dt_s / tau_hyd)
        )

    def _fuel(self, s: FleetState, dt_s: float) -> None:
        m = s.model_idx
        lph = self._idle_lph[m] + (self._full_lph[m] - self._idle_lph[m]) * s.load_pct / 100.0
        s.fuel_l = np.maximum(s.fuel_l - np.where(s.is_running, lph * dt_s / 3600.0, 0.0), 0.0)
        pct = s.fuel_l / s.tank_l * 100.0
        # Refuel when parked and low, or whatever the state once nearly empty.
        parked = s.state <= IDLE
        s.is_refuelled = ((pct < s.refuel_below_pct) & parked) | (pct < 5.0)
        idx = np.flatnonzero(s.is_refuelled)
        if len(idx):
            s.fuel_l[idx] = s.tank_l[idx] * self._rng.uniform(0.93, 0.97, len(idx))

    def _move(self, s: FleetState, dt_s: float) -> None:
        idx = np.flatnonzero(s.state == TRAVELLING)
        if len(idx) == 0:
            return
        rng, k = self._rng, len(idx)
        s.heading_rad[idx] += rng.normal(0.0, 0.3, k) * math.sqrt(dt_s)
        speed = self._travel_mps[s.model_idx[idx]] * rng.uniform(0.6, 1.0, k)
        x = s.x_m[idx] + speed * dt_s * np.cos(s.heading_rad[idx])
        y = s.y_m[idx] + speed * dt_s * np.sin(s.heading_rad[idx])
        limit = np.maximum(s.site_radius_m[idx] - 2 * _SITE_MARGIN_M, 0.0)
        r = np.hypot(x, y)
        out = r > limit
        if bool(np.any(out)):
            # At the edge of the site: stop just inside and turn back towards the centre.
            scale = np.where(out, 0.98 * limit / np.maximum(r, 1e-9), 1.0)
            x, y = x * scale, y * scale
            back = np.arctan2(-y, -x) + rng.normal(0.0, 0.5, k)
            s.heading_rad[idx] = np.where(out, back, s.heading_rad[idx])
        s.x_m[idx], s.y_m[idx] = x, y

    def _read(self, s: FleetState, ts_ms: int) -> Frame:
        rng, n = self._rng, len(s.state)
        noise = rng.normal(0.0, 1.0, (6, n))
        running = s.is_running
        oil = np.where(running, np.maximum(s.oil_pressure_kpa + 3.0 * noise[0], 0.0), 0.0)
        # GPS jitters by a metre or two, but the fix stays inside the site.
        x, y = s.x_m + 1.5 * noise[4], s.y_m + 1.5 * noise[5]
        r = np.hypot(x, y)
        limit = np.maximum(s.site_radius_m - _SITE_MARGIN_M, 0.0)
        scale = np.where(r > limit, limit / np.maximum(r, 1e-9), 1.0)
        return Frame(
            ts_ms=ts_ms + self.offsets_ms,
            engine_speed_rpm=np.round(s.engine_speed_rpm, 1),
            oil_pressure_kpa=np.round(oil, 1),
            coolant_temp_c=np.round(s.coolant_temp_c + 0.3 * noise[1], 1),
            hydraulic_oil_temp_c=np.round(s.hydraulic_oil_temp_c + 0.3 * noise[2], 1),
            # The tank sender is damped: no noise, so the level never rises between refuels.
            fuel_level_pct=np.round(np.clip(s.fuel_l / s.tank_l * 100.0, 0.0, 100.0), 2),
            battery_v=np.round(np.clip(s.battery_v + 0.04 * noise[3], 0.0, 64.0), 2),
            engine_hours=np.round(s.engine_hours, 4),
            lat=np.round(self._site_lat + y * scale / M_PER_DEG_LAT, 7),
            lon=np.round(self._site_lon + x * scale / self._m_per_deg_lon, 7),
            load_pct=np.round(s.load_pct, 1),
            state=s.state.copy(),
            is_refuelled=s.is_refuelled.copy(),
            dtcs=dict(s.dtcs),
        )

