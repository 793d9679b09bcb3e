"""The fault effect machinery the concrete faults build on.

This module owns `_FrameEdit` (copy-on-write changes to one published frame), `_Fault` (one fault
on one machine: a `StepModifier` that waits for its duty, applies its effect inside its window and
removes its cause, plus the ground-truth bookkeeping on the published frames) and `_RunClock` (a
fault whose criterion needs how long the engine has been running). The concrete faults live in
`engine` and `reporting`; `injector` builds and runs them.
"""

from __future__ import annotations

from dataclasses import replace
from typing import ClassVar

import numpy as np

from simulators.faults.ground_truth import GroundTruth
from simulators.faults.spec import DEFAULT_RAMP_S, FaultSpec, ParamValue
from simulators.state import BoolArray, FleetState, FloatArray, Frame


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
