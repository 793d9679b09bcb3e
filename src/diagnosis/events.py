"""What the diagnosis engine says: alarm events, frozen values.

This module owns the vocabulary shared by the engine, the knowledge base, the store and the API:
fault codes, severities and the three transitions of an alarm episode. It holds no behaviour.

An episode is one stretch of time during which one fault is active on one machine. The engine
emits `RAISED` when a fault's raise condition has persisted long enough, `UPDATED` at most once
per batch while it stays active (last reading, readings counted, worst value), and `CLEARED` when
its clear condition (with hysteresis) has persisted. The store keeps at most one open episode per
(machine, fault) and applies events idempotently.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final


class Severity(StrEnum):
    """How urgently an alarm needs a person, worst first."""

    CRITICAL = "critical"  # stop the machine now: damage within minutes
    MAJOR = "major"  # act today: the machine works but degrades or risks a breakdown
    MINOR = "minor"  # plan it: the next service visit will do
    INFO = "info"  # worth knowing, no action needed


class Transition(StrEnum):
    """What happened to an episode."""

    RAISED = "raised"
    UPDATED = "updated"
    CLEARED = "cleared"


# Fault codes of the rules and the model. J1939 fault codes have their own form, `dtc_code`.
LOW_OIL_PRESSURE: Final = "low_oil_pressure"
ENGINE_OVERHEAT: Final = "engine_overheat"
COOLANT_RISING_FAST: Final = "coolant_rising_fast"
HYDRAULIC_OVERHEAT: Final = "hydraulic_overheat"
FUEL_DROP_ENGINE_OFF: Final = "fuel_drop_engine_off"
CHARGING_FAILURE: Final = "charging_failure"
ENGINE_POWER_LOSS: Final = "engine_power_loss"
MACHINE_SILENT: Final = "machine_silent"
OUTSIDE_SITE: Final = "outside_site"
UNEXPLAINED_ANOMALY: Final = "unexplained_anomaly"

RULE_FAULTS: Final = (
    LOW_OIL_PRESSURE,
    ENGINE_OVERHEAT,
    COOLANT_RISING_FAST,
    HYDRAULIC_OVERHEAT,
    FUEL_DROP_ENGINE_OFF,
    CHARGING_FAILURE,
    ENGINE_POWER_LOSS,
    MACHINE_SILENT,
    OUTSIDE_SITE,
)
"""Faults raised by rules, in a fixed order (the engine's state arrays follow it)."""


def dtc_code(spn: int, fmi: int) -> str:
    """The fault code of an active J1939 trouble code, e.g. `dtc_100_1`."""
    return f"dtc_{spn}_{fmi}"


def parse_dtc_code(fault: str) -> tuple[int, int] | None:
    """`(spn, fmi)` of a J1939 fault code, or None for any other fault code."""
    parts = fault.split("_")
    if len(parts) != 3 or parts[0] != "dtc" or not (parts[1].isdigit() and parts[2].isdigit()):
        return None
    return int(parts[1]), int(parts[2])


@dataclass(frozen=True, slots=True)
class AlarmEvent:
    """One transition of one alarm episode.

    Attributes:
        machine_id: The machine.
        fault: Fault code (`low_oil_pressure`, `dtc_100_1`, ...); the knowledge base explains it.
        transition: Raised, updated or cleared.
        ts_ms: Reading time the transition belongs to: for `RAISED`, the reading at which the
            condition was confirmed; for `UPDATED`, the last reading of the batch still meeting
            it; for `CLEARED`, the reading at which the clear condition was confirmed.
        signal: The signal that decided (`oil_pressure_kpa`), None for fault codes and silence.
        value: The deciding signal's value at `ts_ms` (None when there is none).
        worst: The worst value of the deciding signal seen in this batch while active.
        higher_is_worse: Direction of `worst` (overheating: True; low oil pressure: False).
        count: Readings (or windows, for the model) that met the condition in this batch.
        detail: One human sentence with the figures, e.g. "oil pressure 85 kPa at 1,900 rpm,
            below 180 kPa".
        spn: J1939 SPN of a fault code (or of the deciding signal), else None.
        fmi: J1939 FMI of a fault code, else None.
        occurrences: J1939 occurrence count reported by the controller, for fault codes.
        deviations: For the anomaly model: signals that deviate most, as (signal, z-score),
            largest absolute first. Empty for rules.
    """

    machine_id: str
    fault: str
    transition: Transition
    ts_ms: int
    signal: str | None = None
    value: float | None = None
    worst: float | None = None
    higher_is_worse: bool = True
    count: int = 1
    detail: str = ""
    spn: int | None = None
    fmi: int | None = None
    occurrences: int | None = None
    deviations: tuple[tuple[str, float], ...] = ()
