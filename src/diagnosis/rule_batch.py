"""The batch as rule conditions see it: readings, thresholds per reading, the engine's state.

This module owns what every rule kernel of `diagnosis.conditions` takes: `Batch`, one batch
after redelivered readings are dropped, as per-machine segments with the threshold sets of their
machine models (`Tables`); a threshold as one figure or one per reading (`Param`, `take`); and
how the engine ran through the batch (`EngineState`, from `engine_state`, which carries the
engine state, last engine speed and running-stretch start in the `MachineState` it is given).
`diagnosis.conditions` re-exports all of it, so the engine imports it from there.

It must never decide what a rule means (raise, clear, event values and wording are
`diagnosis.conditions`'), keep state of its own, decide persistence or hysteresis, or build
events; and never do I/O. Python loops run over machine models, never over readings.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import numpy as np

from diagnosis.frame import BoolArray, FloatArray, IntArray
from diagnosis.rules import Thresholds
from diagnosis.signals import SIGNAL_INDEX
from diagnosis.state import ENGINE_RUNNING, NO_TS, MachineState, Segments, Threshold

__all__ = ["Batch", "EngineState", "Param", "Tables", "engine_state", "take"]

_SPEED: Final = SIGNAL_INDEX["engine_speed_rpm"]


Param = Threshold


def take(x: Param, idx: IntArray | None) -> Param:
    """A threshold at the readings `idx` (all of them for None); one figure stays one figure."""
    return x if idx is None or isinstance(x, float) else x[idx]


@dataclass(frozen=True, slots=True)
class Tables:
    """Every scalar threshold as an array over threshold sets (index 0 is the default)."""

    sets: tuple[Thresholds, ...]

    def of(self, get: Callable[[Thresholds], float]) -> FloatArray:
        """One threshold, per threshold set."""
        return np.array([get(t) for t in self.sets], np.float64)


@dataclass(slots=True)
class Batch:
    """One batch after redelivered readings are dropped, and its thresholds."""

    sg: Segments
    values: FloatArray
    machine_ids: list[str]
    model_seg: IntArray
    present: IntArray
    tables: Tables
    _model_r: IntArray | None = None

    def signal(self, name: str) -> FloatArray:
        """The readings of one signal (NaN where absent)."""
        row: FloatArray = self.values[SIGNAL_INDEX[name]]
        return row

    def seg_of(self, i: int) -> int:
        """The segment of reading `i`."""
        return int(np.searchsorted(self.sg.starts, i, side="right")) - 1

    def model_r(self) -> IntArray:
        """Per reading, the threshold set of its machine (computed once)."""
        if self._model_r is None:
            self._model_r = self.sg.spread(self.model_seg)
        return self._model_r

    def param(self, get: Callable[[Thresholds], float]) -> Param:
        """A threshold per reading, or one figure when every machine's model agrees on it."""
        table = self.tables.of(get)
        figures = table[self.present]
        if bool((figures == figures[0]).all()):
            return float(figures[0])
        per_reading: FloatArray = table[self.model_r()]
        return per_reading


@dataclass(slots=True)
class EngineState:
    """How the engine ran through a batch.

    Per reading: the engine state (ENGINE_*), the state before it, where running stretches
    start; per segment: the carried engine state and running-stretch start.
    """

    state: IntArray
    before: IntArray
    is_start: BoolArray
    carry: IntArray
    carry_run_start: IntArray
    _run_start: IntArray | None = None

    def run_start(self, sg: Segments) -> IntArray:
        """Per reading, when the engine started running (NO_TS while not running); computed
        once per batch (the charging rule and the model's windows both ask).
        """
        if self._run_start is None:
            at, found = sg.last_where(self.is_start)
            start: IntArray = np.where(found, sg.ts_ms[at], sg.spread(self.carry_run_start))
            start[self.state != ENGINE_RUNNING] = NO_TS
            self._run_start = start
        return self._run_start


def engine_state(batch: Batch, st: MachineState) -> EngineState:
    """Per reading, the engine state carried over readings without a speed."""
    sg = batch.sg
    speed = batch.values[_SPEED]
    running = speed > 0
    carry = st.engine[sg.slots]
    last = sg.last
    is_known = ~np.isnan(speed)
    if bool(is_known.all()):
        state = running.astype(np.int64)
        st.last_speed_rpm[sg.slots] = speed[last]
    else:
        at, found = sg.last_where(is_known)
        state = np.where(found, running[at].astype(np.int64), sg.spread(carry))
        spd, spd_found = at[last], found[last]
        st.last_speed_rpm[sg.slots[spd_found]] = speed[spd[spd_found]]
    before = sg.shifted(state, carry)
    # A running stretch starts where the engine runs and did not before.
    is_start = (state == ENGINE_RUNNING) & (before != ENGINE_RUNNING)
    n = len(sg)
    latest = np.maximum.reduceat(np.where(is_start, np.arange(n, dtype=np.int64), -1), sg.starts)
    end_start = np.where(latest >= sg.starts, sg.ts_ms[latest], st.run_start_ts[sg.slots])
    end_state = state[last]
    end_start[end_state != ENGINE_RUNNING] = NO_TS
    eng = EngineState(state, before, is_start, carry, st.run_start_ts[sg.slots].copy())
    st.engine[sg.slots] = end_state
    st.run_start_ts[sg.slots] = end_start
    return eng
