"""Fault kinds and `FaultSpec`: what one fault to inject is, and its JSON object form.

This module owns the vocabulary the other fault modules share: the kinds (`FaultKind`, equal to
the backend's fault codes), their forms and anomaly variants, the constants plans draw from
(`GRADUAL_KINDS`, `DEFAULT_RAMP_S`, `DEFAULT_DURATION_S`, `COMMON_DTCS`), `FaultSpec` with its
checks and its plan-file object, and the typed readers of JSON values that the spec and the
ground-truth record share. It is pure. The kinds' effects and units are tabled in the package
docstring (`simulators.faults`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal, cast, get_args

FaultKind = Literal[
    "low_oil_pressure",
    "engine_overheat",
    "coolant_rising_fast",
    "hydraulic_overheat",
    "fuel_drop_engine_off",
    "charging_failure",
    "engine_power_loss",
    "machine_silent",
    "outside_site",
    "unexplained_anomaly",
    "dtc",
]
FAULT_KINDS: Final[tuple[FaultKind, ...]] = get_args(FaultKind)
FAULT_DESCRIPTIONS: Final[Mapping[FaultKind, str]] = {
    "low_oil_pressure": "worn pump or a leak: oil pressure falls to 35-45 % while running",
    "engine_overheat": "clogged radiator, fan belt or coolant loss: coolant climbs to 108-115 °C",
    "coolant_rising_fast": "sudden coolant loss: coolant climbs 2-4 °C/min, below overheat",
    "hydraulic_overheat": "oil cooler clogged or relief valve open: hydraulic oil to 98-110 °C",
    "fuel_drop_engine_off": "theft or a leak: the tank loses fuel while the engine is off",
    "charging_failure": "alternator or belt: the battery sinks below 25.5 V while running",
    "engine_power_loss": "air filter or injector: speed sags under full load while working",
    "machine_silent": "the telematics unit loses power: nothing is published while working",
    "outside_site": "carried off on a truck: the GPS fix leaves the site by 3-8 km",
    "unexplained_anomaly": "oil pressure high, overcharging, or oil pressure too low for the "
    "engine speed though above every limit: no rule covers it, a trained anomaly model sees it",
    "dtc": "a J1939 fault code (spn, fmi) in every reading, steady or flapping",
}
"""One line per kind for `--help`; the package docstring tables the effects in full."""
FaultForm = Literal["sudden", "gradual"]
AnomalyVariant = Literal["oil_pressure_high", "overcharging", "oil_pressure_low_for_speed"]
ANOMALY_VARIANTS: Final[tuple[AnomalyVariant, ...]] = get_args(AnomalyVariant)
ParamValue = float | int | str | bool

GRADUAL_KINDS: Final[frozenset[FaultKind]] = frozenset(
    {
        "low_oil_pressure",
        "engine_overheat",
        "hydraulic_overheat",
        "fuel_drop_engine_off",
        "charging_failure",
        "engine_power_loss",
        "unexplained_anomaly",
    }
)
"""Kinds that have a gradual form; the others are sudden only."""

DEFAULT_RAMP_S: Final = 1800.0
DEFAULT_DURATION_S: Final[Mapping[FaultKind, float]] = {
    "low_oil_pressure": 7200.0,
    "engine_overheat": 7200.0,
    "coolant_rising_fast": 7200.0,
    "hydraulic_overheat": 7200.0,
    "fuel_drop_engine_off": 6 * 3600.0,
    "charging_failure": 7200.0,
    "engine_power_loss": 7200.0,
    "machine_silent": 3600.0,
    "outside_site": 3600.0,
    "unexplained_anomaly": 7200.0,
    "dtc": 1800.0,
}
"""Planned window of each kind in `plan_faults` (at most half the horizon)."""

COMMON_DTCS: Final[tuple[tuple[int, int], ...]] = (
    (97, 15),  # water in fuel, above normal
    (636, 2),  # crankshaft position sensor, erratic
    (3251, 0),  # diesel particulate filter differential pressure high
    (4364, 18),  # SCR conversion efficiency low
    (629, 12),  # engine controller, bad device
    (1569, 31),  # engine protection torque derate
)
"""(spn, fmi) pairs `plan_faults` draws stand-alone codes from."""

_MAX_OC: Final = 126


@dataclass(frozen=True, slots=True)
class FaultSpec:
    """One fault to inject: what, on which machine, when, how strong.

    Attributes:
        kind: Fault kind (equal to the backend's fault code, `dtc` for J1939 codes).
        machine_id: The faulty machine.
        start_ts_ms: Start of the planned window, epoch milliseconds (base step time).
        duration_s: Length of the planned window.
        form: `sudden` or `gradual` (only for `GRADUAL_KINDS`).
        ramp_s: How long a gradual effect takes to build; default `DEFAULT_RAMP_S`.
        magnitude: Size of the effect, in the kind's unit (package table); None draws it.
        rate: Speed of the effect, in the kind's unit (package table); None draws it.
        variant: unexplained_anomaly only: `oil_pressure_high`, `overcharging` or
            `oil_pressure_low_for_speed`; None draws.
        spn: dtc only: Suspect Parameter Number.
        fmi: dtc only: Failure Mode Identifier.
        oc: dtc only: occurrence count of the first activation (each flap adds one).
        flapping: dtc only: toggle the code on and off every `flap_readings` readings.
        flap_readings: dtc only: readings per on or off stretch when flapping.
    """

    kind: FaultKind
    machine_id: str
    start_ts_ms: int
    duration_s: float
    form: FaultForm = "sudden"
    ramp_s: float | None = None
    magnitude: float | None = None
    rate: float | None = None
    variant: AnomalyVariant | None = None
    spn: int | None = None
    fmi: int | None = None
    oc: int = 1
    flapping: bool = False
    flap_readings: int = 3

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; kinds: {', '.join(FAULT_KINDS)}")
        if self.form not in get_args(FaultForm):
            raise ValueError(f"form must be sudden or gradual, not {self.form!r}")
        if self.form == "gradual" and self.kind not in GRADUAL_KINDS:
            raise ValueError(f"{self.kind} has no gradual form")
        if not self.duration_s > 0 or (self.ramp_s is not None and not self.ramp_s > 0):
            raise ValueError("duration_s and ramp_s must be positive")
        if self.variant is not None and (
            self.kind != "unexplained_anomaly" or self.variant not in ANOMALY_VARIANTS
        ):
            raise ValueError(f"variant is one of {', '.join(ANOMALY_VARIANTS)}, anomalies only")
        self._check_dtc()

    def _check_dtc(self) -> None:
        if self.kind != "dtc":
            if self.spn is not None or self.fmi is not None or self.flapping:
                raise ValueError("spn, fmi and flapping belong to kind dtc")
            return
        if self.spn is None or self.fmi is None:
            raise ValueError("a dtc fault needs spn and fmi")
        if not (0 <= self.spn < 1 << 19 and 0 <= self.fmi <= 31 and 0 <= self.oc <= _MAX_OC):
            raise ValueError("spn must be 0..524287, fmi 0..31 and oc 0..126")
        if self.flap_readings < 1:
            raise ValueError("flap_readings must be at least 1")

    @property
    def end_ts_ms(self) -> int:
        """End of the planned window (exclusive), epoch milliseconds."""
        return self.start_ts_ms + round(self.duration_s * 1000)

    @property
    def fault_code(self) -> str:
        """The backend's fault code: the kind, or `dtc_<spn>_<fmi>`."""
        return f"dtc_{self.spn}_{self.fmi}" if self.kind == "dtc" else self.kind

    def to_json(self) -> dict[str, object]:
        """The spec as a JSON object, without fields left at their defaults."""
        doc: dict[str, object] = {
            "kind": self.kind,
            "machine_id": self.machine_id,
            "start_ts_ms": self.start_ts_ms,
            "duration_s": self.duration_s,
            "form": self.form,
        }
        optional = {
            "ramp_s": self.ramp_s,
            "magnitude": self.magnitude,
            "rate": self.rate,
            "variant": self.variant,
            "spn": self.spn,
            "fmi": self.fmi,
        }
        doc.update((key, value) for key, value in optional.items() if value is not None)
        if self.kind == "dtc":
            doc.update(oc=self.oc, flapping=self.flapping, flap_readings=self.flap_readings)
        return doc

    @classmethod
    def from_json(cls, doc: Mapping[str, object], *, run_start_ts_ms: int = 0) -> FaultSpec:
        """A spec from a JSON object (see `load_plan` for the keys).

        Args:
            doc: The object. The window is `start_ts_ms` (epoch ms) or `start_offset_s`
                (seconds after `run_start_ts_ms`), and `duration_s` or `end_ts_ms`.
            run_start_ts_ms: What `start_offset_s` counts from.

        Raises:
            ValueError: A missing, unknown or mistyped key, or values that make no sense.
        """
        unknown = set(doc) - _SPEC_KEYS
        if unknown:
            raise ValueError(f"unknown fault keys: {', '.join(sorted(unknown))}")
        if ("start_ts_ms" in doc) == ("start_offset_s" in doc):
            raise ValueError("a fault needs one of start_ts_ms and start_offset_s")
        if "start_ts_ms" in doc:
            start_ts_ms = _json_int(doc, "start_ts_ms")
        else:
            start_ts_ms = run_start_ts_ms + round(_json_float(doc, "start_offset_s") * 1000)
        if ("duration_s" in doc) == ("end_ts_ms" in doc):
            raise ValueError("a fault needs one of duration_s and end_ts_ms")
        if "start_offset_s" in doc and "end_ts_ms" in doc:
            raise ValueError("a fault with start_offset_s gives its duration_s, not end_ts_ms")
        if "duration_s" in doc:
            duration_s = _json_float(doc, "duration_s")
        else:
            duration_s = (_json_int(doc, "end_ts_ms") - start_ts_ms) / 1000.0
        return cls(
            kind=cast("FaultKind", _json_str(doc, "kind")),
            machine_id=_json_str(doc, "machine_id"),
            start_ts_ms=start_ts_ms,
            duration_s=duration_s,
            form=cast("FaultForm", doc.get("form", "sudden")),
            ramp_s=_json_float(doc, "ramp_s") if "ramp_s" in doc else None,
            magnitude=_json_float(doc, "magnitude") if "magnitude" in doc else None,
            rate=_json_float(doc, "rate") if "rate" in doc else None,
            variant=cast("AnomalyVariant | None", doc.get("variant")),
            spn=_json_int(doc, "spn") if "spn" in doc else None,
            fmi=_json_int(doc, "fmi") if "fmi" in doc else None,
            oc=_json_int(doc, "oc") if "oc" in doc else 1,
            flapping=bool(doc.get("flapping", False)),
            flap_readings=_json_int(doc, "flap_readings") if "flap_readings" in doc else 3,
        )


_SPEC_KEYS: Final = frozenset(
    {
        *FaultSpec.__dataclass_fields__,
        "start_offset_s",
        "end_ts_ms",
    }
)


def _json_int(doc: Mapping[str, object], key: str) -> int:
    value = doc[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{key} must be an integer, not {value!r}")  # noqa: TRY004 - bad data
    return value


def _json_float(doc: Mapping[str, object], key: str) -> float:
    value = doc[key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{key} must be a number, not {value!r}")  # noqa: TRY004 - bad data
    return float(value)


def _json_str(doc: Mapping[str, object], key: str) -> str:
    value = doc.get(key)
    if not isinstance(value, str):
        raise ValueError(f"{key} must be a string, not {value!r}")  # noqa: TRY004 - bad data
    return value
