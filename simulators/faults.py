"""Fault injection with ground truth: which machine goes wrong, how, and when it became visible.

This module owns the simulated faults (one `StepModifier` per fault, run by `Fleet.step` after
the physics), the frame edits that cannot live in the fleet state (a silenced machine's readings
dropped, a carried-away machine's GPS fix), the ground-truth records, and fault plans (drawn at
random or loaded from JSON). It is pure apart from the plan and ground-truth file helpers, and,
like the rest of the package, speaks only the wire contract: it never imports the backend. Fault
names equal the backend's fault codes (`docs/diagnosis.md`).

Use: build a `FaultInjector` from the fleet's machines and the `FaultSpec`s, `attach` it to the
`Fleet`, and pass every frame through `observe`, which returns the frame as published and the mask
of machines that publish; `ground_truth()` then says what happened. `publisher.run` does this when
`SimConfig.faults` is set.

Invariants:

* Healthy machines are untouched: a run with faults gives their frames bit for bit as the
  same-seed run without. Faults draw only on their own generators (seeded from the run seed and the
  fault's kind, machine and start), and they never change what decides how many draws the fleet's
  shared generator makes: a faulty machine's duty state, dwell time, position and refuels stay
  exactly those of its healthy run. So faults never *force* a duty state; a fault that needs one
  waits for it (below), and a fault that needs a position change edits the published GPS fix.
* A fault acts only inside its planned window `[start_ts_ms, start_ts_ms + duration_s)`, except
  where noted (an outside_site machine is driven back after it). Its effect ends when its cause is
  removed; slow signals (temperatures) then relax through the fleet's own physics.

Kinds: the effect, the duty it needs, `magnitude` and `rate` (None draws from the range given).

* low_oil_pressure (worn pump, leak): oil pressure times magnitude, the kept fraction 0.35-0.45
  (gradual: from 1 over ramp_s). Shows while running.
* engine_overheat (clogged radiator, fan belt, coolant loss): coolant climbs at rate °C/min to
  magnitude (108-115 °C), then holds. Sudden rate 2-4 (so coolant_rising_fast too); gradual: the
  ceiling rises from 90 °C to magnitude over ramp_s, followed at 0.6 °C/min at most. Climbs while
  running; off, it cools as usual.
* coolant_rising_fast (sudden coolant loss): waits until running with coolant >= 85 °C, then
  climbs at rate (2-4 °C/min) to magnitude (100-103 °C, below the overheat threshold); ends at
  that peak, when the engine is shut down, or with the window.
* hydraulic_overheat (oil cooler clogged, relief valve open): hydraulic oil climbs at rate to
  magnitude (98-110 °C), then holds. Sudden rate 1-2 °C/min; gradual: the ceiling rises from
  70 °C over ramp_s, followed at 0.6 °C/min at most.
* fuel_drop_engine_off: sudden (theft) drains magnitude of the tank (0.2-0.4) at rate % of the
  tank a minute (the whole amount in 2-5 min); gradual (leak) loses rate % a minute (0.08-0.15,
  5-9 %/h), at most magnitude (0.15). Waits until the engine has been off for 60 s and the
  stop will last long enough; never drains below the refuel threshold + 2 points.
* charging_failure (alternator, belt): the alternator gives nothing (gradual: fades over
  ramp_s), so the running battery falls to its rest voltage less the load's sag, then drains at
  rate V/h (1.0) while running, down to magnitude V (0.8-1.2) below rest: ~24.5 -> 23.5 V.
* engine_power_loss (air filter, injector): while working, engine speed falls to
  (1 - magnitude) x min(set speed, rated speed), magnitude 0.22-0.30, and load reads 95-100 %;
  oil pressure follows the pump curve at the lower speed (gradual: grows over ramp_s).
* machine_silent (telematics unit loses power): waits until working, then publishes nothing
  until the window ends.
* outside_site (carried off on a truck): from the window's start the GPS fix leaves the site at
  rate m/s (10-20) to magnitude m away (3000-8000), stays, and is driven back after the window.
  The fleet's own position is untouched (its physics keeps machines inside the site).
* unexplained_anomaly (no rule covers it): variant `oil_pressure_high`, a relief valve stuck
  closed: oil pressure times magnitude (1.4-1.6) while running; variant `overcharging`, a failed
  voltage regulator: the alternator charges at magnitude V (29.5-30.5). Gradual: over ramp_s.
* dtc: code (spn, fmi, oc) in every reading of the window; flapping: on for flap_readings
  readings, off as many, and so on, oc counting each return.

Gradual forms: low_oil_pressure, engine_overheat, hydraulic_overheat, fuel_drop_engine_off,
charging_failure, engine_power_loss, unexplained_anomaly; the others are sudden only. A waiting
fault takes effect at the first step in its window that has its duty and leaves enough window for
the effect to show (machine_silent 600 s, coolant_rising_fast 300 s, fuel drops: the drain
plus 300 s or 3.5 points of leak plus 120 s, also within the stop's remaining off time); if none
comes, it never starts. A fuel drop ends at the window's end or on the last step before the
engine restarts (the off dwell is known): the tank is then topped back up by what was taken
(flagged as a refuel), so that the machine's later refuels, and so the shared random stream,
match its healthy run.

Ground truth (`GroundTruth`, one JSON object a line): all times are the faulty machine's reading
times. `start_ts_ms` is the first reading with the fault in effect, `end_ts_ms` the first reading
after its effect was removed (for machine_silent the first reading published again, for
outside_site the first back at its site position), `visible_ts_ms` the first reading in effect
whose *published* values meet the kind's physical criterion (the fault's healthy reference is the
fleet's value before the fault changed it, on the same step):

* low_oil_pressure: engine running and oil pressure below 60 % of the healthy pressure.
* engine_overheat: coolant at or above 105 °C.
* coolant_rising_fast: coolant above 90 °C and risen at 1.5 °C/min or more since the last reading
  at least 120 s older.
* hydraulic_overheat: hydraulic oil at or above 95 °C.
* fuel_drop_engine_off: engine off and fuel more than 3 points below its level at the first
  reading of this stop.
* charging_failure: engine running for more than 60 s and battery below 25.5 V.
* engine_power_loss: load at or above 85 % and engine speed at most 80 % of the healthy speed.
* machine_silent: the first reading not published.
* outside_site: position more than site radius + 100 m from the site centre.
* unexplained_anomaly: oil_pressure_high: running and oil pressure at least 125 % of healthy;
  overcharging: running for more than 60 s and battery at or above 29.0 V.
* dtc: the first reading that carries the code.
"""

from __future__ import annotations

import math
import zlib
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import ClassVar, Final, Literal, cast, get_args

import numpy as np
import orjson

from simulators.fleet import M_PER_DEG_LAT, Fleet
from simulators.machines import MachineSpec
from simulators.state import (
    OFF,
    WIRE_SIGNALS,
    WORKING,
    BoolArray,
    Dtc,
    FleetState,
    FloatArray,
    Frame,
)

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
FaultForm = Literal["sudden", "gradual"]
AnomalyVariant = Literal["oil_pressure_high", "overcharging"]
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

_WARM_COOLANT_C: Final = 90.0
_WARM_HYDRAULIC_C: Final = 70.0
_RUN_FOR_S: Final = 60.0
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
        magnitude: Size of the effect, in the kind's unit (module table); None draws it.
        rate: Speed of the effect, in the kind's unit (module table); None draws it.
        variant: unexplained_anomaly only: `oil_pressure_high` or `overcharging`; None draws.
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


@dataclass(frozen=True, slots=True)
class GroundTruth:
    """What one injected fault did, as the backend should have seen it.

    Attributes:
        kind: Fault kind.
        fault: The backend fault code the fault stands for (`dtc_<spn>_<fmi>` for codes).
        faults: Every fault code the backend should raise for it (a sudden overheat climbs fast
            enough to be `coolant_rising_fast` as well).
        machine_id: The faulty machine.
        form: `sudden` or `gradual`.
        planned_start_ts_ms: Start of the planned window.
        planned_end_ts_ms: End of the planned window.
        start_ts_ms: First reading with the fault in effect; None if it never took effect.
        visible_ts_ms: First reading meeting `criterion`; None if none did.
        end_ts_ms: First reading after the effect was removed; None if the run ended first.
        criterion: The physical statement that defines `visible_ts_ms`.
        params: The fault's parameters, drawn ones included.
    """

    kind: FaultKind
    fault: str
    faults: tuple[str, ...]
    machine_id: str
    form: FaultForm
    planned_start_ts_ms: int
    planned_end_ts_ms: int
    start_ts_ms: int | None
    visible_ts_ms: int | None
    end_ts_ms: int | None
    criterion: str
    params: Mapping[str, ParamValue] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        """The record as a JSON object."""
        return {
            "kind": self.kind,
            "fault": self.fault,
            "faults": list(self.faults),
            "machine_id": self.machine_id,
            "form": self.form,
            "planned_start_ts_ms": self.planned_start_ts_ms,
            "planned_end_ts_ms": self.planned_end_ts_ms,
            "start_ts_ms": self.start_ts_ms,
            "visible_ts_ms": self.visible_ts_ms,
            "end_ts_ms": self.end_ts_ms,
            "criterion": self.criterion,
            "params": dict(self.params),
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, object]) -> GroundTruth:
        """A record from the object `to_json` wrote.

        Raises:
            ValueError: A key is missing or has the wrong type.
        """
        try:
            faults, params = doc["faults"], doc["params"]
            if not isinstance(faults, list) or not isinstance(params, dict):
                raise ValueError("faults must be a list and params an object")  # noqa: TRY004
            return cls(
                kind=cast("FaultKind", _json_str(doc, "kind")),
                fault=_json_str(doc, "fault"),
                faults=tuple(str(f) for f in faults),
                machine_id=_json_str(doc, "machine_id"),
                form=cast("FaultForm", _json_str(doc, "form")),
                planned_start_ts_ms=_json_int(doc, "planned_start_ts_ms"),
                planned_end_ts_ms=_json_int(doc, "planned_end_ts_ms"),
                start_ts_ms=_optional_int(doc, "start_ts_ms"),
                visible_ts_ms=_optional_int(doc, "visible_ts_ms"),
                end_ts_ms=_optional_int(doc, "end_ts_ms"),
                criterion=_json_str(doc, "criterion"),
                params=cast("dict[str, ParamValue]", params),
            )
        except KeyError as exc:
            raise ValueError(f"ground truth record without {exc.args[0]}") from exc


def _optional_int(doc: Mapping[str, object], key: str) -> int | None:
    return None if doc[key] is None else _json_int(doc, key)


def write_ground_truth(path: Path | str, records: Iterable[GroundTruth]) -> None:
    """Write records as JSON lines, one object per fault."""
    with Path(path).open("wb") as out:
        for record in records:
            out.write(orjson.dumps(record.to_json()) + b"\n")


def read_ground_truth(path: Path | str) -> tuple[GroundTruth, ...]:
    """Read the records `write_ground_truth` wrote.

    Raises:
        ValueError: A line is not a ground-truth record.
    """
    lines = Path(path).read_bytes().splitlines()
    return tuple(GroundTruth.from_json(orjson.loads(line)) for line in lines if line.strip())


# --------------------------------------------------------------------------------------------
# Plans


def plan_faults(
    machines: Sequence[MachineSpec],
    kinds: Iterable[FaultKind] = FAULT_KINDS,
    per_kind: int = 1,
    *,
    start_ts_ms: int,
    horizon_s: float,
    seed: int = 0,
    exclude: Iterable[str] = (),
) -> tuple[FaultSpec, ...]:
    """Draw faults on distinct machines, at random times within a horizon; the rest stay healthy.

    Each fault gets its own machine (so no two episodes overlap on one machine), a form drawn
    among its kind's forms, and a window of `DEFAULT_DURATION_S` (at most half the horizon)
    starting at least 10 % of the horizon (at most 10 minutes) after `start_ts_ms`, so that the
    backend sees healthy readings first. dtc faults draw a code from `COMMON_DTCS` and flap half
    the time; anomalies draw their variant. Magnitudes and rates are left to the injector.

    Args:
        machines: The fleet.
        kinds: Kinds to inject.
        per_kind: Faults of each kind.
        start_ts_ms: Time of the run's first reading.
        horizon_s: Length of the run.
        seed: Same arguments and seed give the same plan.
        exclude: Machine ids that must stay healthy (e.g. already given a fault).

    Returns:
        The faults, kind by kind.

    Raises:
        ValueError: More faults than free machines, or a bad count, kind or horizon.
    """
    kinds = tuple(kinds)
    unknown = [kind for kind in kinds if kind not in FAULT_KINDS]
    if unknown or per_kind < 0 or not horizon_s > 0:
        raise ValueError(
            f"kinds must be among {', '.join(FAULT_KINDS)}; per_kind >= 0; horizon > 0"
        )
    excluded = set(exclude)
    free = [m.machine_id for m in machines if m.machine_id not in excluded]
    wanted = len(kinds) * per_kind
    if wanted > len(free):
        raise ValueError(
            f"{wanted} faults need {wanted} healthy machines, the fleet has {len(free)}"
        )
    rng = np.random.default_rng([seed, 0x0FA17])
    chosen = [free[k] for k in rng.permutation(len(free))[:wanted]]
    lead_s = min(0.1 * horizon_s, 600.0)
    specs = []
    for n, machine_id in enumerate(chosen):
        kind = kinds[n // per_kind]
        duration_s = min(DEFAULT_DURATION_S[kind], 0.5 * horizon_s)
        latest_s = max(horizon_s - 1.2 * duration_s, lead_s)
        offset_s = float(rng.uniform(lead_s, latest_s))
        forms: tuple[FaultForm, ...] = (
            ("sudden", "gradual") if kind in GRADUAL_KINDS else ("sudden",)
        )
        form = forms[int(rng.integers(len(forms)))]
        spn = fmi = None
        flapping, variant = False, None
        if kind == "dtc":
            spn, fmi = COMMON_DTCS[int(rng.integers(len(COMMON_DTCS)))]
            flapping = bool(rng.integers(2))
        elif kind == "unexplained_anomaly":
            variant = ANOMALY_VARIANTS[int(rng.integers(len(ANOMALY_VARIANTS)))]
        spec = FaultSpec(
            kind=kind,
            machine_id=machine_id,
            start_ts_ms=start_ts_ms + round(offset_s * 1000),
            duration_s=round(duration_s, 3),
            form=form,
            variant=variant,
            spn=spn,
            fmi=fmi,
            flapping=flapping,
        )
        specs.append(spec)
    return tuple(specs)


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """The faults of a run, resolved once the run's first reading time and length are known.

    Attributes:
        specs: Faults at fixed times.
        from_run_start: Faults whose `start_ts_ms` counts milliseconds from the run's first
            reading instead of from the epoch (a plan file's `start_offset_s`).
        kinds: Kinds to draw at random with `plan_faults`, on machines not in the specs.
        per_kind: Random faults of each kind.
        seed: Seed of the random draw.
        horizon_s: Horizon of the random draw; None for the run's length (one hour for a
            real-time run without a duration).
    """

    specs: tuple[FaultSpec, ...] = ()
    from_run_start: tuple[FaultSpec, ...] = ()
    kinds: tuple[FaultKind, ...] = ()
    per_kind: int = 1
    seed: int = 0
    horizon_s: float | None = None

    def resolve(
        self, machines: Sequence[MachineSpec], start_ts_ms: int, horizon_s: float | None
    ) -> tuple[FaultSpec, ...]:
        """The faults with absolute times.

        Args:
            machines: The fleet.
            start_ts_ms: Time of the run's first reading.
            horizon_s: Length of the run; None when open-ended.

        Raises:
            ValueError: A fault names a machine not in the fleet, or the random draw is not
                possible (see `plan_faults`).
        """
        shifted = tuple(
            replace(s, start_ts_ms=s.start_ts_ms + start_ts_ms) for s in self.from_run_start
        )
        fixed = self.specs + shifted
        ids = {m.machine_id for m in machines}
        strangers = sorted({s.machine_id for s in fixed} - ids)
        if strangers:
            raise ValueError(f"faults name machines not in the fleet: {', '.join(strangers)}")
        if not self.kinds:
            return fixed
        horizon = self.horizon_s or horizon_s or 3600.0
        drawn = plan_faults(
            machines,
            self.kinds,
            self.per_kind,
            start_ts_ms=start_ts_ms,
            horizon_s=horizon,
            seed=self.seed,
            exclude={s.machine_id for s in fixed},
        )
        return fixed + drawn


def load_plan(path: Path | str) -> FaultPlan:
    """A plan from a JSON file: a list of faults, or `{"faults": [...]}`.

    Each fault is an object with `kind`, `machine_id`, the window (`start_ts_ms` or
    `start_offset_s`, seconds after the run's first reading; `duration_s`, or `end_ts_ms` with
    `start_ts_ms`) and
    any other `FaultSpec` field (`form`, `ramp_s`, `magnitude`, `rate`, `variant`, `spn`, `fmi`,
    `oc`, `flapping`, `flap_readings`).

    Raises:
        ValueError: The file is not such a plan.
        OSError: The file cannot be read.
    """
    try:
        doc = orjson.loads(Path(path).read_bytes())
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"{path}: not JSON: {exc}") from exc
    entries = doc.get("faults") if isinstance(doc, dict) else doc
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ValueError(f"{path}: a plan is a list of fault objects, or {{'faults': [...]}}")
    fixed: list[FaultSpec] = []
    relative: list[FaultSpec] = []
    for n, entry in enumerate(entries):
        try:
            spec = FaultSpec.from_json(entry)
        except ValueError as exc:
            raise ValueError(f"{path}: fault {n + 1}: {exc}") from exc
        (relative if "start_offset_s" in entry else fixed).append(spec)
    return FaultPlan(specs=tuple(fixed), from_run_start=tuple(relative))


def save_plan(path: Path | str, specs: Iterable[FaultSpec]) -> None:
    """Write faults as a plan file `load_plan` reads back."""
    Path(path).write_bytes(
        orjson.dumps({"faults": [s.to_json() for s in specs]}, option=orjson.OPT_INDENT_2)
    )


# --------------------------------------------------------------------------------------------
# Injection


class _FrameEdit:
    """Copy-on-write changes to one frame: values, refuel flags, and which machines publish."""

    def __init__(self, frame: Frame) -> None:
        self.frame = frame
        self._values: FloatArray | None = None
        self._refuelled: BoolArray | None = None
        self.is_sent: BoolArray = np.ones(len(frame.ts_ms), dtype=np.bool_)

    def values(self) -> FloatArray:
        if self._values is None:
            self._values = self.frame.values.copy()
        return self._values

    def mark_refuelled(self, idx: int) -> None:
        if self._refuelled is None:
            self._refuelled = self.frame.is_refuelled.copy()
        self._refuelled[idx] = True

    def result(self) -> Frame:
        if self._values is None and self._refuelled is None:
            return self.frame
        return replace(
            self.frame,
            values=self.frame.values if self._values is None else self._values,
            is_refuelled=self.frame.is_refuelled if self._refuelled is None else self._refuelled,
        )


_PENDING, _ACTIVE, _DONE = 0, 1, 2


class _Fault:
    """One fault on one machine: a `StepModifier` plus its ground-truth bookkeeping.

    `__call__` runs inside `Fleet.step` (base step time); `edit` and `record` run on the frame that
    step produced (reading times). Subclasses fill in the duty they wait for, the effect, its
    removal and the visibility criterion.
    """

    criterion: ClassVar[str] = ""

    def __init__(self, spec: FaultSpec, idx: int, rng: np.random.Generator) -> None:
        self.spec = spec
        self.idx = idx
        self.rng = rng
        self.params: dict[str, ParamValue] = {}
        self.phase = _PENDING
        self.effect_ts_ms = 0  # base time of the first step in effect
        self.in_effect = False  # at the latest step
        self.ended_now = False  # effect removed at the latest step
        self.start_ts_ms: int | None = None
        self.visible_ts_ms: int | None = None
        self.end_ts_ms: int | None = None
        self.ramp_s = spec.ramp_s or DEFAULT_RAMP_S
        if spec.form == "gradual":
            self.params["ramp_s"] = self.ramp_s

    def draw(self, given: float | None, low: float, high: float) -> float:
        """`given`, or a value drawn uniformly from [low, high] with the fault's own generator."""
        return float(self.rng.uniform(low, high)) if given is None else given

    def expected_faults(self) -> tuple[str, ...]:
        return (self.spec.fault_code,)

    # -- the step modifier -------------------------------------------------------------------

    def __call__(self, state: FleetState, ts_ms: int, dt_s: float) -> None:
        self.ended_now = False
        self.in_effect = False
        self.watch(state, dt_s)
        if self.phase == _DONE or ts_ms < self.spec.start_ts_ms:
            return
        if self.phase == _PENDING:
            if ts_ms >= self.spec.end_ts_ms:
                self.phase = _DONE  # its duty never came
                return
            if not self.ready(state, ts_ms, dt_s):
                return
            self.phase, self.effect_ts_ms = _ACTIVE, ts_ms
            self.begin(state)
        if self.finished(state, ts_ms, dt_s):
            self.release(state)
            self.phase, self.ended_now = _DONE, True
            return
        self.apply(state, ts_ms, dt_s)
        self.in_effect = True

    def ramp(self, ts_ms: int) -> float:
        """Fraction of the full effect: 1 when sudden, growing linearly over ramp_s if gradual."""
        if self.spec.form == "sudden":
            return 1.0
        return min(max((ts_ms - self.effect_ts_ms) / (1000.0 * self.ramp_s), 0.0), 1.0)

    def window_left_s(self, ts_ms: int) -> float:
        return (self.spec.end_ts_ms - ts_ms) / 1000.0

    def watch(self, state: FleetState, dt_s: float) -> None:
        """Follow the machine on every step, in effect or not."""

    def ready(self, state: FleetState, ts_ms: int, dt_s: float) -> bool:
        """Whether the machine has the duty the fault waits for (default: none)."""
        return True

    def begin(self, state: FleetState) -> None:
        """Take the effect's starting point from the state, on the first step in effect."""

    def finished(self, state: FleetState, ts_ms: int, dt_s: float) -> bool:
        """Whether the effect is over (default: the planned window has passed)."""
        return ts_ms >= self.spec.end_ts_ms

    def apply(self, state: FleetState, ts_ms: int, dt_s: float) -> None:
        """Change the state for this step."""

    def release(self, state: FleetState) -> None:
        """Remove the cause (restore parameters) on the first step after the effect."""

    # -- the frame ---------------------------------------------------------------------------

    def edit(self, edit: _FrameEdit) -> None:
        """Change the frame as published (GPS fix, refuel flag, silence)."""

    def track(self, frame: Frame, is_sent: BoolArray) -> None:
        """Follow the machine's published readings (before `visible` is asked)."""

    def visible(self, frame: Frame, is_sent: BoolArray) -> bool:
        """Whether the published reading meets the criterion."""
        return False

    def record(self, frame: Frame, is_sent: BoolArray) -> None:
        ts = int(frame.ts_ms[self.idx])
        self.track(frame, is_sent)
        if self.in_effect and self.start_ts_ms is None:
            self.start_ts_ms = ts
        if self.ended_now and self.end_ts_ms is None:
            self.end_ts_ms = ts
        if self.in_effect and self.visible_ts_ms is None and self.visible(frame, is_sent):
            self.visible_ts_ms = ts

    def ground_truth(self) -> GroundTruth:
        s = self.spec
        return GroundTruth(
            kind=s.kind,
            fault=s.fault_code,
            faults=self.expected_faults(),
            machine_id=s.machine_id,
            form=s.form,
            planned_start_ts_ms=s.start_ts_ms,
            planned_end_ts_ms=s.end_ts_ms,
            start_ts_ms=self.start_ts_ms,
            visible_ts_ms=self.visible_ts_ms,
            end_ts_ms=self.end_ts_ms,
            criterion=self.criterion,
            params=dict(self.params),
        )

    def signal(self, frame: Frame, name: str) -> float:
        return float(frame.signal(name)[self.idx])


class _RunClock(_Fault):
    """A fault whose criterion needs how long the engine has been running (published speed)."""

    def __init__(self, spec: FaultSpec, idx: int, rng: np.random.Generator) -> None:
        super().__init__(spec, idx, rng)
        self.running_since_ms: int | None = None

    def track(self, frame: Frame, is_sent: BoolArray) -> None:
        if self.signal(frame, "engine_speed_rpm") <= 0.0:
            self.running_since_ms = None
        elif self.running_since_ms is None:
            self.running_since_ms = int(frame.ts_ms[self.idx])

    def running_for_s(self, frame: Frame) -> float:
        if self.running_since_ms is None:
            return 0.0
        return (int(frame.ts_ms[self.idx]) - self.running_since_ms) / 1000.0


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


class _UnexplainedAnomaly(_RunClock):
    """Something the rules do not cover but a model of healthy behaviour should flag."""

    def __init__(self, spec: FaultSpec, idx: int, rng: np.random.Generator) -> None:
        super().__init__(spec, idx, rng)
        drawn = ANOMALY_VARIANTS[int(rng.integers(len(ANOMALY_VARIANTS)))]
        self.variant: AnomalyVariant = spec.variant or drawn
        if self.variant == "oil_pressure_high":
            self.level = self.draw(spec.magnitude, 1.4, 1.6)
            self.criterion_text = "engine running and oil_pressure_kpa >= 1.25 x healthy"
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
        high = self.signal(frame, "battery_v") >= 29.0
        return high and self.running_for_s(frame) > _RUN_FOR_S


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


_ROWS: Final = {name: i for i, name in enumerate(WIRE_SIGNALS)}

_SIMPLE: Final[Mapping[FaultKind, type[_Fault]]] = {
    "low_oil_pressure": _LowOilPressure,
    "engine_overheat": _EngineOverheat,
    "coolant_rising_fast": _CoolantRisingFast,
    "hydraulic_overheat": _HydraulicOverheat,
    "fuel_drop_engine_off": _FuelDrop,
    "charging_failure": _ChargingFailure,
    "engine_power_loss": _EnginePowerLoss,
    "machine_silent": _MachineSilent,
    "unexplained_anomaly": _UnexplainedAnomaly,
    "dtc": _ActiveCode,
}


def _fault_rng(seed: int, spec: FaultSpec) -> np.random.Generator:
    """The fault's own generator: independent of the fleet's and of every other fault's."""
    key = zlib.crc32(f"{spec.kind}|{spec.machine_id}|{spec.start_ts_ms}".encode())
    return np.random.default_rng([seed, key])


class FaultInjector:
    """The faults of one run: step modifiers for the fleet and the ground truth they produce.

    Args:
        machines: The fleet's machines, in fleet order.
        specs: Faults to inject. Faults on one machine may overlap; they then apply in order.
        seed: Seed of the faults' own generators (each fault gets one from this, its kind,
            machine and start); the run seed is a good choice.

    Raises:
        ValueError: A fault names a machine not in `machines`.
    """

    def __init__(
        self, machines: Sequence[MachineSpec], specs: Sequence[FaultSpec], *, seed: int = 0
    ) -> None:
        self.machines = tuple(machines)
        index = {m.machine_id: i for i, m in enumerate(self.machines)}
        strangers = sorted({s.machine_id for s in specs} - set(index))
        if strangers:
            raise ValueError(f"faults name machines not in the fleet: {', '.join(strangers)}")
        self.specs = tuple(specs)
        self._faults: list[_Fault] = []
        for spec in self.specs:
            idx, rng = index[spec.machine_id], _fault_rng(seed, spec)
            if spec.kind == "outside_site":
                self._faults.append(_OutsideSite(spec, idx, self.machines[idx], rng))
            else:
                self._faults.append(_SIMPLE[spec.kind](spec, idx, rng))

    @property
    def modifiers(self) -> tuple[_Fault, ...]:
        """One `StepModifier` per fault, in spec order."""
        return tuple(self._faults)

    def attach(self, fleet: Fleet) -> None:
        """Add the faults' modifiers to `fleet.modifiers`.

        Raises:
            ValueError: The fleet's machines are not the injector's.
        """
        if fleet.machines != self.machines:
            raise ValueError("the fleet's machines are not the ones the faults were planned for")
        fleet.modifiers.extend(self._faults)

    def observe(self, frame: Frame) -> tuple[Frame, BoolArray]:
        """The frame as published and the machines that publish it; records the ground truth.

        Call it on every frame the fleet yields, in order.

        Returns:
            The frame with the faults' edits (the original if none), and a mask that is False
            for machines whose reading is not published (machine_silent).
        """
        edit = _FrameEdit(frame)
        for fault in self._faults:
            fault.edit(edit)
        published = edit.result()
        for fault in self._faults:
            fault.record(published, edit.is_sent)
        return published, edit.is_sent

    def step(self, fleet: Fleet, ts_ms: int) -> tuple[Frame, BoolArray]:
        """`fleet.step(ts_ms)` then `observe` on its frame."""
        return self.observe(fleet.step(ts_ms))

    def ground_truth(self) -> tuple[GroundTruth, ...]:
        """One record per fault, in spec order, as of the latest observed frame."""
        return tuple(fault.ground_truth() for fault in self._faults)
