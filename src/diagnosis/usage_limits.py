"""Thresholds of the work summaries (`[default.usage]` in the rule book), as a frozen value.

This module owns the meaning and the validation of the usage table; `rules.py` parses it like
every other table (a class or model table may override any key). Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class UsageLimits:
    """How readings become working, idle and off time, fuel used, refuels and distance.

    Attributes:
        idle_load_pct: Engine running (speed above 0) with load at or above this is working,
            below it idle.
        idle_rpm_max: Where no load is reported: running above this speed is working, at or
            below it idle.
        fuel_noise_pct: Fuel level movement within this many points is sender noise.
        refuel_min_pct: A level that climbs at least this far above the consumption anchor is
            a refuel (smaller rises are noise and never count as negative consumption).
        min_move_m: Positions closer than this to the last counted one are GPS jitter.
        meter_tolerance_h: An engine-hours increase below minus this, or above the wall-clock
            time between the readings plus this, is a meter anomaly (flagged, not summed).
    """

    idle_load_pct: float
    idle_rpm_max: float
    fuel_noise_pct: float
    refuel_min_pct: float
    min_move_m: float
    meter_tolerance_h: float

    def problem(self) -> tuple[str, str] | None:
        """The first (key, reason) that is out of range, None when all are fine."""
        checks = (
            ("idle_load_pct", 0.0 <= self.idle_load_pct <= 250.0, "must be within 0..250"),
            ("idle_rpm_max", self.idle_rpm_max >= 0.0, "must not be negative"),
            ("fuel_noise_pct", self.fuel_noise_pct >= 0.0, "must not be negative"),
            ("refuel_min_pct", self.refuel_min_pct > self.fuel_noise_pct,
             "must be above fuel_noise_pct"),
            ("min_move_m", self.min_move_m > 0.0, "must be positive"),
            ("meter_tolerance_h", self.meter_tolerance_h >= 0.0, "must not be negative"),
        )  # fmt: skip
        for key, ok, reason in checks:
            if not ok:
                return key, reason
        return None
