"""Fault plans: which faults a run injects, drawn at random or read from a JSON file.

This module owns `plan_faults` (faults on distinct machines at random times within a horizon),
`FaultPlan` (faults at fixed times, faults relative to the run's start and a random draw,
resolved once the run's first reading time and length are known) and the plan file helpers
(`load_plan`, `save_plan`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import orjson

from simulators.faults.spec import (
    ANOMALY_VARIANTS,
    COMMON_DTCS,
    DEFAULT_DURATION_S,
    FAULT_KINDS,
    GRADUAL_KINDS,
    FaultForm,
    FaultKind,
    FaultSpec,
)
from simulators.machines import MachineSpec


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
