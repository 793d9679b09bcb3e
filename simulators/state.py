"""Values shared by the fleet model, the wire encoder and fault modifiers.

This module owns the shapes of simulation state (`FleetState`, mutable, for the model and its
modifiers) and of its output (`Frame`, one reading per machine), plus the fault-injection hook's
signature (`StepModifier`). It holds no behaviour.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

OFF: Final = 0
IDLE: Final = 1
WORKING: Final = 2
TRAVELLING: Final = 3
STATE_NAMES: Final = ("off", "idle", "working", "travelling")

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
"""Wire names of the rows of `Frame.values`, in order."""

_ROW: Final = {name: i for i, name in enumerate(WIRE_SIGNALS)}


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
    """The mutable state of every machine, one array element per machine, in fleet order.

    Values are true physical quantities; sensor noise and rounding come when a frame is read.
    Per-machine parameters are constant unless a fault modifier changes them.
    """

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
    # Per-machine parameters.
    tank_l: FloatArray
    idle_rpm: FloatArray
    rated_rpm: FloatArray
    oil_rated_kpa: FloatArray
    ambient_c: FloatArray
    rest_v: FloatArray
    alternator_v: FloatArray
    refuel_below_pct: FloatArray
    site_radius_m: FloatArray
    idle_fuel_lph: FloatArray
    full_load_fuel_lph: FloatArray
    hydraulic_rise_c: FloatArray
    travel_speed_mps: FloatArray
    cycle_rad_per_s: FloatArray
    cycle_amp_pct: FloatArray
    cycle_phase_rad: FloatArray
    # Drawn whenever a machine enters a state.
    session_rpm: FloatArray
    session_load_pct: FloatArray
    dtcs: dict[int, tuple[Dtc, ...]] = field(default_factory=dict)
    """Active fault codes by machine index; machines without codes are absent."""


StepModifier = Callable[[FleetState, int, float], None]
"""A per-step change of the fleet state: `modifier(state, ts_ms, dt_s)`, run after the physics.

`ts_ms` is the step's base time and `dt_s` the simulated time since the previous step. The
modifier changes `state` in place and must draw only on its own seeded randomness, so that runs
stay reproducible.
"""


@dataclass(frozen=True, slots=True)
class Frame:
    """One reading per machine at one step, as the sensors report it (noisy, rounded).

    Arrays are indexed like the fleet's machines; treat them as read-only.

    Attributes:
        ts_ms: Reading time of each machine, epoch milliseconds.
        values: Signal values, one row per name of `WIRE_SIGNALS`, one column per machine.
        state: Duty-cycle state of each machine (`OFF` ... `TRAVELLING`); ground truth, not sent.
        is_refuelled: Machines refuelled during this step; ground truth, not sent.
        dtcs: Active fault codes by machine index; machines without codes are absent.
    """

    ts_ms: IntArray
    values: FloatArray
    state: IntArray
    is_refuelled: BoolArray
    dtcs: Mapping[int, tuple[Dtc, ...]]

    def signal(self, name: str) -> FloatArray:
        """The values of one signal, by wire name (`oil_pressure_kpa`), one per machine."""
        row: FloatArray = self.values[_ROW[name]]
        return row
