"""Per-machine rule state as numpy arrays, and the segmented operations that carry it.

This module owns everything a rule remembers between batches: one slot per machine in arrays that
grow as machines arrive, holding the last processed reading time, the engine state, the fuel level
at engine stop, the coolant samples the rate of change is measured against and, per episode fault,
the active flag and the pending raise and clear runs (count and start time). It also owns the
segmented vector operations that continue those runs through a batch: a batch is a set of
per-machine segments (`Segments`) and every carry-in is a per-segment value spread over its
readings, so no rule ever loops over readings.

It must never decide what a rule means (thresholds and conditions live in `engine.py`), emit
events, or do I/O. State is rebuildable: replaying a machine's recent readings recreates it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np

from diagnosis.events import RULE_FAULTS
from diagnosis.frame import BoolArray, FloatArray, IntArray

NO_TS: Final = int(np.iinfo(np.int64).min)
"""Marks a time that does not exist (no reading yet, no run pending)."""

ENGINE_UNKNOWN: Final = -1
ENGINE_OFF: Final = 0
ENGINE_RUNNING: Final = 1

EPISODE_FAULTS: Final = (*RULE_FAULTS, "unexplained_anomaly")
FAULT_ROW: Final = {f: i for i, f in enumerate(EPISODE_FAULTS)}
"""Row of each fault in the fault arrays of `MachineState`."""
"""Faults whose episodes live in the state arrays: the rules, then the model alarm."""

RATE_STEPS: Final = 12
"""The coolant rate span is cut into this many aligned buckets; the rate at a reading is taken
against the last sample of the bucket one span earlier, so the reference is a few seconds more or
less than the span, but the same whatever the batches look like."""

RATE_RING: Final = RATE_STEPS + 1
"""Buckets remembered per machine: a batch's first reading looks back at most RATE_STEPS buckets
from the last bucket of the previous batch."""

Threshold = float | FloatArray
"""A threshold: one figure for the whole batch, or one per reading."""


class MachineState:
    """State of every known machine, one slot per machine.

    Arrays are indexed by slot (fault arrays by fault row, then slot); slots are reused after
    `release` and the arrays double when full. Fault rows follow `EPISODE_FAULTS`.
    """

    def __init__(self, capacity: int = 64) -> None:
        self.slots: dict[str, int] = {}
        self._free: list[int] = []
        self._used = 0
        self.capacity = 0
        faults = len(EPISODE_FAULTS)
        self.in_use: BoolArray = np.zeros(0, np.bool_)
        """Per slot: a machine holds it. What a sweep over every machine (silence) reads, so it
        costs one vector operation, not a sort of the machine table (70 ms at 600,000)."""
        self.model_idx: IntArray = np.zeros(0, np.int64)
        self.site: FloatArray = np.zeros((3, 0))  # lat, lon, radius_m; NaN where none
        self.last_ts: IntArray = np.zeros(0, np.int64)
        self.engine: IntArray = np.zeros(0, np.int64)  # last known ENGINE_* state
        self.last_speed_rpm: FloatArray = np.zeros(0)
        self.run_start_ts: IntArray = np.zeros(0, np.int64)  # start of the running stretch
        self.fuel_ref_pct: FloatArray = np.zeros(0)  # level at engine stop (max since), NaN
        self.rate_bucket: IntArray = np.zeros((0, RATE_RING), np.int64)
        self.rate_ts: IntArray = np.zeros((0, RATE_RING), np.int64)
        self.rate_c: FloatArray = np.zeros((0, RATE_RING))
        self.active: BoolArray = np.zeros((faults, 0), np.bool_)
        self.active_ts: IntArray = np.zeros((faults, 0), np.int64)  # last reading while active
        self.raise_count: IntArray = np.zeros((faults, 0), np.int64)
        self.raise_start: IntArray = np.zeros((faults, 0), np.int64)
        self.clear_count: IntArray = np.zeros((faults, 0), np.int64)
        self.clear_start: IntArray = np.zeros((faults, 0), np.int64)
        self._grow(capacity)

    def allocate(self, machine_id: str) -> int:
        """A fresh slot for a machine (its old state, if any, is discarded)."""
        self.release(machine_id)
        if self._free:
            slot = self._free.pop()
        else:
            if self._used == self.capacity:
                self._grow(max(2 * self.capacity, 64))
            slot = self._used
            self._used += 1
        self.slots[machine_id] = slot
        self.in_use[slot] = True
        return slot

    def release(self, machine_id: str) -> int | None:
        """Forget a machine; its slot is reset and reused. Returns the slot it had."""
        slot = self.slots.pop(machine_id, None)
        if slot is not None:
            self._reset(np.array([slot], np.int64))
            self.in_use[slot] = False
            self._free.append(slot)
        return slot

    def _grow(self, capacity: int) -> None:
        old = self.capacity
        if capacity <= old:
            return
        extra = capacity - old

        def widen(a: np.ndarray, axis: int) -> np.ndarray:
            shape = list(a.shape)
            shape[axis] = extra
            return np.concatenate([a, np.zeros(shape, a.dtype)], axis=axis)

        self.in_use = widen(self.in_use, 0)
        self.model_idx = widen(self.model_idx, 0)
        self.site = widen(self.site, 1)
        self.last_ts = widen(self.last_ts, 0)
        self.engine = widen(self.engine, 0)
        self.last_speed_rpm = widen(self.last_speed_rpm, 0)
        self.run_start_ts = widen(self.run_start_ts, 0)
        self.fuel_ref_pct = widen(self.fuel_ref_pct, 0)
        self.rate_bucket = widen(self.rate_bucket, 0)
        self.rate_ts = widen(self.rate_ts, 0)
        self.rate_c = widen(self.rate_c, 0)
        self.active = widen(self.active, 1)
        self.active_ts = widen(self.active_ts, 1)
        self.raise_count = widen(self.raise_count, 1)
        self.raise_start = widen(self.raise_start, 1)
        self.clear_count = widen(self.clear_count, 1)
        self.clear_start = widen(self.clear_start, 1)
        self.capacity = capacity
        self._reset(np.arange(old, capacity, dtype=np.int64))

    def _reset(self, slots: IntArray) -> None:
        self.model_idx[slots] = 0
        self.site[:, slots] = np.nan
        self.last_ts[slots] = NO_TS
        self.engine[slots] = ENGINE_UNKNOWN
        self.last_speed_rpm[slots] = np.nan
        self.run_start_ts[slots] = NO_TS
        self.fuel_ref_pct[slots] = np.nan
        self.rate_bucket[slots] = NO_TS
        self.rate_ts[slots] = NO_TS
        self.rate_c[slots] = np.nan
        self.active[:, slots] = False
        self.active_ts[:, slots] = NO_TS
        self.raise_count[:, slots] = 0
        self.raise_start[:, slots] = NO_TS
        self.clear_count[:, slots] = 0
        self.clear_start[:, slots] = NO_TS


@dataclass(frozen=True, slots=True)
class Segments:
    """A batch as contiguous per-machine segments of readings.

    Attributes:
        slots: State slot of each segment.
        starts: Index of each segment's first reading.
        counts: Readings per segment (all at least 1).
        first: Per reading, the index of its segment's first reading.
        ts_ms: Per reading, epoch milliseconds (increasing within a segment).
    """

    slots: IntArray
    starts: IntArray
    counts: IntArray
    first: IntArray
    ts_ms: IntArray

    @staticmethod
    def build(slots: IntArray, counts: IntArray, ts_ms: IntArray) -> Segments:
        """Segments from the slot and reading count of each, in order."""
        starts = np.zeros(len(counts), np.int64)
        np.cumsum(counts[:-1], out=starts[1:])
        return Segments(slots, starts, counts, np.repeat(starts, counts), ts_ms)

    @staticmethod
    def of_frame(machine_idx: IntArray, ts_ms: IntArray, slot_of_machine: IntArray) -> Segments:
        """Segments of a frame's readings (machines without readings get none).

        Args:
            machine_idx: Per reading, its machine's index (non-decreasing).
            ts_ms: Per reading, epoch milliseconds.
            slot_of_machine: State slot of each machine index.
        """
        counts = np.bincount(machine_idx, minlength=len(slot_of_machine))
        has = counts > 0
        return Segments.build(slot_of_machine[has], counts[has], ts_ms)

    def __len__(self) -> int:
        return len(self.ts_ms)

    @property
    def last(self) -> IntArray:
        """Index of each segment's last reading."""
        last: IntArray = self.starts + self.counts - 1
        return last

    def spread(self, per_segment: np.ndarray) -> np.ndarray:
        """A per-segment value repeated over the segment's readings."""
        return np.repeat(per_segment, self.counts)

    def subset(self, keep: BoolArray) -> tuple[Segments, IntArray]:
        """The segments where `keep`, and the indices of their readings in this batch."""
        idx = np.flatnonzero(self.spread(keep))
        sub = Segments.build(self.slots[keep], self.counts[keep], self.ts_ms[idx])
        return sub, idx

    def any(self, mask: BoolArray) -> BoolArray:
        """Per segment, whether `mask` holds for any of its readings."""
        hits: BoolArray = np.logical_or.reduceat(mask, self.starts) if len(mask) else mask
        return hits

    def shifted(self, per_reading: np.ndarray, carry: np.ndarray) -> np.ndarray:
        """Per reading, the value at the reading before it; `carry` before a segment's first."""
        prev = np.empty_like(per_reading)
        prev[1:] = per_reading[:-1]
        prev[self.starts] = carry
        return prev

    def last_where(self, mask: BoolArray) -> tuple[IntArray, BoolArray]:
        """Per reading, the index of the latest reading at or before it where `mask` holds.

        Returns:
            The index (meaningless where not found) and whether one exists in the segment.
        """
        n = len(mask)
        at = np.where(mask, np.arange(n, dtype=np.int64), -1)
        np.maximum.accumulate(at, out=at)
        found: BoolArray = at >= self.first
        return at, found


@dataclass(frozen=True, slots=True)
class Runs:
    """Pending runs of readings meeting a condition, per reading of a batch.

    Attributes:
        count: Readings meeting the condition since the last reading that broke it (NaN readings
            neither count nor break), including readings of earlier batches.
        start_ts: Time of the first reading of that run (NO_TS when `count` is 0).
    """

    count: IntArray
    start_ts: IntArray


def runs(
    sg: Segments, met: BoolArray, broken: BoolArray, carry_count: IntArray, carry_start: IntArray
) -> Runs:
    """Continue runs of `met` readings through a batch.

    Args:
        sg: The batch's segments.
        met: Per reading, the condition holds.
        broken: Per reading, the condition is known not to hold (resets the run).
        carry_count: Per segment, the run count after the machine's previous reading.
        carry_start: Per segment, the start time of that run.

    Returns:
        Run count and start time per reading.
    """
    n = len(sg)
    idx = np.arange(n, dtype=np.int64)
    cum = np.zeros(n + 1, np.int64)
    np.cumsum(met, out=cum[1:])
    last_break, is_fresh = sg.last_where(broken)
    # Readings after the last break (or after the segment start) belong to the run.
    base = np.maximum(last_break, sg.first - 1)
    base += 1
    count = cum[1:] - cum[base]
    carried = sg.spread(carry_count)
    count += np.where(is_fresh, 0, carried)
    # First met reading at or after each position: a reverse running minimum.
    nxt = np.where(met, idx, n - 1)
    nxt = np.minimum.accumulate(nxt[::-1])[::-1]
    start = sg.ts_ms[nxt[np.minimum(base, n - 1)]]
    is_carried = ~is_fresh & (carried > 0)
    start = np.where(is_carried, sg.spread(carry_start), start)
    start[count == 0] = NO_TS
    return Runs(count, start)


def confirmed(
    r: Runs, met: BoolArray, ts_ms: IntArray, readings: Threshold, ms: Threshold
) -> BoolArray:
    """Readings at which a run has persisted: N readings and T milliseconds, both."""
    ok: BoolArray = met & (r.count >= readings)
    ok &= (ts_ms - r.start_ts) >= ms
    return ok


@dataclass(frozen=True, slots=True)
class Episodes:
    """How an episode fault evolves over a batch.

    Attributes:
        active: Per reading, whether the fault is active after it.
        raised: Indices of readings where the fault was raised, ascending.
        cleared: Indices of readings where it was cleared, ascending.
        raise_runs: The raise runs (RAISED counts come from them).
        clear_runs: The clear runs.
    """

    active: BoolArray
    raised: IntArray
    cleared: IntArray
    raise_runs: Runs
    clear_runs: Runs


def episodes(
    sg: Segments,
    is_raise: BoolArray,
    raise_broken: BoolArray,
    is_clear: BoolArray,
    clear_broken: BoolArray,
    carry: tuple[BoolArray, IntArray, IntArray, IntArray, IntArray],
    raise_persist: tuple[Threshold, Threshold],
    clear_persist: tuple[Threshold, Threshold],
) -> Episodes:
    """Raise and clear an episode fault with persistence and hysteresis, as vector operations.

    Raise and clear conditions must be exclusive, and a reading meeting the raise condition must
    break the clear run (and vice versa). Then a raise run can only start after the last clear and
    a clear run only after the last raise, so both runs can be counted without knowing the state,
    and the state after a reading is simply the kind of the latest confirmation before it.

    Args:
        sg: The batch's segments.
        is_raise: Per reading, the raise condition holds.
        raise_broken: Per reading, it is known not to hold.
        is_clear: Per reading, the clear condition holds.
        clear_broken: Per reading, it is known not to hold.
        carry: Per segment: active flag, raise run count and start, clear run count and start.
        raise_persist: Readings and milliseconds a raise must persist.
        clear_persist: Readings and milliseconds a clear must persist.

    Returns:
        The episodes of the batch.
    """
    active0, rc, rs, cc, cs = carry
    up = runs(sg, is_raise, raise_broken, rc, rs)
    down = runs(sg, is_clear, clear_broken, cc, cs)
    is_up = confirmed(up, is_raise, sg.ts_ms, *raise_persist)
    is_down = confirmed(down, is_clear, sg.ts_ms, *clear_persist)
    latest, found = sg.last_where(is_up | is_down)
    active = np.where(found, is_up[latest], sg.spread(active0))
    before = sg.shifted(active, active0)
    raised = np.flatnonzero(active & ~before)
    cleared = np.flatnonzero(before & ~active)
    return Episodes(active, raised, cleared, up, down)
