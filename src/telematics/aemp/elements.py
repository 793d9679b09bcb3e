"""The data elements of ISO 15143-3 this server speaks, and values of them. Pure: no I/O library.

An `Element` is one data element as it appears in a document: its name, the instant of the
reading it came from (the `datetime` attribute) and its children in the standard's order. The
store hands over plain values; the builders here turn them into elements, so that XML and JSON
(`document`) are written from one value and cannot disagree.

Series names arrive in the path as fleet tools spell them: `SERIES_ALIASES` maps every spelling
we accept (case-insensitive) to one `Series`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

Value = str | float | int | bool


@dataclass(frozen=True, slots=True)
class Element:
    """One data element.

    Attributes:
        name: Its name in the standard (`Location`, `CumulativeOperatingHours`).
        ts: The reading it came from (the `datetime` attribute); None for the header.
        fields: Its children in document order, as (name, value).
    """

    name: str
    ts: datetime | None
    fields: tuple[tuple[str, Value], ...]


@dataclass(frozen=True, slots=True)
class HeaderValues:
    """What identifies a machine: from the registry."""

    machine_id: str
    model: str
    oem: str | None
    serial_number: str | None


@dataclass(frozen=True, slots=True)
class LatestValues:
    """The signals of a machine's newest reading that the snapshot shows; None where absent."""

    ts: datetime
    lat: float | None
    lon: float | None
    engine_hours: float | None
    fuel_level_pct: float | None
    running: bool | None


class Series(StrEnum):
    """The time series of the standard this server knows, by their canonical names."""

    LOCATIONS = "Locations"
    OPERATING_HOURS = "CumulativeOperatingHours"
    FUEL_REMAINING = "FuelRemaining"
    ENGINE_CONDITION = "EngineCondition"
    FAULT_CODES = "FaultCodes"
    CAUTION_CODES = "CautionCodes"
    IDLE_HOURS = "CumulativeIdleHours"
    FUEL_USED = "FuelUsed"
    FUEL_USED_LAST24 = "FuelUsedLast24"
    DISTANCE = "Distance"


ITEM_NAME: dict[Series, str] = {
    Series.LOCATIONS: "Location",
    Series.OPERATING_HOURS: "CumulativeOperatingHours",
    Series.FUEL_REMAINING: "FuelRemaining",
    Series.ENGINE_CONDITION: "EngineCondition",
    Series.FAULT_CODES: "FaultCode",
    Series.CAUTION_CODES: "CautionCode",
    Series.IDLE_HOURS: "CumulativeIdleHours",
    Series.FUEL_USED: "FuelUsed",
    Series.FUEL_USED_LAST24: "FuelUsedLast24",
    Series.DISTANCE: "Distance",
}
"""The element each point of a series is written as."""

_ALIASES: dict[Series, tuple[str, ...]] = {
    Series.LOCATIONS: ("Location", "Positions", "Position"),
    Series.OPERATING_HOURS: ("OperatingHours", "CumulativeOperatingHour", "EngineHours", "Hours"),
    Series.FUEL_REMAINING: ("FuelRemainingRatio", "FuelLevel", "FuelRemainingPercent"),
    Series.ENGINE_CONDITION: ("EngineStatus", "EngineRunning", "EngineConditions"),
    Series.FAULT_CODES: ("FaultCode", "DiagnosticCodes", "DTC", "DTCs"),
    Series.CAUTION_CODES: ("CautionCode", "Alarms", "Alerts"),
    Series.IDLE_HOURS: ("IdleHours", "CumulativeIdleHour"),
    Series.FUEL_USED: ("CumulativeFuelUsed", "FuelConsumed", "FuelUsage"),
    Series.FUEL_USED_LAST24: ("FuelUsed24", "FuelUsedLast24Hours", "FuelUsedLast24h"),
    Series.DISTANCE: ("Odometer", "CumulativeDistance"),
}

SERIES_ALIASES: dict[str, Series] = {
    name.lower(): series for series in Series for name in (series.value, *_ALIASES.get(series, ()))
}
"""Every accepted spelling of a series name, lower case, to its series."""


def series_named(name: str) -> Series | None:
    """The series a path's `dataElement` names, whatever the vendor's spelling; None if none."""
    return SERIES_ALIASES.get(name.lower())


def header(values: HeaderValues) -> Element:
    """The `EquipmentHeader`: `EquipmentID` is our machine id, `SerialNumber` and `PIN` both the
    registry's serial number (it holds "serial number or PIN"); absent fields are left out.
    """
    fields: list[tuple[str, Value]] = []
    if values.oem:
        fields.append(("OEMName", values.oem))
    fields.append(("Model", values.model))
    fields.append(("EquipmentID", values.machine_id))
    if values.serial_number:
        fields += [("SerialNumber", values.serial_number), ("PIN", values.serial_number)]
    return Element("EquipmentHeader", None, tuple(fields))


def location(ts: datetime, lat: float, lon: float) -> Element:
    """`Location`: WGS 84 degrees."""
    return Element("Location", ts, (("Latitude", lat), ("Longitude", lon)))


def operating_hours(ts: datetime, hours: float) -> Element:
    """`CumulativeOperatingHours`: the engine hour meter (J1939 SPN 247)."""
    return Element("CumulativeOperatingHours", ts, (("Hour", hours),))


def fuel_remaining(ts: datetime, percent: float, tank_l: float | None) -> Element:
    """`FuelRemaining`: the fuel level in percent (SPN 96), with the tank size in litres when the
    registry knows it.
    """
    fields: tuple[tuple[str, Value], ...] = (("Percent", percent),)
    if tank_l is not None:
        fields += (("FuelTankCapacity", tank_l), ("FuelTankCapacityUnits", "litre"))
    return Element("FuelRemaining", ts, fields)


def engine(name: str, ts: datetime, *, running: bool) -> Element:
    """`EngineStatus` (snapshot) or `EngineCondition` (series): running when the engine speed
    (SPN 190) of the reading is above 0 (the store says, `store._RUNNING`).
    """
    return Element(name, ts, (("Running", running),))


def fault_code(ts: datetime, spn: int, fmi: int, occurrences: int) -> Element:
    """`FaultCode`: one active J1939 diagnostic trouble code of a reading."""
    return Element("FaultCode", ts, (("SPN", spn), ("FMI", fmi), ("OccurrenceCount", occurrences)))


def caution_code(ts: datetime, fault: str, title: str, severity: str, *, active: bool) -> Element:
    """`CautionCode`: one alarm episode of the diagnosis, at the time it was raised."""
    return Element(
        "CautionCode",
        ts,
        (
            ("CautionCodeIdentifier", fault),
            ("CautionCodeDescription", title),
            ("Severity", severity),
            ("Active", active),
        ),
    )


def snapshot(latest: LatestValues | None, tank_l: float | None) -> list[Element]:
    """The snapshot elements of a machine's newest reading, in the standard's order.

    An element the newest reading does not carry is left out (not written empty): the snapshot
    is the newest reading, never a mix of readings. The elements that come from work summaries
    are `summary_elements`'s.
    """
    if latest is None:
        return []
    found: list[Element] = []
    if latest.lat is not None and latest.lon is not None:
        found.append(location(latest.ts, latest.lat, latest.lon))
    if latest.engine_hours is not None:
        found.append(operating_hours(latest.ts, latest.engine_hours))
    if latest.fuel_level_pct is not None:
        found.append(fuel_remaining(latest.ts, latest.fuel_level_pct, tank_l))
    if latest.running is not None:
        found.append(engine("EngineStatus", latest.ts, running=latest.running))
    return found


@dataclass(frozen=True, slots=True)
class SummaryValues:
    """A machine's work-summary figures at one instant, cumulative since its first rolled-up
    slot (not the machine's lifetime counters).

    Attributes:
        ts: The end of the newest slot summed, or the rollup tail's reading time when that is
            inside it (the `datetime` of every element made from these values).
        idle_s: Idle seconds summed.
        fuel_used_pct: Fuel used, in points of the tank, summed.
        fuel_used_last24_pct: The same over the 96 slots (24 h) ending with the newest one.
        distance_m: Metres driven, summed.
        tank_l: The machine's tank in litres; None (or not above 0) leaves the fuel out.
    """

    ts: datetime
    idle_s: float
    fuel_used_pct: float
    fuel_used_last24_pct: float
    distance_m: float
    tank_l: float | None


def _litres(pct: float, tank_l: float) -> float:
    return round(pct * tank_l / 100, 3)


def summary(values: SummaryValues) -> list[Element]:
    """`CumulativeIdleHours` (`Hour`), `FuelUsed` and `FuelUsedLast24` (`FuelUnits` litre,
    `FuelConsumed`) and `Distance` (`OdometerUnits` kilometre, `Odometer`), rounded to 0.001;
    the fuel elements only for a machine whose tank size is known.
    """
    ts = values.ts
    found = [Element("CumulativeIdleHours", ts, (("Hour", round(values.idle_s / 3600, 3)),))]
    tank = values.tank_l
    if tank is not None and tank > 0:
        for name, pct in (
            ("FuelUsed", values.fuel_used_pct),
            ("FuelUsedLast24", values.fuel_used_last24_pct),
        ):
            found.append(
                Element(name, ts, (("FuelUnits", "litre"), ("FuelConsumed", _litres(pct, tank))))
            )
    found.append(
        Element(
            "Distance",
            ts,
            (("OdometerUnits", "kilometre"), ("Odometer", round(values.distance_m / 1000, 3))),
        )
    )
    return found


def summary_point(series: Series, values: SummaryValues) -> Element | None:
    """The point of a work-summary series at `values`; None where the series has no value there
    (fuel without a tank size).
    """
    for element in summary(values):
        if element.name == ITEM_NAME[series]:
            return element
    return None
