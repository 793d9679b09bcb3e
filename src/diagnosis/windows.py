"""Per-machine window means of the running engine: the rows the anomaly model scores.

This module owns `MODEL_SIGNALS` (the columns of every model input row), the operating regimes
of a row (`regime_of`: the model's and the oil-pressure baseline's), and how readings become
window rows: windows are aligned on epoch time (`ts // window`), only readings with the engine
running (speed above 0), settled (running for `settle_s` since it started) and every model
signal present count, and a window is complete when any reading of the same machine from a later
window arrives. Windows with fewer than a minimum number of readings are dropped, and so are
unsteady ones, whose engine speed moved more than a limit within the window: a window that
straddles idle and work averages two states into a row that matches neither, and such rows would
widen the model's healthy tails until real faults hid in them. Sums and counts of each machine's
open window are carried across batches, so batch boundaries never change a window.
`HistoryWindows` and `window_rows` turn a history into rows for training with the very same
code.

It must never score windows or decide alarms (that is the engine and the model), and never loop
over readings in Python.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np

from diagnosis.frame import BoolArray, FloatArray, Frame, IntArray
from diagnosis.signals import SIGNAL_INDEX
from diagnosis.state import NO_TS, Segments

MODEL_SIGNALS: Final = (
    "engine_speed_rpm",
    "load_pct",
    "oil_pressure_kpa",
    "coolant_temp_c",
    "hydraulic_oil_temp_c",
    "battery_v",
)
"""Columns of the model's input rows, in order."""

MODEL_SIGNAL_ROWS: Final = np.array([SIGNAL_INDEX[s] for s in MODEL_SIGNALS], np.int64)
"""Rows of `Frame.values` holding `MODEL_SIGNALS`."""
_RPM_ROW: Final = SIGNAL_INDEX["engine_speed_rpm"]


# Regime bins. A diesel idles at 600-900 rpm and cranks at 150-250 rpm, so a window mean below
# 300 rpm is an engine that is off, cranking or stalling: its oil pressure and temperatures are
# transients, not a steady state to judge, and it is not scored. Running windows are binned by
# percent load only (J1939 SPN 92 is already relative to the torque available at that speed):
# below 25 % the engine is idling or barely working (travel, slewing empty), 25-65 % is the
# ordinary digging/pumping band, and from 65 % on it is near its torque curve, where coolant,
# hydraulic oil and oil pressure all sit markedly higher. Engine speed stays a feature inside
# each regime, so the detector still sees the speed/pressure relation.
#
# Warm-up is not scored either. Until the thermostat opens (coolant below about 70 °C) every
# temperature is on its way somewhere and oil pressure reads high on cold, viscous oil: such a
# window is far from the warm steady state in a way no fault explains, and leaving it in would
# fatten the calibration tails until real faults hid inside them. The rules (coolant rising
# fast, overheating) watch warm-up; the model watches the warm steady state.
RUNNING_MIN_RPM: Final = 300.0
WARM_MIN_COOLANT_C: Final = 70.0
IDLE_MAX_LOAD_PCT: Final = 25.0
PART_MAX_LOAD_PCT: Final = 65.0
REGIMES: Final = ("idle", "part_load", "full_load")
"""Regime names; `regime_of` returns positions in this tuple, -1 for rows not scored."""
NOT_SCORED: Final = -1


def regime_of(speed_rpm: FloatArray, load_pct: FloatArray, coolant_c: FloatArray) -> IntArray:
    """Per row (a window mean or a single reading), its position in `REGIMES`, or `NOT_SCORED`
    when the engine is off, warming up, or speed, load or coolant is missing.
    """
    idx = np.full(len(speed_rpm), NOT_SCORED, dtype=np.int64)
    is_running = np.isfinite(load_pct) & (speed_rpm >= RUNNING_MIN_RPM)  # NaN rpm: False
    is_running &= coolant_c >= WARM_MIN_COOLANT_C  # NaN coolant: False
    idx[is_running & (load_pct < IDLE_MAX_LOAD_PCT)] = 0
    idx[is_running & (load_pct >= IDLE_MAX_LOAD_PCT) & (load_pct < PART_MAX_LOAD_PCT)] = 1
    idx[is_running & (load_pct >= PART_MAX_LOAD_PCT)] = 2
    return idx


def on_regime_line(
    lines: FloatArray,
    machine_of: IntArray,
    speed_rpm: FloatArray,
    load_pct: FloatArray,
    coolant_c: FloatArray,
) -> FloatArray:
    """Per row, its machine's line for the row's regime at the row's engine speed.

    Args:
        lines: Per machine and regime, a line over engine speed: shape (machines, len(REGIMES),
            2), intercept and slope (the healthy oil pressure of `RegimeModel.oil_baseline`).
        machine_of: Per row, its machine's position in `lines`.
        speed_rpm: Per row, engine speed (also where the line is read).
        load_pct: Per row, load, for `regime_of`.
        coolant_c: Per row, coolant temperature, for `regime_of`.

    Returns:
        Per row; NaN where the row is not in a scored regime or the line is unknown.
    """
    regime = regime_of(speed_rpm, load_pct, coolant_c)
    out = np.full(len(speed_rpm), np.nan)
    at = np.flatnonzero(regime != NOT_SCORED)
    line = lines[machine_of[at], regime[at]]
    out[at] = line[:, 0] + line[:, 1] * speed_rpm[at]
    return out


@dataclass(frozen=True, slots=True)
class Windows:
    """Complete windows, ordered by machine then time.

    Attributes:
        slot: Per window, the machine's state slot (for `window_rows`, its frame machine index).
        start_ms: Per window, its start (a multiple of the window length).
        end_ts_ms: Per window, the time of its last counted reading.
        count: Per window, the readings averaged.
        means: Shape (windows, len(MODEL_SIGNALS)): the mean of each model signal.
        rpm_range: Per window, highest minus lowest engine speed of its counted readings.
    """

    slot: IntArray
    start_ms: IntArray
    end_ts_ms: IntArray
    count: IntArray
    means: FloatArray
    rpm_range: FloatArray

    def __len__(self) -> int:
        return len(self.slot)


def _empty() -> Windows:
    none = np.zeros(0, np.int64)
    return Windows(none, none, none, none, np.zeros((0, len(MODEL_SIGNALS))), np.zeros(0))


def is_counted(values: FloatArray) -> BoolArray:
    """Per reading of a frame's `values`, whether it counts towards a window.

    The engine must be running and every model signal present: a row with a hole in it would
    bias the mean of the signals it has towards the moments they were sent.
    """
    total = values[MODEL_SIGNAL_ROWS[0]].copy()
    for row in MODEL_SIGNAL_ROWS[1:].tolist():
        total += values[row]  # NaN anywhere makes the sum NaN: cheaper than isnan per row
    ok: BoolArray = values[SIGNAL_INDEX["engine_speed_rpm"]] > 0
    ok &= ~np.isnan(total)
    return ok


def running_since(
    sg: Segments, speed_rpm: FloatArray, running: BoolArray, since_ms: IntArray
) -> tuple[IntArray, BoolArray, IntArray]:
    """Per reading, when its machine's engine started running (NO_TS while it is not running);
    readings without a speed carry the state before them.

    The engine keeps the same per machine (`conditions.engine_state`); this is the version for
    histories read in pieces (`HistoryWindows`).

    Args:
        sg: The readings' segments.
        speed_rpm: Per reading, engine speed (NaN where absent).
        running: Per segment, whether the engine ran before its first reading.
        since_ms: Per segment, since when it ran then (NO_TS if not running).

    Returns:
        Per reading, since when the engine runs; per segment, `running` and `since_ms` after its
        last reading (the carry for the next piece).
    """
    at, found = sg.last_where(~np.isnan(speed_rpm))
    is_running = sg.spread(running)
    is_running[found] = speed_rpm[at[found]] > 0
    before = sg.shifted(is_running, running)
    at, found = sg.last_where(is_running & ~before)
    since: IntArray = np.where(found, sg.ts_ms[at], sg.spread(since_ms))
    since[~is_running] = NO_TS
    last = sg.last
    return since, is_running[last], since[last]


def is_settled(ts_ms: IntArray, since_ms: IntArray, settle_ms: float | FloatArray) -> BoolArray:
    """Per reading, whether the engine has run for at least `settle_ms` (`running_since`).

    The first minutes after a start are a transient, not a state: the battery recharges what
    cranking took, and coolant and oil come back from however far they fell while the engine
    stood. Scored, they are anomalies of every healthy restart.
    """
    ok: BoolArray = (since_ms != NO_TS) & (ts_ms - since_ms >= settle_ms)
    return ok


class WindowAccumulator:
    """Open windows of every machine slot, and the code that closes them.

    Args:
        capacity: Initial number of slots; `grow` adds more.
    """

    def __init__(self, capacity: int = 0) -> None:
        k = len(MODEL_SIGNALS)
        self.window: IntArray = np.zeros(0, np.int64)  # index of the open window, NO_TS if none
        self.sums: FloatArray = np.zeros((0, k))
        self.count: IntArray = np.zeros(0, np.int64)
        self.end_ts: IntArray = np.zeros(0, np.int64)
        self.window_ms: IntArray = np.zeros(0, np.int64)
        self.min_readings: IntArray = np.zeros(0, np.int64)
        self.rpm_lo: FloatArray = np.zeros(0)
        self.rpm_hi: FloatArray = np.zeros(0)
        self.max_rpm_range: FloatArray = np.zeros(0)
        self.grow(capacity)

    def grow(self, capacity: int) -> None:
        """Make room for `capacity` slots (new slots have no open window, 60 s, 5 readings)."""
        old = len(self.window)
        if capacity <= old:
            return
        extra = capacity - old
        self.window = np.concatenate([self.window, np.full(extra, NO_TS, np.int64)])
        self.sums = np.concatenate([self.sums, np.zeros((extra, self.sums.shape[1]))])
        self.count = np.concatenate([self.count, np.zeros(extra, np.int64)])
        self.end_ts = np.concatenate([self.end_ts, np.full(extra, NO_TS, np.int64)])
        self.window_ms = np.concatenate([self.window_ms, np.full(extra, 60_000, np.int64)])
        self.min_readings = np.concatenate([self.min_readings, np.full(extra, 5, np.int64)])
        self.rpm_lo = np.concatenate([self.rpm_lo, np.full(extra, np.inf)])
        self.rpm_hi = np.concatenate([self.rpm_hi, np.full(extra, -np.inf)])
        self.max_rpm_range = np.concatenate([self.max_rpm_range, np.full(extra, np.inf)])

    def configure(
        self, slot: int, window_s: float, min_readings: int, max_rpm_range: float = np.inf
    ) -> None:
        """Reset a slot and set its window length, minimum readings and steadiness limit."""
        self.window[slot] = NO_TS
        self.sums[slot] = 0.0
        self.count[slot] = 0
        self.end_ts[slot] = NO_TS
        self.rpm_lo[slot] = np.inf
        self.rpm_hi[slot] = -np.inf
        self.window_ms[slot] = round(window_s * 1000)
        self.min_readings[slot] = min_readings
        self.max_rpm_range[slot] = max_rpm_range

    def push(self, sg: Segments, values: FloatArray, is_used: BoolArray) -> Windows:
        """Add a batch's readings; return the windows it completes.

        Args:
            sg: The batch's segments (slots must have been configured).
            values: A frame's `values` (all signals; the model signals are picked here).
            is_used: Per reading, whether it counts (see `is_counted`).

        Returns:
            The windows completed by this batch, ordered by segment then time.
        """
        n = len(sg)
        if n == 0:
            return _empty()
        slots = sg.slots
        win_ms = self.window_ms[slots]
        uniform = bool((win_ms == win_ms[0]).all())
        w = sg.ts_ms // (int(win_ms[0]) if uniform else sg.spread(win_ms))
        # Groups: runs of readings of one segment in one window (a segment start always cuts).
        cut = np.empty(n, np.bool_)
        cut[0] = True
        np.not_equal(w[1:], w[:-1], out=cut[1:])
        cut[sg.starts] = True
        g_start = np.flatnonzero(cut)
        g_seg = np.searchsorted(sg.starts, g_start, side="right") - 1
        g_win = w[g_start]
        g_count = np.add.reduceat(is_used, g_start).astype(np.int64)
        used_values = values[MODEL_SIGNAL_ROWS]
        np.copyto(used_values, 0.0, where=~is_used)
        g_sums = np.add.reduceat(used_values, g_start, axis=1).T
        g_end = np.maximum.reduceat(np.where(is_used, sg.ts_ms, NO_TS), g_start)
        rpm = values[_RPM_ROW]
        g_lo = np.minimum.reduceat(np.where(is_used, rpm, np.inf), g_start)
        g_hi = np.maximum.reduceat(np.where(is_used, rpm, -np.inf), g_start)
        first_g = np.searchsorted(g_start, sg.starts)
        last_g = np.append(first_g[1:], len(g_start)) - 1
        # The carried window either continues in the segment's first group or, since a later
        # window has begun, is complete.
        carry_win = self.window[slots]
        is_same = carry_win == g_win[first_g]
        is_done = (carry_win != NO_TS) & ~is_same
        done_slots = slots[is_done]
        carried = Windows(
            np.flatnonzero(is_done),  # segment index for now; mapped to slots below
            carry_win[is_done] * win_ms[is_done],
            self.end_ts[done_slots],
            self.count[done_slots],
            self.sums[done_slots] / np.maximum(self.count[done_slots], 1)[:, None],
            self.rpm_hi[done_slots] - self.rpm_lo[done_slots],
        )
        same_g, same_slot = first_g[is_same], slots[is_same]
        g_count[same_g] += self.count[same_slot]
        g_sums[same_g] += self.sums[same_slot]
        g_end[same_g] = np.maximum(g_end[same_g], self.end_ts[same_slot])
        g_lo[same_g] = np.minimum(g_lo[same_g], self.rpm_lo[same_slot])
        g_hi[same_g] = np.maximum(g_hi[same_g], self.rpm_hi[same_slot])
        # The last group of each segment stays open; the others are complete.
        self.window[slots] = g_win[last_g]
        self.count[slots] = g_count[last_g]
        self.sums[slots] = g_sums[last_g]
        self.end_ts[slots] = g_end[last_g]
        self.rpm_lo[slots] = g_lo[last_g]
        self.rpm_hi[slots] = g_hi[last_g]
        is_complete = np.ones(len(g_start), np.bool_)
        is_complete[last_g] = False
        done = np.flatnonzero(is_complete)
        closed = Windows(
            g_seg[done],
            g_win[done] * win_ms[g_seg[done]],
            g_end[done],
            g_count[done],
            g_sums[done] / np.maximum(g_count[done], 1)[:, None],
            g_hi[done] - g_lo[done],
        )
        return self._keep(slots, _concat(carried, closed))

    def flush(self, slots: IntArray) -> Windows:
        """Close the open windows of some slots (end of a history) and return the full ones."""
        has = self.window[slots] != NO_TS
        slots = slots[has]
        count = self.count[slots]
        out = Windows(
            np.arange(len(slots), dtype=np.int64),
            self.window[slots] * self.window_ms[slots],
            self.end_ts[slots],
            count,
            self.sums[slots] / np.maximum(count, 1)[:, None],
            self.rpm_hi[slots] - self.rpm_lo[slots],
        )
        self.window[slots] = NO_TS
        self.count[slots] = 0
        self.sums[slots] = 0.0
        self.end_ts[slots] = NO_TS
        self.rpm_lo[slots] = np.inf
        self.rpm_hi[slots] = -np.inf
        return self._keep(slots, out)

    def _keep(self, seg_slots: IntArray, w: Windows) -> Windows:
        """Full, steady windows, segment indices mapped to slots, in segment order."""
        slot = seg_slots[w.slot]
        ok = w.count >= self.min_readings[slot]
        ok &= w.rpm_range <= self.max_rpm_range[slot]
        order = np.lexsort((w.start_ms[ok], w.slot[ok]))
        return Windows(
            slot[ok][order],
            w.start_ms[ok][order],
            w.end_ts_ms[ok][order],
            w.count[ok][order],
            w.means[ok][order],
            w.rpm_range[ok][order],
        )


def _concat(a: Windows, b: Windows) -> Windows:
    return Windows(
        np.concatenate([a.slot, b.slot]),
        np.concatenate([a.start_ms, b.start_ms]),
        np.concatenate([a.end_ts_ms, b.end_ts_ms]),
        np.concatenate([a.count, b.count]),
        np.concatenate([a.means, b.means]),
        np.concatenate([a.rpm_range, b.rpm_range]),
    )


class HistoryWindows:
    """`window_rows` over a history read in pieces: every machine's readings in time order, in
    any number of frames, with open windows and engine starts carried from piece to piece.

    Args:
        window_s: Window length.
        min_readings: Windows with fewer counted readings are dropped.
        max_rpm_range: Windows whose engine speed moved more than this are dropped.
        settle_s: Readings of the first `settle_s` after an engine start do not count.
    """

    def __init__(
        self,
        window_s: float = 60.0,
        min_readings: int = 5,
        max_rpm_range: float = np.inf,
        settle_s: float = 0.0,
    ) -> None:
        self._timing = (window_s, min_readings, max_rpm_range)
        self._settle_ms = settle_s * 1000
        self._acc = WindowAccumulator(0)
        self._slot: dict[str, int] = {}
        self._running: BoolArray = np.zeros(0, np.bool_)
        self._since: IntArray = np.zeros(0, np.int64)

    @property
    def machine_ids(self) -> tuple[str, ...]:
        """The machines seen, in slot order (`Windows.slot` indexes this)."""
        return tuple(self._slot)

    def push(self, frame: Frame) -> Windows:
        """Add a piece of the history; return the windows it completes, by slot then time."""
        new = [m for m in frame.machine_ids if m not in self._slot]
        if new:
            first = len(self._slot)
            self._acc.grow(first + len(new))
            for k, m in enumerate(new):  # machines, not readings
                self._slot[m] = first + k
                self._acc.configure(first + k, *self._timing)
            self._running = np.concatenate([self._running, np.zeros(len(new), np.bool_)])
            self._since = np.concatenate([self._since, np.full(len(new), NO_TS, np.int64)])
        slot_of = np.array([self._slot[m] for m in frame.machine_ids], np.int64)
        sg = Segments.of_frame(frame.machine_idx, frame.ts_ms, slot_of)
        if len(sg) == 0:
            return _empty()
        used = is_counted(frame.values)
        if self._settle_ms > 0:
            slots = sg.slots
            since, self._running[slots], self._since[slots] = running_since(
                sg, frame.values[_RPM_ROW], self._running[slots], self._since[slots]
            )
            used &= is_settled(sg.ts_ms, since, self._settle_ms)
        return self._acc.push(sg, frame.values, used)

    def flush(self) -> Windows:
        """Close every machine's open window (the end of the history); the full ones."""
        return self._acc.flush(np.arange(len(self._slot), dtype=np.int64))


def window_rows(
    frame: Frame,
    window_s: float = 60.0,
    min_readings: int = 5,
    max_rpm_range: float = np.inf,
    settle_s: float = 0.0,
) -> Windows:
    """Every window of a whole history, for training; the last window of each machine included.

    Args:
        frame: The history (any number of machines).
        window_s: Window length.
        min_readings: Windows with fewer counted readings are dropped.
        max_rpm_range: Windows whose engine speed moved more than this are dropped.
        settle_s: Readings of the first `settle_s` after an engine start do not count.

    Returns:
        The windows; `slot` is the index of the machine in `frame.machine_ids`.
    """
    history = HistoryWindows(window_s, min_readings, max_rpm_range, settle_s)
    rows = _concat(history.push(frame), history.flush())
    order = np.lexsort((rows.start_ms, rows.slot))
    return Windows(
        rows.slot[order],
        rows.start_ms[order],
        rows.end_ts_ms[order],
        rows.count[order],
        rows.means[order],
        rows.rpm_range[order],
    )
