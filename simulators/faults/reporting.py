"""The faults in what a machine reports rather than in its engine: silence, location, codes.

This module owns machine_silent (the telematics unit loses power: the machine's readings are
dropped from the published frame), outside_site (the published GPS fix leaves the site and comes
back; the fleet's own position is untouched) and dtc (a J1939 code active in every reading, or
flapping). Their effects and criteria are tabled in the package docstring (`simulators.faults`).
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np

from simulators.faults.effect import _Fault, _FrameEdit
from simulators.faults.spec import _MAX_OC, FaultSpec
from simulators.fleet import M_PER_DEG_LAT
from simulators.machines import MachineSpec
from simulators.state import WIRE_SIGNALS, WORKING, BoolArray, Dtc, FleetState, Frame

_ROWS: Final = {name: i for i, name in enumerate(WIRE_SIGNALS)}


class _MachineSilent(_Fault):
    """The telematics unit loses power while the machine works: nothing is published."""

    criterion = "first reading not published"

    def ready(self, state: FleetState, ts_ms: int, dt_s: float) -> bool:
        return state.state[self.idx] == WORKING and self.window_left_s(ts_ms) >= 600.0

    def edit(self, edit: _FrameEdit) -> None:
        if self.in_effect:
            edit.is_sent[self.idx] = False

    def visible(self, frame: Frame, is_sent: BoolArray) -> bool:
        return not is_sent[self.idx]


class _OutsideSite(_Fault):
    """Carried off on a truck: the GPS fix leaves the site, stays away, then comes back."""

    criterion = "distance from the site centre > radius + 100 m"

    def __init__(
        self, spec: FaultSpec, idx: int, machine: MachineSpec, rng: np.random.Generator
    ) -> None:
        super().__init__(spec, idx, rng)
        self.distance_m = self.draw(spec.magnitude, 3000.0, 8000.0)
        self.speed_mps = self.draw(spec.rate, 10.0, 20.0)
        self.bearing_rad = self.draw(None, 0.0, 2 * math.pi)
        self.params.update(
            distance_m=self.distance_m, speed_mps=self.speed_mps, bearing_rad=self.bearing_rad
        )
        self.site = machine.site
        self.away_m = 0.0

    def _away_m(self, ts_ms: int) -> float:
        out_s = (min(ts_ms, self.spec.end_ts_ms) - self.effect_ts_ms) / 1000.0
        away = min(self.speed_mps * out_s, self.distance_m)
        back_s = max(ts_ms - self.spec.end_ts_ms, 0) / 1000.0
        return max(away - self.speed_mps * back_s, 0.0)

    def finished(self, state: FleetState, ts_ms: int, dt_s: float) -> bool:
        return ts_ms > self.spec.end_ts_ms and self._away_m(ts_ms) <= 0.0

    def apply(self, state: FleetState, ts_ms: int, dt_s: float) -> None:
        # The fleet keeps the machine's own position (it moves it only within its site); the
        # journey exists in the published fix alone.
        self.away_m = self._away_m(ts_ms)

    def edit(self, edit: _FrameEdit) -> None:
        if not self.in_effect or self.away_m <= 0.0:
            return
        values, row = edit.values(), _ROWS
        north_m = self.away_m * math.cos(self.bearing_rad)
        east_m = self.away_m * math.sin(self.bearing_rad)
        m_per_deg_lon = M_PER_DEG_LAT * math.cos(math.radians(self.site.lat))
        lat = values[row["lat"], self.idx] + north_m / M_PER_DEG_LAT
        lon = values[row["lon"], self.idx] + east_m / m_per_deg_lon
        values[row["lat"], self.idx] = round(lat, 7)
        values[row["lon"], self.idx] = round(lon, 7)

    def visible(self, frame: Frame, is_sent: BoolArray) -> bool:
        north_m = (self.signal(frame, "lat") - self.site.lat) * M_PER_DEG_LAT
        east_m = (self.signal(frame, "lon") - self.site.lon) * M_PER_DEG_LAT
        east_m *= math.cos(math.radians(self.site.lat))
        return math.hypot(north_m, east_m) > self.site.radius_m + 100.0


class _ActiveCode(_Fault):
    """A J1939 code present in every reading, or flapping on and off every few readings."""

    criterion = "first reading carrying the code"

    def __init__(self, spec: FaultSpec, idx: int, rng: np.random.Generator) -> None:
        super().__init__(spec, idx, rng)
        assert spec.spn is not None  # checked by FaultSpec
        assert spec.fmi is not None
        self.key = (spec.spn, spec.fmi)
        self.oc = spec.oc
        self.steps = 0
        self.is_on = False
        self.params.update(spn=spec.spn, fmi=spec.fmi, oc=spec.oc, flapping=spec.flapping)
        if spec.flapping:
            self.params["flap_readings"] = spec.flap_readings

    def _set(self, state: FleetState, code: Dtc | None) -> None:
        others = tuple(c for c in state.dtcs.get(self.idx, ()) if (c.spn, c.fmi) != self.key)
        codes = (*others, code) if code is not None else others
        if codes:
            state.dtcs[self.idx] = codes
        else:
            state.dtcs.pop(self.idx, None)

    def apply(self, state: FleetState, ts_ms: int, dt_s: float) -> None:
        n = self.spec.flap_readings
        on = not self.spec.flapping or (self.steps // n) % 2 == 0
        if on and not self.is_on and self.steps > 0:
            self.oc = min(self.oc + 1, _MAX_OC)  # J1939 counts every return to active
        self.is_on = on
        self.steps += 1
        self._set(state, Dtc(spn=self.key[0], fmi=self.key[1], oc=self.oc) if on else None)

    def release(self, state: FleetState) -> None:
        self._set(state, None)

    def visible(self, frame: Frame, is_sent: BoolArray) -> bool:
        codes = frame.dtcs.get(self.idx, ())
        return any((c.spn, c.fmi) == self.key for c in codes)
