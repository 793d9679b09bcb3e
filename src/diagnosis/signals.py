"""The signal catalogue: every wire signal with its unit, J1939 SPN and physical range.

This module owns the list and the order of the signals. Columnar batches, the `readings` table
and the decoder all follow `SIGNALS` in this order, so adding a signal means adding it here and a
column in a migration, nothing else.

The physical range is what a working sensor on a construction machine can report, not the J1939
transmission range (which is far wider, e.g. 0-3212.75 V for battery potential). A value outside
it is a broken sensor or a broken encoder, and the reading is refused rather than stored.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Signal:
    """One measured quantity as it appears on the wire and in the store.

    Attributes:
        name: Wire and column name; it carries the unit (`oil_pressure_kpa`).
        unit: Unit symbol for display.
        spn: J1939 Suspect Parameter Number of the quantity.
        min_value: Lowest physically plausible value, inclusive.
        max_value: Highest physically plausible value, inclusive.
        description: Human description.
    """

    name: str
    unit: str
    spn: int
    min_value: float
    max_value: float
    description: str


SIGNALS: tuple[Signal, ...] = (
    Signal("engine_speed_rpm", "rpm", 190, 0.0, 8031.875, "Engine speed"),
    Signal("oil_pressure_kpa", "kPa", 100, 0.0, 1000.0, "Engine oil pressure"),
    Signal("coolant_temp_c", "°C", 110, -40.0, 210.0, "Engine coolant temperature"),
    Signal("hydraulic_oil_temp_c", "°C", 1638, -40.0, 210.0, "Hydraulic oil temperature"),
    Signal("fuel_level_pct", "%", 96, 0.0, 100.0, "Fuel level"),
    Signal("battery_v", "V", 168, 0.0, 64.0, "Battery potential"),
    Signal("engine_hours", "h", 247, 0.0, 1_000_000.0, "Total engine hours"),
    Signal("lat", "°", 584, -90.0, 90.0, "Latitude"),
    Signal("lon", "°", 585, -180.0, 180.0, "Longitude"),
    Signal("load_pct", "%", 92, 0.0, 250.0, "Engine percent load at current speed"),
)
"""All signals, in column order."""

SIGNAL_NAMES: tuple[str, ...] = tuple(s.name for s in SIGNALS)
SIGNAL_INDEX: dict[str, int] = {s.name: i for i, s in enumerate(SIGNALS)}

# J1939 field limits for diagnostic trouble codes (DM1): SPN is 19 bits, FMI 5 bits and the
# occurrence count 7 bits, where 127 means "not available".
DTC_SPN_MAX = (1 << 19) - 1
DTC_FMI_MAX = 31
DTC_OC_MAX = 126
