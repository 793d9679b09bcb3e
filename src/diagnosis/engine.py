"""The diagnosis engine: a Frame of readings in, alarm events out.

This module owns the meaning of every rule (which readings raise, which clear, what the event
says), the order of a batch (drop redelivered readings, silence, rules, fault codes, the anomaly
model) and the registry of machines. Every rule is a handful of vector operations over the whole
batch, with per-machine segments and carry-in from `state.py`; Python loops run over rules and
over emitted events, never over readings.

It must never do I/O, import asyncio or scikit-learn, or keep anything but rebuildable state:
`restore` replays recent readings with events suppressed and takes which episodes are open from
the store, so the engine never runs ahead of, or disagrees with, what is stored.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Final, Protocol

import numpy as np

from diagnosis import events as ev
from diagnosis.dtc import DtcBatch, DtcTracker
from diagnosis.errors import DiagnosisError
from diagnosis.events import AlarmEvent, Transition
from diagnosis.frame import BoolArray, FloatArray, Frame, IntArray, MachineInfo
from diagnosis.rules import RuleBook, Thresholds
from diagnosis.signals import SIGNAL_INDEX
from diagnosis.state import (
    ENGINE_OFF,
    ENGINE_RUNNING,
    EPISODE_FAULTS,
    NO_TS,
    RATE_RING,
    RATE_STEPS,
    Episodes,
    MachineState,
    Segments,
    Threshold,
    episodes,
)
from diagnosis.windows import (
    MODEL_SIGNALS,
    WindowAccumulator,
    Windows,
    is_counted,
)

__all__ = ["AnomalyScorer", "Engine", "EngineError", "UnknownMachineError"]

_FAULT_ROW: Final = {f: i for i, f in enumerate(EPISODE_FAULTS)}
_EARTH_M_PER_DEG: Final = 6_371_008.8 * np.pi / 180.0  # mean Earth radius
_SPEED: Final = SIGNAL_INDEX["engine_speed_rpm"]


class AnomalyScorer(Protocol):
    """What the engine needs of a trained anomaly model (`diagnosis.model` provides one).

    Rows come with the machine each is a window of, because a scorer may judge a machine against
    its own healthy baseline (`diagnosis.model.RegimeModel` does); a NaN score means the row is
    not judged (no baseline for that machine yet, engine off, a value missing) and neither
    raises nor clears.
    """

    @property
    def threshold(self) -> float:
        """Scores above this are anomalous."""
        ...

    def score(self, X: FloatArray, machine_ids: Sequence[str]) -> FloatArray:  # noqa: N803
        """Anomaly score per row of window means in `MODEL_SIGNALS` order; higher is worse."""
        ...

    def explain(self, X: FloatArray, machine_ids: Sequence[str]) -> FloatArray:  # noqa: N803
        """Per-signal z-scores, the same shape as `X`."""
        ...


class EngineError(DiagnosisError):
    """Base of the engine's errors."""


class UnknownMachineError(EngineError):
    """A frame holds readings of machines the engine has no state for.

    Attributes:
        machine_ids: The unknown machines (restore them first).
    """

    def __init__(self, machine_ids: Sequence[str]) -> None:
        super().__init__(f"unknown machines: {', '.join(machine_ids[:5])}")
        self.machine_ids = tuple(machine_ids)


Param = Threshold


def _take(x: Param, idx: IntArray | None) -> Param:
    return x if idx is None or isinstance(x, float) else x[idx]


def _at(x: Param, i: int) -> float:
    return x if isinstance(x, float) else float(x[i])


def _fmt(x: float, digits: int = 0) -> str:
    return f"{x:,.{digits}f}"


def _when(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@dataclass(frozen=True, slots=True)
class _Tables:
    """Every scalar threshold as an array over threshold sets (index 0 is the default)."""

    sets: tuple[Thresholds, ...]

    def of(self, get: Callable[[Thresholds], float]) -> FloatArray:
        return np.array([get(t) for t in self.sets], np.float64)


@dataclass(slots=True)
class _Batch:
    """One batch after redelivered readings are dropped, and its thresholds."""

    sg: Segments
    values: FloatArray
    machine_ids: list[str]
    model_seg: IntArray
    present: IntArray
    tables: _Tables
    _model_r: IntArray | None = None

    def signal(self, name: str) -> FloatArray:
        row: FloatArray = self.values[SIGNAL_INDEX[name]]
        return row

    def seg_of(self, i: int) -> int:
        """The segment of reading `i`."""
        return int(np.searchsorted(self.sg.starts, i, side="right")) - 1

    def model_r(self) -> IntArray:
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


@dataclass(frozen=True, slots=True)
class _Conditions:
    """A rule fault's conditions per reading, and how to describe its events."""

    is_raise: BoolArray
    raise_known: BoolArray  # the raise condition is decidable (NaN neither raises nor clears)
    is_clear: BoolArray
    clear_known: BoolArray
    value: FloatArray
    signal: str | None
    higher_is_worse: bool
    describe: Callable[[int, Transition], str]


class Engine:
    """Rules, fault codes and the anomaly model over batches of readings, with per-machine state.

    Args:
        rules: Thresholds per machine model.
        models: Anomaly scorers by machine model name; machines of other models are not scored.
    """

    def __init__(self, rules: RuleBook, models: Mapping[str, AnomalyScorer] | None = None) -> None:
        self._rules = rules
        self._set_names = ["", *rules.models]
        self._tables = _Tables((rules.default, *rules.models.values()))
        self._scorers: dict[str, AnomalyScorer] = dict(models or {})
        self._state = MachineState()
        self._windows = WindowAccumulator(self._state.capacity)
        self._dtc = DtcTracker()
        self._info: dict[int, MachineInfo] = {}

    @property
    def rules(self) -> RuleBook:
        """The thresholds the engine runs with."""
        return self._rules

    def unknown(self, machine_ids: Iterable[str]) -> list[str]:
        """The machines the engine has no state for, in the order given."""
        return [m for m in machine_ids if m not in self._state.slots]

    def set_models(self, models: Mapping[str, AnomalyScorer]) -> None:
        """Replace the anomaly scorers (after training); open model alarms stay open."""
        self._scorers = dict(models)

    def forget(self, machine_ids: Iterable[str]) -> None:
        """Drop the state of machines (e.g. after a failed transaction); they become unknown."""
        for machine_id in machine_ids:
            slot = self._state.release(machine_id)
            if slot is not None:
                self._dtc.forget(slot)
                self._info.pop(slot, None)

    def restore(
        self,
        infos: Sequence[MachineInfo],
        history: Frame,
        open_faults: Mapping[str, Collection[str]],
    ) -> None:
        """Register machines and rebuild their state from recent history.

        Args:
            infos: The machines (model and site); known ones are registered afresh.
            history: Their latest readings (any other machine's are ignored).
            open_faults: Per machine, the fault codes of its open episodes in the store.
        """
        for info in infos:
            self._register(info)
        ids = {info.machine_id for info in infos}
        wanted = np.array([m in ids for m in history.machine_ids], np.bool_)
        if len(history):
            self._process(_select_machines(history, wanted), emit=False)
        st = self._state
        for info in infos:
            slot = st.slots[info.machine_id]
            faults = set(open_faults.get(info.machine_id, ()))
            for fault, row in _FAULT_ROW.items():
                st.active[row, slot] = fault in faults
            codes = {c for f in faults if (c := ev.parse_dtc_code(f)) is not None}
            self._dtc.reconcile(slot, codes, int(st.last_ts[slot]))

    def process(self, frame: Frame) -> list[AlarmEvent]:
        """Diagnose a batch.

        Args:
            frame: Readings of known machines; per machine, readings not later than the last
                one processed are ignored (redelivery).

        Returns:
            Events ordered by (machine, time).

        Raises:
            UnknownMachineError: The frame holds a machine that was never restored.
        """
        missing = self.unknown(frame.machine_ids)
        if missing:
            raise UnknownMachineError(missing)
        return self._process(frame, emit=True)

    def check_silence(self, now_ms: int) -> list[AlarmEvent]:
        """Raise `machine_silent` for machines quiet too long after a reading with the engine on.

        Args:
            now_ms: The current time, epoch milliseconds.

        Returns:
            One RAISED event per machine that fell silent, ordered by machine.
        """
        st = self._state
        used = np.array(sorted(self._info), np.int64)
        if len(used) == 0:
            return []
        timeout = self._tables.of(lambda t: t.machine_silent.timeout_s * 1000)[st.model_idx[used]]
        row = _FAULT_ROW[ev.MACHINE_SILENT]
        last = st.last_ts[used]
        is_silent = (st.engine[used] == ENGINE_RUNNING) & ~st.active[row, used]
        is_silent &= (last != NO_TS) & (now_ms - last >= timeout)
        out: list[AlarmEvent] = []
        for i in np.flatnonzero(is_silent).tolist():
            slot = int(used[i])
            st.active[row, slot] = True
            quiet_s = (now_ms - int(last[i])) / 1000
            out.append(
                AlarmEvent(
                    self._info[slot].machine_id,
                    ev.MACHINE_SILENT,
                    Transition.RAISED,
                    int(last[i] + timeout[i]),
                    signal="engine_speed_rpm",
                    value=float(st.last_speed_rpm[slot]),
                    higher_is_worse=False,
                    detail=f"no reading for {quiet_s:,.0f} s; the last, at {_when(int(last[i]))}, "
                    f"had the engine running at {_fmt(float(st.last_speed_rpm[slot]))} rpm",
                )
            )
        return sorted(out, key=lambda e: e.machine_id)

    # --- registry ---------------------------------------------------------------------------

    def _register(self, info: MachineInfo) -> None:
        st = self._state
        old = st.slots.get(info.machine_id)
        if old is not None:
            self._dtc.forget(old)
            self._info.pop(old, None)
        slot = st.allocate(info.machine_id)
        self._windows.grow(st.capacity)
        name = info.model if info.model in self._rules.models else ""
        st.model_idx[slot] = self._set_names.index(name)
        if info.site_lat is not None and info.site_lon is not None and info.site_radius_m:
            st.site[:, slot] = (info.site_lat, info.site_lon, info.site_radius_m)
        timing = self._rules.for_model(info.model).anomaly
        self._windows.configure(slot, timing.window_s, timing.min_readings, timing.max_rpm_range)
        self._info[slot] = info

    # --- one batch --------------------------------------------------------------------------

    def _process(self, frame: Frame, *, emit: bool) -> list[AlarmEvent]:
        st = self._state
        slot_of = np.array([st.slots[m] for m in frame.machine_ids], np.int64)
        batch, dtcs = self._fresh(frame, slot_of)
        if batch is None:
            return []
        sg = batch.sg
        out: list[AlarmEvent] = self._silence_cleared(batch)
        prev_last_ts = st.last_ts[sg.slots].copy()
        engine = self._engine_state(batch)
        for fault, rule in (
            (ev.LOW_OIL_PRESSURE, self._low_oil_pressure),
            (ev.ENGINE_OVERHEAT, self._engine_overheat),
            (ev.COOLANT_RISING_FAST, self._coolant_rising_fast),
            (ev.HYDRAULIC_OVERHEAT, self._hydraulic_overheat),
            (ev.ENGINE_POWER_LOSS, self._engine_power_loss),
            (ev.OUTSIDE_SITE, self._outside_site),
        ):
            cond = rule(batch)
            if cond is not None:
                out += self._settle(batch, fault, cond, emit=emit)
        out += self._settle(batch, ev.FUEL_DROP_ENGINE_OFF, self._fuel_drop(batch, engine), emit)
        out += self._settle(batch, ev.CHARGING_FAILURE, self._charging(batch, engine), emit)
        clear_ms = self._tables.of(lambda t: t.dtc.clear_after_s * 1000)[batch.model_seg]
        dtc_events = self._dtc.process(
            sg, batch.machine_ids, dtcs, clear_ms.astype(np.int64), prev_last_ts
        )
        out += self._anomaly(batch, emit)
        last = sg.last
        st.last_ts[sg.slots] = sg.ts_ms[last]
        if not emit:
            return []
        out += dtc_events
        out.sort(key=lambda e: (e.machine_id, e.ts_ms))
        return out

    def _fresh(self, frame: Frame, slot_of: IntArray) -> tuple[_Batch | None, DtcBatch]:
        """The batch without readings already processed, as segments with their thresholds."""
        st = self._state
        values, ts, idx = frame.values, frame.ts_ms, frame.machine_idx
        dtc = DtcBatch(frame.dtc_row, frame.dtc_spn, frame.dtc_fmi, frame.dtc_oc)
        counts = np.bincount(idx, minlength=len(slot_of))
        firsts = np.cumsum(counts) - counts
        has = counts > 0
        # Readings of a machine are in time order: if each machine's first reading is new, all are.
        if not bool((ts[firsts[has]] > st.last_ts[slot_of[has]]).all()):
            is_new = ts > np.repeat(st.last_ts[slot_of], counts)
            keep = np.flatnonzero(is_new)
            values, ts, idx = values[:, keep], ts[keep], idx[keep]
            rows = np.cumsum(is_new) - 1
            is_kept = is_new[dtc.row]
            dtc = DtcBatch(
                rows[dtc.row[is_kept]], dtc.spn[is_kept], dtc.fmi[is_kept], dtc.oc[is_kept]
            )
            counts = np.bincount(idx, minlength=len(slot_of))
            has = counts > 0
        if len(ts) == 0:
            return None, dtc
        sg = Segments.build(slot_of[has], counts[has], ts)
        model_seg = st.model_idx[sg.slots]
        ids = [frame.machine_ids[i] for i in np.flatnonzero(has).tolist()]
        batch = _Batch(sg, values, ids, model_seg, np.unique(model_seg), self._tables)
        return batch, dtc

    # --- episodes ---------------------------------------------------------------------------

    def _settle(self, batch: _Batch, fault: str, cond: _Conditions, emit: bool) -> list[AlarmEvent]:
        """Run a fault's episodes through the batch, store the carry, and describe transitions."""
        st, sg = self._state, batch.sg
        row = _FAULT_ROW[fault]
        slots = sg.slots
        active0 = st.active[row, slots]
        need = active0 | sg.any(cond.is_raise)
        if not bool(need.all()):
            # Without a reading meeting the raise condition nothing can happen to an inactive
            # fault, except that a pending raise run is broken.
            pending = ~need & (st.raise_count[row, slots] > 0)
            if bool(pending.any()):
                broken = (cond.raise_known & ~cond.is_raise) | cond.is_clear
                idle = slots[pending & sg.any(broken)]
                st.raise_count[row, idle] = 0
                st.raise_start[row, idle] = NO_TS
            if not bool(need.any()):
                return []
            sub, idx = sg.subset(need)
        else:
            sub, idx = sg, None
        name = fault
        r_n = _take(batch.param(lambda t: getattr(t, name).raise_readings), idx)
        r_ms = _take(batch.param(lambda t: getattr(t, name).raise_s * 1000), idx)
        c_n = _take(batch.param(lambda t: getattr(t, name).clear_readings), idx)
        c_ms = _take(batch.param(lambda t: getattr(t, name).clear_s * 1000), idx)
        return self._transitions(batch, row, cond, sub, idx, ((r_n, r_ms), (c_n, c_ms)), emit)

    def _transitions(
        self,
        batch: _Batch,
        row: int,
        cond: _Conditions,
        sub: Segments,
        idx: IntArray | None,
        persist: tuple[tuple[Param, Param], tuple[Param, Param]],
        emit: bool,
    ) -> list[AlarmEvent]:
        st = self._state
        pick: Callable[[np.ndarray], np.ndarray] = (
            (lambda a: a) if idx is None else (lambda a: a[idx])
        )
        is_raise, is_clear = pick(cond.is_raise), pick(cond.is_clear)
        slots = sub.slots
        carry = (
            st.active[row, slots],
            st.raise_count[row, slots],
            st.raise_start[row, slots],
            st.clear_count[row, slots],
            st.clear_start[row, slots],
        )
        eps = episodes(
            sub,
            is_raise,
            # Exclusive conditions: meeting one always breaks the other's run.
            (pick(cond.raise_known) & ~is_raise) | is_clear,
            is_clear,
            (pick(cond.clear_known) & ~is_clear) | is_raise,
            carry,
            persist[0],
            persist[1],
        )
        last = sub.last
        st.active[row, slots] = eps.active[last]
        st.raise_count[row, slots] = eps.raise_runs.count[last]
        st.raise_start[row, slots] = eps.raise_runs.start_ts[last]
        st.clear_count[row, slots] = eps.clear_runs.count[last]
        st.clear_start[row, slots] = eps.clear_runs.start_ts[last]
        if not emit or (len(eps.raised) == 0 and len(eps.cleared) == 0 and not eps.active.any()):
            return []
        return self._describe(sub, idx, EPISODE_FAULTS[row], cond, eps, is_raise)

    def _describe(
        self,
        sub: Segments,
        idx: IntArray | None,
        fault: str,
        cond: _Conditions,
        eps: Episodes,
        is_raise: BoolArray,
    ) -> list[AlarmEvent]:
        """Events of a fault's transitions (loops over transitions and active machines only)."""
        value: FloatArray = cond.value if idx is None else cond.value[idx]
        n = len(sub)
        # Worst value of the readings meeting the raise condition between two positions: a
        # running extreme would be cheaper but is not segmented, so use reduceat over pairs.
        sign = 1.0 if cond.higher_is_worse else -1.0
        hits = np.where(is_raise, value * sign, -np.inf)
        cum = np.zeros(n + 1, np.int64)
        np.cumsum(is_raise, out=cum[1:])

        def episodes_of(lo: IntArray, hi: IntArray) -> tuple[FloatArray, IntArray]:
            """Worst value and count of raise-condition readings in [lo, hi), per pair."""
            if len(lo) == 0:
                return np.zeros(0), np.zeros(0, np.int64)
            pairs = np.stack([lo, np.maximum(hi, lo + 1)], axis=1).ravel()
            padded = np.append(hits, -np.inf)
            worst: FloatArray = np.maximum.reduceat(padded, pairs)[::2] * sign
            count: IntArray = cum[hi] - cum[lo]
            return worst, count

        def events(at: IntArray, tr: Transition, worst: FloatArray, count: IntArray) -> None:
            if len(at) == 0:
                return
            # Python values once per array, not a numpy scalar per event and field.
            segs = np.searchsorted(sub.starts, at, side="right") - 1
            info, describe = self._info, cond.describe
            signal, higher_is_worse = cond.signal, cond.higher_is_worse
            for slot, ts, v, w, c, i in zip(
                sub.slots[segs].tolist(),
                sub.ts_ms[at].tolist(),
                value[at].tolist(),
                worst.tolist(),
                count.tolist(),
                (at if idx is None else idx[at]).tolist(),
                strict=True,
            ):
                out.append(
                    AlarmEvent(
                        info[slot].machine_id,
                        fault,
                        tr,
                        ts,
                        signal=signal,
                        value=v,
                        worst=None if c == 0 else w,
                        higher_is_worse=higher_is_worse,
                        count=c,
                        detail=describe(i, tr),
                    )
                )

        out: list[AlarmEvent] = []
        raised, cleared = eps.raised, eps.cleared
        events(raised, Transition.RAISED, value[raised], eps.raise_runs.count[raised])
        # A CLEARED sums up its episode's readings in this batch: from its RAISED or the start.
        # With -1 appended, index -1 (no earlier RAISED) reads as "before every reading".
        raised_or_none = np.append(raised, -1)
        before = raised_or_none[np.searchsorted(raised, cleared) - 1]
        lo = np.maximum(sub.first[cleared], before)
        events(cleared, Transition.CLEARED, *episodes_of(lo, cleared))
        # Episodes still open at the end of the batch, with readings meeting the raise condition
        # after their RAISED reading (or since the batch began): one UPDATED each.
        open_ = np.flatnonzero(eps.active[sub.last])
        lo, hi = sub.starts[open_], sub.last[open_] + 1
        before = raised_or_none[np.searchsorted(raised, hi) - 1]
        was_raised = before >= lo
        lo = np.maximum(lo, before)
        is_updated = cum[hi] - cum[lo + was_raised] > 0
        lo, hi = lo[is_updated], hi[is_updated]
        latest, _ = sub.last_where(is_raise) if bool(is_updated.any()) else (hi, None)
        events(latest[hi - 1], Transition.UPDATED, *episodes_of(lo, hi))
        return out

    def _silence_cleared(self, batch: _Batch) -> list[AlarmEvent]:
        st, sg = self._state, batch.sg
        row = _FAULT_ROW[ev.MACHINE_SILENT]
        was = np.flatnonzero(st.active[row, sg.slots])
        st.active[row, sg.slots[was]] = False
        out = []
        for seg in was.tolist():
            ts = int(sg.ts_ms[sg.starts[seg]])
            quiet_s = (ts - int(st.last_ts[sg.slots[seg]])) / 1000
            out.append(
                AlarmEvent(
                    batch.machine_ids[seg],
                    ev.MACHINE_SILENT,
                    Transition.CLEARED,
                    ts,
                    count=0,
                    detail=f"readings again after {quiet_s:,.0f} s of silence",
                )
            )
        return out

    # --- rules ------------------------------------------------------------------------------

    def _engine_state(self, batch: _Batch) -> _EngineState:
        """Per reading, the engine state carried over readings without a speed."""
        st, sg = self._state, batch.sg
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
        latest = np.maximum.reduceat(
            np.where(is_start, np.arange(n, dtype=np.int64), -1), sg.starts
        )
        end_start = np.where(latest >= sg.starts, sg.ts_ms[latest], st.run_start_ts[sg.slots])
        end_state = state[last]
        end_start[end_state != ENGINE_RUNNING] = NO_TS
        eng = _EngineState(state, before, is_start, carry, st.run_start_ts[sg.slots].copy())
        st.engine[sg.slots] = end_state
        st.run_start_ts[sg.slots] = end_start
        return eng

    def _low_oil_pressure(self, batch: _Batch) -> _Conditions:
        speed, oil = batch.values[_SPEED], batch.signal("oil_pressure_kpa")
        sets = self._tables.sets
        present = batch.present.tolist()
        running = speed > 0
        # Above the highest curve point plus margin a pressure clears whatever the speed: only
        # the readings below it need the curve.
        ceiling = max(max(sets[m].low_oil_pressure.curve_kpa) for m in present)
        ceiling += max(sets[m].low_oil_pressure.clear_margin_kpa for m in present)
        is_high = oil > ceiling
        is_clear = running & is_high
        is_raise = np.zeros(len(speed), np.bool_)
        curve = np.full(len(speed), np.nan)
        near = np.flatnonzero(running & ~is_high)
        if len(near):
            models = batch.model_r()[near] if len(present) > 1 else None
            for m in present:  # a few machine models, not readings
                at = near if models is None else near[models == m]
                c = sets[m].low_oil_pressure
                curve[at] = np.interp(speed[at], c.curve_rpm, c.curve_kpa)
            margin = _take(batch.param(lambda t: t.low_oil_pressure.clear_margin_kpa), near)
            is_raise[near] = oil[near] < curve[near]
            is_clear[near] = oil[near] > curve[near] + margin
        known = (speed == 0) | (running & ~np.isnan(oil))

        def describe(i: int, tr: Transition) -> str:
            c = sets[int(batch.model_seg[batch.seg_of(i)])].low_oil_pressure
            limit = float(np.interp(speed.item(i), c.curve_rpm, c.curve_kpa))
            head = f"oil pressure {_fmt(oil.item(i))} kPa at {_fmt(speed.item(i))} rpm"
            if tr is Transition.CLEARED:
                return f"{head}, back above {_fmt(limit + c.clear_margin_kpa)} kPa"
            return f"{head}, below the minimum of {_fmt(limit)} kPa"

        return _Conditions(
            is_raise,
            known,
            is_clear,
            known,
            oil,
            "oil_pressure_kpa",
            False,
            describe,
        )

    def _temperature(self, batch: _Batch, signal: str, label: str, fault: str) -> _Conditions:
        temp = batch.signal(signal)
        hi = batch.param(lambda t: getattr(t, fault).raise_c)
        lo = batch.param(lambda t: getattr(t, fault).clear_c)
        is_raise = temp >= hi
        is_clear = temp < lo
        known = ~np.isnan(temp)

        def describe(i: int, tr: Transition) -> str:
            if tr is Transition.CLEARED:
                return f"{label} {_fmt(temp.item(i), 1)} °C, below {_fmt(_at(lo, i), 1)} °C again"
            return f"{label} {_fmt(temp.item(i), 1)} °C, at or above {_fmt(_at(hi, i), 1)} °C"

        return _Conditions(
            is_raise,
            known,
            is_clear,
            known,
            temp,
            signal,
            True,
            describe,
        )

    def _engine_overheat(self, batch: _Batch) -> _Conditions:
        return self._temperature(batch, "coolant_temp_c", "coolant", "engine_overheat")

    def _hydraulic_overheat(self, batch: _Batch) -> _Conditions:
        return self._temperature(
            batch, "hydraulic_oil_temp_c", "hydraulic oil", "hydraulic_overheat"
        )

    def _coolant_rising_fast(self, batch: _Batch) -> _Conditions:
        temp = batch.signal("coolant_temp_c")
        rate = self._coolant_rate(batch, temp)
        floor = batch.param(lambda t: t.coolant_rising_fast.min_temp_c)
        fast = batch.param(lambda t: t.coolant_rising_fast.raise_c_per_min)
        slow = batch.param(lambda t: t.coolant_rising_fast.clear_c_per_min)
        span_s = batch.param(lambda t: t.coolant_rising_fast.span_s)
        is_hot = temp > floor
        is_raise = is_hot & (rate > fast)
        is_cool = temp <= floor
        is_clear = is_cool | (is_hot & (rate < slow))
        known = is_cool | (is_hot & ~np.isnan(rate))

        def describe(i: int, tr: Transition) -> str:
            head = f"coolant {_fmt(temp.item(i), 1)} °C"
            if tr is Transition.CLEARED:
                if temp.item(i) <= _at(floor, i):
                    return f"{head}, at or below {_fmt(_at(floor, i))} °C again"
                return f"{head}, rising {_fmt(rate.item(i), 2)} °C/min, below {_at(slow, i)} °C/min"
            return (
                f"{head}, rising {_fmt(rate.item(i), 2)} °C/min over "
                f"{_fmt(_at(span_s, i) / 60, 1)} min, faster than {_at(fast, i)} °C/min"
            )

        return _Conditions(
            is_raise,
            known,
            is_clear,
            known,
            temp,
            "coolant_temp_c",
            True,
            describe,
        )

    def _coolant_rate(self, batch: _Batch, temp: FloatArray) -> FloatArray:
        """°C/min at each reading against the last sample of the bucket one span before.

        Buckets are aligned on epoch time, so the reference does not depend on where batches
        start; each machine remembers the last sample of its latest RATE_RING buckets.
        """
        st, sg = self._state, batch.sg
        n = len(sg)
        rate = np.full(n, np.nan)
        bucket_ms = batch.param(lambda t: t.coolant_rising_fast.span_s * 1000 / RATE_STEPS)
        is_valid = ~np.isnan(temp)
        v_idx = np.flatnonzero(is_valid)
        if len(v_idx) == 0:
            return rate
        seg_r = sg.spread(np.arange(len(sg.starts), dtype=np.int64))
        b_ms = bucket_ms if isinstance(bucket_ms, float) else bucket_ms[v_idx]
        b = sg.ts_ms[v_idx] // np.asarray(b_ms).astype(np.int64)
        seg_v = seg_r[v_idx]
        key = seg_v * (1 << 34) + b
        # Last valid sample of each (machine, bucket).
        is_last = np.ones(len(v_idx), np.bool_)
        is_last[:-1] = key[1:] != key[:-1]
        lasts = np.flatnonzero(is_last)
        floor = batch.param(lambda t: t.coolant_rising_fast.min_temp_c)
        is_hot = temp[v_idx] > _take(floor, v_idx)
        h = np.flatnonzero(is_hot)
        if len(h):
            want = key[h] - RATE_STEPS
            pos = np.minimum(np.searchsorted(key[lasts], want), len(lasts) - 1)
            in_batch = key[lasts][pos] == want
            ref_i = v_idx[lasts[pos]]
            ref_ts = np.where(in_batch, sg.ts_ms[ref_i], NO_TS)
            ref_c = np.where(in_batch, temp[ref_i], np.nan)
            # Not in this batch: the machine's remembered buckets.
            slot = sg.slots[seg_v[h]]
            rb = b[h] - RATE_STEPS
            ring = rb % RATE_RING
            is_old = ~in_batch & (st.rate_bucket[slot, ring] == rb)
            ref_ts = np.where(is_old, st.rate_ts[slot, ring], ref_ts)
            ref_c = np.where(is_old, st.rate_c[slot, ring], ref_c)
            ok = ref_ts != NO_TS
            at = v_idx[h]
            dt = np.where(ok, sg.ts_ms[at] - ref_ts, 1)
            rate[at] = np.where(ok, (temp[at] - ref_c) * 60_000.0 / dt, np.nan)
        # Remember the latest RATE_RING buckets of each machine.
        last_b = b[lasts]
        seg_l = seg_v[lasts]
        newest = np.full(len(sg.starts), NO_TS, np.int64)
        np.maximum.at(newest, seg_l, last_b)
        keep = last_b > newest[seg_l] - RATE_RING
        slot = sg.slots[seg_l[keep]]
        ring = last_b[keep] % RATE_RING
        st.rate_bucket[slot, ring] = last_b[keep]
        st.rate_ts[slot, ring] = sg.ts_ms[v_idx[lasts[keep]]]
        st.rate_c[slot, ring] = temp[v_idx[lasts[keep]]]
        return rate

    def _fuel_drop(self, batch: _Batch, eng: _EngineState) -> _Conditions:
        st, sg = self._state, batch.sg
        fuel = batch.signal("fuel_level_pct")
        speed = batch.values[_SPEED]
        is_off = eng.state == ENGINE_OFF
        # Reference: the level at engine stop, lifted by any rise since (a refuel is no drop).
        # A running maximum per off stretch: offsetting each stretch by 1000 keeps the maxima of
        # different stretches apart (levels are 0-100 %).
        is_stop = is_off & (eng.before != ENGINE_OFF)
        cut = is_stop.copy()
        cut[sg.starts] = True
        group = np.cumsum(cut).astype(np.float64) * 1000.0
        level = np.where(is_off & ~np.isnan(fuel), np.clip(fuel, 0.0, 100.0), -1.0)
        carry_ref = st.fuel_ref_pct[sg.slots]
        is_carried = (eng.carry == ENGINE_OFF) & ~is_stop[sg.starts] & ~np.isnan(carry_ref)
        firsts = sg.starts[is_carried]
        level[firsts] = np.maximum(level[firsts], carry_ref[is_carried])
        ref = np.maximum.accumulate(level + group) - group
        ref[(ref < 0) | ~is_off] = np.nan
        st.fuel_ref_pct[sg.slots] = ref[sg.last]
        drop = ref - fuel
        hi = batch.param(lambda t: t.fuel_drop_engine_off.raise_drop_pct)
        lo = batch.param(lambda t: t.fuel_drop_engine_off.clear_drop_pct)
        stopped = (speed == 0) & ~np.isnan(drop)
        running = speed > 0
        is_raise = stopped & (drop > hi)
        is_clear = running | (stopped & (drop <= lo))
        known = running | stopped

        def describe(i: int, tr: Transition) -> str:
            if tr is Transition.CLEARED:
                if speed.item(i) > 0:
                    return f"engine running again, fuel level {_fmt(fuel.item(i), 1)} %"
                return f"fuel level {_fmt(fuel.item(i), 1)} %, back to {_fmt(ref.item(i), 1)} %"
            return (
                f"fuel level {_fmt(fuel.item(i), 1)} % with the engine off, "
                f"{_fmt(drop.item(i), 1)} points below {_fmt(ref.item(i), 1)} % at engine stop"
            )

        return _Conditions(
            is_raise,
            known,
            is_clear,
            known,
            fuel,
            "fuel_level_pct",
            False,
            describe,
        )

    def _charging(self, batch: _Batch, eng: _EngineState) -> _Conditions:
        battery = batch.signal("battery_v")
        speed = batch.values[_SPEED]
        low = batch.param(lambda t: t.charging_failure.raise_v)
        good = batch.param(lambda t: t.charging_failure.clear_v)
        warm_ms = batch.param(lambda t: t.charging_failure.min_running_s * 1000)
        is_raise = battery < low
        ran_ms = np.zeros(0, np.int64)
        if bool(is_raise.any()):  # only then is it worth knowing how long the engine has run
            run_start = eng.run_start(batch.sg)
            ran_ms = batch.sg.ts_ms - run_start
            is_raise &= (speed > 0) & (run_start != NO_TS) & (ran_ms >= warm_ms)
        is_clear = battery >= good
        known = ~np.isnan(battery)
        raise_known = known & ~np.isnan(speed)

        def describe(i: int, tr: Transition) -> str:
            if tr is Transition.CLEARED:
                return f"battery {_fmt(battery.item(i), 2)} V, at or above {_at(good, i)} V again"
            return (
                f"battery {_fmt(battery.item(i), 2)} V with the engine running for "
                f"{_fmt(ran_ms.item(i) / 1000)} s, below {_at(low, i)} V"
            )

        return _Conditions(
            is_raise,
            raise_known,
            is_clear,
            known,
            battery,
            "battery_v",
            False,
            describe,
        )

    def _engine_power_loss(self, batch: _Batch) -> _Conditions:
        speed, load = batch.values[_SPEED], batch.signal("load_pct")
        rated = batch.param(lambda t: t.engine_power_loss.rated_rpm)
        load_min = batch.param(lambda t: t.engine_power_loss.load_pct)
        sag = batch.param(lambda t: t.engine_power_loss.raise_speed_frac)
        back = batch.param(lambda t: t.engine_power_loss.clear_speed_frac)
        is_loaded = load >= load_min
        is_raise = is_loaded & (speed < rated * sag) & (speed > 0)
        is_clear = (load < load_min) | (speed > rated * back)
        known = ~np.isnan(speed) & ~np.isnan(load)

        def describe(i: int, tr: Transition) -> str:
            head = f"engine speed {_fmt(speed.item(i))} rpm at {_fmt(load.item(i))} % load"
            r = _at(rated, i)
            if tr is Transition.CLEARED:
                return f"{head}, load below {_at(load_min, i):.0f} % or speed recovered"
            return (
                f"{head}, below {_fmt(r * _at(sag, i))} rpm "
                f"({_at(sag, i) * 100:.0f} % of rated {_fmt(r)} rpm)"
            )

        return _Conditions(
            is_raise,
            known,
            is_clear,
            known,
            speed,
            "engine_speed_rpm",
            False,
            describe,
        )

    def _outside_site(self, batch: _Batch) -> _Conditions | None:
        st, sg = self._state, batch.sg
        site = st.site[:, sg.slots]
        has_site = ~np.isnan(site[2])
        if not bool(has_site.any()) and not bool(st.active[_FAULT_ROW[ev.OUTSIDE_SITE]].any()):
            return None  # machines without a site are never outside
        lat, lon = batch.signal("lat"), batch.signal("lon")
        out_m = self._tables.of(lambda t: t.outside_site.raise_margin_m)[batch.model_seg]
        in_m = self._tables.of(lambda t: t.outside_site.clear_margin_m)[batch.model_seg]
        coslat = np.cos(np.radians(site[0]))
        # A machine whose bounding box lies well inside its site needs no distance per reading
        # (a NaN anywhere makes the box NaN, and the machine is checked reading by reading).
        far_dy = np.maximum(
            np.abs(np.maximum.reduceat(lat, sg.starts) - site[0]),
            np.abs(np.minimum.reduceat(lat, sg.starts) - site[0]),
        )
        far_dx = np.maximum(
            np.abs(np.maximum.reduceat(lon, sg.starts) - site[1]),
            np.abs(np.minimum.reduceat(lon, sg.starts) - site[1]),
        )
        corner_m = np.hypot(far_dx * coslat, far_dy) * _EARTH_M_PER_DEG
        # Active machines are measured anyway: their CLEARED event reports the distance.
        active = st.active[_FAULT_ROW[ev.OUTSIDE_SITE], sg.slots]
        check = has_site & (active | ~(corner_m <= site[2] + in_m))
        n = len(sg)
        # Machines without a site, and machines well inside it, are known to be inside.
        is_raise = np.zeros(n, np.bool_)
        is_clear = np.ones(n, np.bool_)
        known = np.ones(n, np.bool_)
        dist = np.full(n, np.nan)
        if bool(check.any()):
            sub, idx = sg.subset(check)
            lat0, lon0, radius, cos0, out_r, in_r = (
                sub.spread(a[check]) for a in (*site, coslat, out_m, in_m)
            )
            # Equirectangular: exact enough over a few kilometres, and cheap.
            dlon = (lon[idx] - lon0 + 180.0) % 360.0 - 180.0
            d = np.hypot(dlon * cos0, lat[idx] - lat0) * _EARTH_M_PER_DEG
            dist[idx] = d
            is_raise[idx] = d > radius + out_r
            is_clear[idx] = d <= radius + in_r
            known[idx] = ~np.isnan(d)

        def describe(i: int, tr: Transition) -> str:
            seg = int(np.searchsorted(sg.starts, i, side="right")) - 1
            if np.isnan(site[2, seg]):
                return "no site registered any more"
            head = (
                f"{_fmt(dist.item(i))} m from the site centre, site radius {_fmt(site[2, seg])} m"
            )
            if tr is Transition.CLEARED:
                return f"{head}: back inside"
            return f"{head}: outside by more than {_fmt(out_m[seg])} m"

        return _Conditions(is_raise, known, is_clear, known, dist, None, True, describe)

    # --- the anomaly model ------------------------------------------------------------------

    def _anomaly(self, batch: _Batch, emit: bool) -> list[AlarmEvent]:
        sg = batch.sg
        windows = self._windows.push(sg, batch.values, is_counted(batch.values))
        if len(windows) == 0 or not self._scorers:
            return []
        scores = np.full(len(windows), np.nan)
        limits = np.full(len(windows), np.nan)
        infos = [self._info[s] for s in windows.slot.tolist()]  # windows, not readings
        models = np.array([i.model for i in infos], dtype=object)
        machine_ids = [i.machine_id for i in infos]
        scorer_of: dict[str, AnomalyScorer] = {}
        for name in np.unique(models).tolist():  # machine models, not windows
            scorer = self._scorers.get(str(name))
            if scorer is None:
                continue
            at = np.flatnonzero(models == name)
            scores[at] = scorer.score(windows.means[at], [machine_ids[k] for k in at.tolist()])
            limits[at] = scorer.threshold
            scorer_of[str(name)] = scorer
        is_raise = scores > limits
        is_clear = scores <= limits
        known = ~np.isnan(scores)
        cut = np.ones(len(windows), np.bool_)
        cut[1:] = windows.slot[1:] != windows.slot[:-1]
        starts = np.flatnonzero(cut)
        counts = np.diff(np.append(starts, len(windows)))
        wsg = Segments.build(windows.slot[starts], counts, windows.end_ts_ms)
        seg_of_slot = {int(s): i for i, s in enumerate(sg.slots.tolist())}
        ids = [batch.machine_ids[seg_of_slot[int(s)]] for s in wsg.slots.tolist()]

        def describe(i: int, tr: Transition) -> str:
            score, limit = scores.item(i), limits.item(i)
            if tr is Transition.CLEARED:
                return f"anomaly score {score:.2f}, at or below {limit:.2f} again"
            return f"anomaly score {score:.2f} above the model's threshold {limit:.2f}"

        cond = _Conditions(is_raise, known, is_clear, known, scores, None, True, describe)
        wbatch = _Batch(
            wsg,
            np.zeros((0, len(windows))),
            ids,
            self._state.model_idx[wsg.slots],
            np.unique(self._state.model_idx[wsg.slots]),
            self._tables,
        )
        r_n = wbatch.param(lambda t: t.anomaly.raise_windows)
        c_n = wbatch.param(lambda t: t.anomaly.clear_windows)
        row = _FAULT_ROW[ev.UNEXPLAINED_ANOMALY]
        found = self._transitions(wbatch, row, cond, wsg, None, ((r_n, 0.0), (c_n, 0.0)), emit)
        return self._deviations(found, windows, models, scorer_of, ids, wsg)

    def _deviations(
        self,
        found: list[AlarmEvent],
        windows: Windows,
        models: np.ndarray,
        scorer_of: Mapping[str, AnomalyScorer],
        ids: list[str],
        wsg: Segments,
    ) -> list[AlarmEvent]:
        """The events with the signals that deviate most in their window.

        One `explain` per machine model for all events of the batch (z-scores are per row).
        """
        todo = [k for k, e in enumerate(found) if e.transition is not Transition.CLEARED]
        if not todo:
            return found
        seg_of = {machine_id: seg for seg, machine_id in reversed(list(enumerate(ids)))}
        starts, counts, ends = wsg.starts.tolist(), wsg.counts.tolist(), windows.end_ts_ms
        rows: list[int] = []
        for k in todo:
            seg = seg_of[found[k].machine_id]
            lo, hi = starts[seg], starts[seg] + counts[seg]
            rows.append(lo + int(np.searchsorted(ends[lo:hi], found[k].ts_ms)))
        names = [str(models[at]) for at in rows]
        out = list(found)
        for name in dict.fromkeys(names):  # machine models, not events
            mine = [j for j, n in enumerate(names) if n == name]
            ids_of = [found[todo[j]].machine_id for j in mine]
            z = scorer_of[name].explain(windows.means[[rows[j] for j in mine]], ids_of)
            tops = np.argsort(-np.abs(z), axis=1, kind="stable")[:, :3].tolist()
            for j, z_row, top in zip(mine, z.tolist(), tops, strict=True):
                event = found[todo[j]]
                deviations = tuple((MODEL_SIGNALS[c], round(z_row[c], 2)) for c in top)
                parts = ", ".join(f"{s} z={v:+.1f}" for s, v in deviations)
                out[todo[j]] = replace(
                    event, deviations=deviations, detail=f"{event.detail}; {parts}"
                )
        return out


@dataclass(frozen=True, slots=True)
class _EngineState:
    """How the engine ran through a batch.

    Per reading: the engine state (ENGINE_*), the state before it, where running stretches
    start; per segment: the carried engine state and running-stretch start.
    """

    state: IntArray
    before: IntArray
    is_start: BoolArray
    carry: IntArray
    carry_run_start: IntArray

    def run_start(self, sg: Segments) -> IntArray:
        """Per reading, when the engine started running (NO_TS while not running)."""
        at, found = sg.last_where(self.is_start)
        start: IntArray = np.where(found, sg.ts_ms[at], sg.spread(self.carry_run_start))
        start[self.state != ENGINE_RUNNING] = NO_TS
        return start


def _select_machines(frame: Frame, wanted: BoolArray) -> Frame:
    """The frame's readings of the wanted machines (indices renumbered)."""
    if bool(wanted.all()):
        return frame
    keep = wanted[frame.machine_idx]
    new_idx = np.cumsum(wanted) - 1
    rows = np.cumsum(keep) - 1
    has = keep[frame.dtc_row]
    return Frame(
        machine_ids=tuple(m for m, w in zip(frame.machine_ids, wanted, strict=True) if w),
        machine_idx=new_idx[frame.machine_idx[keep]],
        ts_ms=frame.ts_ms[keep],
        values=frame.values[:, keep],
        dtc_row=rows[frame.dtc_row[has]],
        dtc_spn=frame.dtc_spn[has],
        dtc_fmi=frame.dtc_fmi[has],
        dtc_oc=frame.dtc_oc[has],
    )
