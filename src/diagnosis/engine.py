"""The diagnosis engine: a Frame of readings in, alarm events out.

This module owns the order of a batch (drop redelivered readings, silence, rules, fault codes,
the anomaly model), the registry of machines, and episodes: each rule's conditions
(`diagnosis.conditions`, which owns what the readings mean) run through persistence and
hysteresis (`state.episodes`) with the carry in `state.py`, and the transitions become alarm
events. The anomaly model's side (windows, scorers, explained windows, the oil-pressure
reference) is `diagnosis.anomaly`'s; its window conditions run through the same episodes here.
Python loops run over rules and over emitted events, never over readings.

It must never do I/O, import asyncio or scikit-learn, or keep anything but rebuildable state:
`restore` replays recent readings with events suppressed and takes which episodes are open from
the store, so the engine never runs ahead of, or disagrees with, what is stored.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from datetime import UTC, datetime

import numpy as np

from diagnosis import conditions
from diagnosis import events as ev
from diagnosis.anomaly import AnomalyScorer, AnomalyStage
from diagnosis.conditions import Batch, Conditions, Param, Tables, fmt, take
from diagnosis.dtc import DtcBatch, DtcTracker
from diagnosis.errors import EngineError, UnknownMachineError
from diagnosis.events import AlarmEvent, Transition
from diagnosis.frame import BoolArray, FloatArray, Frame, IntArray, MachineInfo
from diagnosis.rules import RuleBook
from diagnosis.state import (
    ENGINE_RUNNING,
    EPISODE_FAULTS,
    FAULT_ROW,
    NO_TS,
    Episodes,
    MachineState,
    Segments,
    episodes,
)

__all__ = ["AnomalyScorer", "Engine", "EngineError", "UnknownMachineError"]


def _when(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


class Engine:
    """Rules, fault codes and the anomaly model over batches of readings, with per-machine state.

    Args:
        rules: Thresholds per machine class and model designation.
        models: Anomaly scorers by model designation.
        classes: Anomaly scorers by machine class, for machines whose designation has none;
            a machine with neither is not scored.
    """

    def __init__(
        self,
        rules: RuleBook,
        models: Mapping[str, AnomalyScorer] | None = None,
        classes: Mapping[str, AnomalyScorer] | None = None,
    ) -> None:
        self._rules = rules
        self._tables = Tables(rules.threshold_sets)
        self._state = MachineState()
        self._dtc = DtcTracker()
        self._info: dict[int, MachineInfo] = {}
        self._anomaly = AnomalyStage(self._state, self._tables, self._info, models, classes)

    @property
    def rules(self) -> RuleBook:
        """The thresholds the engine runs with."""
        return self._rules

    def take_suppressed_dtcs(self) -> dict[str, int]:
        """Per machine, fault-code reports (one per reading and code) that opened no episode
        since the last call: the machine held `[dtc] max_open`. Replayed history counts none.
        """
        return self._dtc.take_suppressed()

    def unknown(self, machine_ids: Iterable[str]) -> list[str]:
        """The machines the engine has no state for, in the order given."""
        return [m for m in machine_ids if m not in self._state.slots]

    def last_ts_ms(self, machine_ids: Iterable[str]) -> dict[str, int]:
        """The time of the last reading processed for each known machine, epoch ms."""
        st = self._state
        return {m: int(st.last_ts[st.slots[m]]) for m in machine_ids if m in st.slots}

    def late_rows(self, frame: Frame) -> BoolArray:
        """Per reading: not later than the last processed for its machine (`process` skips it)."""
        st = self._state
        last = [st.last_ts[st.slots[m]] if m in st.slots else NO_TS for m in frame.machine_ids]
        late: BoolArray = frame.ts_ms <= np.array(last, np.int64)[frame.machine_idx]
        return late

    def set_models(
        self,
        models: Mapping[str, AnomalyScorer],
        classes: Mapping[str, AnomalyScorer] | None = None,
    ) -> None:
        """Replace the anomaly scorers, by designation and by class (after training); open
        model alarms stay open.
        """
        self._anomaly.set_scorers(models, classes)

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
            infos: The machines (model, class and site); known ones are registered afresh.
            history: Their latest readings (any other machine's are ignored).
            open_faults: Per machine, the fault codes of its open episodes in the store.
        """
        for info in infos:
            self._register(info)
        self._anomaly.refresh_oil([self._state.slots[info.machine_id] for info in infos])
        ids = {info.machine_id for info in infos}
        wanted = np.array([m in ids for m in history.machine_ids], np.bool_)
        if len(history):
            self._process(_select_machines(history, wanted), emit=False)
        st = self._state
        # The store's open episodes are the truth: every fault row of these machines is set
        # from it, in one vector operation for the many machines with none open (a fleet's
        # cold start registers every machine through here).
        slots = np.array([st.slots[info.machine_id] for info in infos], np.int64)
        st.active[:, slots] = False
        for info, slot in zip(infos, slots.tolist(), strict=True):
            faults = set(open_faults.get(info.machine_id, ()))
            for fault in faults:
                row = FAULT_ROW.get(fault)
                if row is not None:
                    st.active[row, slot] = True
            codes = {c for f in faults if (c := ev.parse_dtc_code(f)) is not None}
            if codes or slot in self._dtc.open:
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

    def check_silence(self, now_ms: int, heard_since_ms: int | None = None) -> list[AlarmEvent]:
        """Raise `machine_silent` for machines quiet too long after a reading with the engine on.

        Args:
            now_ms: The current time, epoch milliseconds.
            heard_since_ms: Since when the caller has been able to hear every machine (its
                broker session up and nothing stuck on the way to the engine); quiet time before
                it does not count, so an outage of the path itself alarms no machine. None: the
                whole of it counts.

        Returns:
            One RAISED event per machine that fell silent, ordered by machine.
        """
        st = self._state
        used = np.flatnonzero(st.in_use)  # slot order, as the machines' info is keyed
        if len(used) == 0:
            return []
        timeout = self._tables.of(lambda t: t.machine_silent.timeout_s * 1000)[st.model_idx[used]]
        row = FAULT_ROW[ev.MACHINE_SILENT]
        last = st.last_ts[used]
        quiet_from = last if heard_since_ms is None else np.maximum(last, heard_since_ms)
        is_silent = (st.engine[used] == ENGINE_RUNNING) & ~st.active[row, used]
        is_silent &= (last != NO_TS) & (now_ms - quiet_from >= timeout)
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
                    int(quiet_from[i] + timeout[i]),
                    signal="engine_speed_rpm",
                    value=float(st.last_speed_rpm[slot]),
                    higher_is_worse=False,
                    detail=f"no reading for {quiet_s:,.0f} s; the last, at {_when(int(last[i]))}, "
                    f"had the engine running at {fmt(float(st.last_speed_rpm[slot]))} rpm",
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
        st.model_idx[slot] = self._rules.set_index(info.model, info.machine_class)
        if info.site_lat is not None and info.site_lon is not None and info.site_radius_m:
            st.site[:, slot] = (info.site_lat, info.site_lon, info.site_radius_m)
        self._anomaly.configure(
            slot, self._rules.for_machine(info.model, info.machine_class).anomaly
        )
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
        engine = conditions.engine_state(batch, st)
        rules: tuple[tuple[str, Callable[[Batch], Conditions | None]], ...] = (
            (
                ev.LOW_OIL_PRESSURE,
                lambda b: conditions.low_oil_pressure(b, self._anomaly.oil_ref(b)),
            ),
            (ev.ENGINE_OVERHEAT, conditions.engine_overheat),
            (ev.COOLANT_RISING_FAST, lambda b: conditions.coolant_rising_fast(b, st)),
            (ev.HYDRAULIC_OVERHEAT, conditions.hydraulic_overheat),
            (ev.ENGINE_POWER_LOSS, conditions.engine_power_loss),
            (ev.OUTSIDE_SITE, lambda b: conditions.outside_site(b, st)),
        )
        for fault, rule in rules:
            cond = rule(batch)
            if cond is not None:
                out += self._settle(batch, fault, cond, emit=emit)
        fuel = conditions.fuel_drop(batch, st, engine)
        out += self._settle(batch, ev.FUEL_DROP_ENGINE_OFF, fuel, emit)
        out += self._settle(batch, ev.CHARGING_FAILURE, conditions.charging(batch, engine), emit)
        clear_ms = self._tables.of(lambda t: t.dtc.clear_after_s * 1000)[batch.model_seg]
        max_open = self._tables.of(lambda t: t.dtc.max_open)[batch.model_seg]
        dtc_events = self._dtc.process(
            sg, batch.machine_ids, dtcs, clear_ms.astype(np.int64), prev_last_ts,
            max_open.astype(np.int64), count_suppressed=emit,
        )  # fmt: skip
        out += self._anomaly_events(batch, engine, emit)
        last = sg.last
        st.last_ts[sg.slots] = sg.ts_ms[last]
        if not emit:
            return []
        out += dtc_events
        out.sort(key=lambda e: (e.machine_id, e.ts_ms))
        return out

    def _fresh(self, frame: Frame, slot_of: IntArray) -> tuple[Batch | None, DtcBatch]:
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
        batch = Batch(sg, values, ids, model_seg, np.unique(model_seg), self._tables)
        return batch, dtc

    def _anomaly_events(
        self, batch: Batch, engine: conditions.EngineState, emit: bool
    ) -> list[AlarmEvent]:
        """The anomaly model's windows through `unexplained_anomaly` episodes, like a rule's."""
        judged = self._anomaly.judge(batch, engine)
        if judged is None:
            return []
        row = FAULT_ROW[ev.UNEXPLAINED_ANOMALY]
        wsg = judged.batch.sg
        found = self._transitions(judged.batch, row, judged.cond, wsg, None, judged.persist, emit)
        return self._anomaly.deviations(found, judged)

    # --- episodes ---------------------------------------------------------------------------

    def _settle(self, batch: Batch, fault: str, cond: Conditions, emit: bool) -> list[AlarmEvent]:
        """Run a fault's episodes through the batch, store the carry, and describe transitions."""
        st, sg = self._state, batch.sg
        row = FAULT_ROW[fault]
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
        r_n = take(batch.param(lambda t: getattr(t, name).raise_readings), idx)
        r_ms = take(batch.param(lambda t: getattr(t, name).raise_s * 1000), idx)
        c_n = take(batch.param(lambda t: getattr(t, name).clear_readings), idx)
        c_ms = take(batch.param(lambda t: getattr(t, name).clear_s * 1000), idx)
        return self._transitions(batch, row, cond, sub, idx, ((r_n, r_ms), (c_n, c_ms)), emit)

    def _transitions(
        self,
        batch: Batch,
        row: int,
        cond: Conditions,
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
        at, found = sub.last_where(eps.active)
        at, was_active = at[last], found[last]
        st.active_ts[row, slots[was_active]] = sub.ts_ms[at[was_active]]
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
        cond: Conditions,
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

    def _silence_cleared(self, batch: Batch) -> list[AlarmEvent]:
        st, sg = self._state, batch.sg
        row = FAULT_ROW[ev.MACHINE_SILENT]
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


def _select_machines(frame: Frame, wanted: BoolArray) -> Frame:
    """The frame's readings of the wanted machines (indices renumbered)."""
    if bool(wanted.all()):
        return frame
    return frame.take(wanted[frame.machine_idx])
