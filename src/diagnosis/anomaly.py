"""The anomaly model's side of the engine: windows in, `unexplained_anomaly` conditions out.

This module owns `AnomalyScorer` (what the engine needs of a trained model), the scorers by
model designation and by machine class (a machine is scored by its designation's, else by its
class's: `_scorer_key`), each machine's open windows (`windows.WindowAccumulator`) and its healthy
oil-pressure line, the reference `low_oil_pressure` holds readings against. Per batch,
`AnomalyStage.judge` scores the windows the batch completes against their model's threshold and
unmarks those a rule alarm of the machine already explains (`_EXPLAINED_BY`), as conditions over
windows; the engine runs them through the same episodes as a rule's, and `deviations` names the
signals that deviate most on the events.

The engine stays the owner of batch order, the registry (slots and `MachineInfo`, read here, never
changed) and episode state (read here to find explaining rule alarms, never written). It must never
do I/O, import asyncio or scikit-learn (a scorer comes in through the protocol), or loop over
readings in Python: its loops run over machine models, windows and events.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Final, Protocol, runtime_checkable

import numpy as np

from diagnosis import conditions
from diagnosis import events as ev
from diagnosis.conditions import Batch, Conditions, Param, Tables
from diagnosis.events import AlarmEvent, Transition
from diagnosis.frame import BoolArray, FloatArray, MachineInfo
from diagnosis.rules import AnomalyTiming
from diagnosis.state import EPISODE_FAULTS, FAULT_ROW, MachineState, Segments
from diagnosis.windows import (
    MODEL_SIGNALS,
    REGIMES,
    WindowAccumulator,
    Windows,
    is_counted,
    is_settled,
    on_regime_line,
)

__all__ = ["AnomalyScorer", "AnomalyStage", "RelationExplainer", "WindowVerdicts"]

# The rule faults that account for a model signal deviating: while one of them is open on a
# machine, a window whose largest deviation is that signal is explained, not an anomaly.
_EXPLAINED_BY: Final = {
    "oil_pressure_kpa": (ev.LOW_OIL_PRESSURE,),
    "coolant_temp_c": (ev.ENGINE_OVERHEAT, ev.COOLANT_RISING_FAST),
    "hydraulic_oil_temp_c": (ev.HYDRAULIC_OVERHEAT,),
    "battery_v": (ev.CHARGING_FAILURE,),
    "engine_speed_rpm": (ev.ENGINE_POWER_LOSS,),
    "load_pct": (ev.ENGINE_POWER_LOSS,),
}
_EXPLAINING_ROWS: Final = tuple(
    [FAULT_ROW[f] for f in _EXPLAINED_BY.get(s, ())] for s in MODEL_SIGNALS
)


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

    def oil_baseline(self, machine_ids: Sequence[str]) -> FloatArray:
        """Per machine and regime (`REGIMES`), its healthy oil pressure over engine speed as a
        line: shape (len(machine_ids), len(REGIMES), 2), intercept and slope; NaN where
        unknown.
        """
        ...


@runtime_checkable
class RelationExplainer(Protocol):
    """What a scorer that models relations between signals adds (`RegimeModel` does): per row,
    the relation that broke in words (`oil_pressure_kpa low for engine_speed_rpm (-9.1)`), or ""
    when none is past its limit. A scorer without it gives z-scores alone.
    """

    def broken_relations(self, X: FloatArray, machine_ids: Sequence[str]) -> list[str]:  # noqa: N803
        """Per row of window means in `MODEL_SIGNALS` order, the broken relation or ""."""
        ...


@dataclass(frozen=True, slots=True)
class WindowVerdicts:
    """A batch's complete windows, judged, as the engine's episodes take them.

    Attributes:
        batch: One "reading" per window, by machine then time (`batch.sg` its segments).
        cond: Per window, above the threshold (and not explained) or at or below it.
        persist: Raise and clear persistence: consecutive windows, no minimum time.
        windows: The windows themselves (means, slots, end times).
        models: Per window, the key of its machine's scorer (`_scorer_key`).
        scorer_of: The scorers that judged them, by key.
    """

    batch: Batch
    cond: Conditions
    persist: tuple[tuple[Param, Param], tuple[Param, Param]]
    windows: Windows
    models: np.ndarray
    scorer_of: Mapping[str, AnomalyScorer]


_MODEL, _CLASS = "model:", "class:"


def _keyed(
    scorers: Mapping[str, AnomalyScorer] | None, class_scorers: Mapping[str, AnomalyScorer] | None
) -> dict[str, AnomalyScorer]:
    # One namespace for both: a designation may be spelt like a class (machines registered
    # before classes existed kept ids such as `excavator` as their designation).
    out = {_MODEL + name: s for name, s in (scorers or {}).items()}
    out.update({_CLASS + name: s for name, s in (class_scorers or {}).items()})
    return out


class AnomalyStage:
    """The anomaly model over the engine's batches.

    Args:
        state: The engine's per-machine state (read only: model index, open rule alarms).
        tables: The engine's thresholds per threshold set.
        info: The engine's registry, slot to machine (read only; the engine keeps it current).
        scorers: Anomaly scorers by model designation.
        class_scorers: Anomaly scorers by machine class, for designations without their own.
    """

    def __init__(
        self,
        state: MachineState,
        tables: Tables,
        info: Mapping[int, MachineInfo],
        scorers: Mapping[str, AnomalyScorer] | None = None,
        class_scorers: Mapping[str, AnomalyScorer] | None = None,
    ) -> None:
        self._state = state
        self._tables = tables
        self._info = info
        self._scorers: dict[str, AnomalyScorer] = _keyed(scorers, class_scorers)
        self._windows = WindowAccumulator(state.capacity)
        self._oil_line: FloatArray = np.full((0, len(REGIMES), 2), np.nan)  # by slot

    def configure(self, slot: int, timing: AnomalyTiming) -> None:
        """Make room for a newly allocated slot and reset its windows to its model's timing."""
        self._windows.grow(self._state.capacity)
        self._windows.configure(slot, timing.window_s, timing.min_readings, timing.max_rpm_range)

    def set_scorers(
        self,
        scorers: Mapping[str, AnomalyScorer],
        class_scorers: Mapping[str, AnomalyScorer] | None = None,
    ) -> None:
        """Replace the scorers and take every registered machine's oil line from them."""
        self._scorers = _keyed(scorers, class_scorers)
        self.refresh_oil(list(self._info))

    def _scorer_key(self, info: MachineInfo) -> str:
        """Which scorer judges the machine: its designation's, else its class's ("" for none)."""
        if _MODEL + info.model in self._scorers:
            return _MODEL + info.model
        if _CLASS + info.machine_class in self._scorers:
            return _CLASS + info.machine_class
        return ""

    def refresh_oil(self, slots: Iterable[int]) -> None:
        """Take the machines' oil-pressure lines from their models' scorers (one call per
        machine model): at restore, and when the models change.
        """
        st = self._state
        if self._oil_line.shape[0] < st.capacity:
            grown = np.full((st.capacity, len(REGIMES), 2), np.nan)
            grown[: self._oil_line.shape[0]] = self._oil_line
            self._oil_line = grown
        by_model: dict[str, list[int]] = {}
        for slot in slots:  # machines, not readings
            by_model.setdefault(self._scorer_key(self._info[slot]), []).append(slot)
        for name, mine in by_model.items():
            scorer = self._scorers.get(name)
            ids = [self._info[s].machine_id for s in mine]
            self._oil_line[mine] = np.nan if scorer is None else scorer.oil_baseline(ids)

    def oil_ref(self, batch: Batch) -> FloatArray | None:
        """Per reading, its machine's healthy oil pressure at that speed and regime (NaN where
        there is none); None when no machine of the batch has one.
        """
        if not self._scorers:
            return None
        sg = batch.sg
        lines = self._oil_line[sg.slots]
        if not bool(np.isfinite(lines).any()):
            return None
        return on_regime_line(
            lines,
            sg.spread(np.arange(len(sg.slots), dtype=np.int64)),
            batch.signal("engine_speed_rpm"),
            batch.signal("load_pct"),
            batch.signal("coolant_temp_c"),
        )

    def judge(self, batch: Batch, engine: conditions.EngineState) -> WindowVerdicts | None:
        """Add the batch's settled readings to the open windows and judge those it completes.

        Returns:
            The completed windows as conditions for the engine's episodes; None when the batch
            completes none or there are no scorers.
        """
        sg = batch.sg
        settle_ms = batch.param(lambda t: t.anomaly.settle_s * 1000)
        used = is_counted(batch.values)
        used &= is_settled(sg.ts_ms, engine.run_start(sg), settle_ms)
        windows = self._windows.push(sg, batch.values, used)
        if len(windows) == 0 or not self._scorers:
            return None
        scores = np.full(len(windows), np.nan)
        limits = np.full(len(windows), np.nan)
        infos = [self._info[s] for s in windows.slot.tolist()]  # windows, not readings
        models = np.array([self._scorer_key(i) for i in infos], dtype=object)
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
        self._drop_explained(is_raise, windows, models, machine_ids, scorer_of)
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

        cond = Conditions(is_raise, known, is_clear, known, scores, None, True, describe)
        wbatch = Batch(
            wsg,
            np.zeros((0, len(windows))),
            ids,
            self._state.model_idx[wsg.slots],
            np.unique(self._state.model_idx[wsg.slots]),
            self._tables,
        )
        r_n = wbatch.param(lambda t: t.anomaly.raise_windows)
        c_n = wbatch.param(lambda t: t.anomaly.clear_windows)
        persist = ((r_n, 0.0), (c_n, 0.0))
        return WindowVerdicts(wbatch, cond, persist, windows, models, scorer_of)

    def _drop_explained(
        self,
        is_raise: BoolArray,
        windows: Windows,
        models: np.ndarray,
        machine_ids: list[str],
        scorer_of: Mapping[str, AnomalyScorer],
    ) -> None:
        """Unmark anomalous windows whose largest deviation a rule alarm of the machine, open at
        some time since the window began, accounts for (`_EXPLAINED_BY`): low oil pressure
        already says the oil pressure is low.

        Such a window breaks a pending raise and neither raises nor clears an open episode. Only
        windows above the threshold on machines with such a rule alarm are explained, one
        `explain` per machine model: a handful per batch.
        """
        st = self._state
        slots = windows.slot
        window_ms = self._tables.of(lambda t: t.anomaly.window_s * 1000)[st.model_idx[slots]]
        begun = windows.end_ts_ms - window_ms.astype(np.int64)
        # Per rule fault and window: open at the end of the batch, or active since it began.
        rule_rows = [FAULT_ROW[f] for f in ev.RULE_FAULTS if f != ev.MACHINE_SILENT]
        since = np.zeros((len(EPISODE_FAULTS), len(slots)), np.bool_)
        since[rule_rows] = st.active[rule_rows][:, slots] | (
            st.active_ts[rule_rows][:, slots] >= begun
        )
        todo = np.flatnonzero(is_raise & since.any(axis=0))
        for name in np.unique(models[todo]).tolist():  # machine models, not windows
            at = todo[models[todo] == name]
            z = scorer_of[str(name)].explain(windows.means[at], [machine_ids[k] for k in at])
            top = np.argmax(np.nan_to_num(np.abs(z), nan=-1.0), axis=1)
            for k, c in zip(at.tolist(), top.tolist(), strict=True):
                rows = _EXPLAINING_ROWS[c]
                if rows and bool(since[rows, k].any()):
                    is_raise[k] = False

    def deviations(self, found: list[AlarmEvent], judged: WindowVerdicts) -> list[AlarmEvent]:
        """The events with the signals that deviate most in their window.

        One `explain` per machine model for all events of the batch (z-scores are per row).
        """
        todo = [k for k, e in enumerate(found) if e.transition is not Transition.CLEARED]
        if not todo:
            return found
        windows, models, scorer_of = judged.windows, judged.models, judged.scorer_of
        wsg, ids = judged.batch.sg, judged.batch.machine_ids
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
            scorer = scorer_of[name]
            means = windows.means[[rows[j] for j in mine]]
            z = scorer.explain(means, ids_of)
            tops = np.argsort(-np.abs(z), axis=1, kind="stable")[:, :3].tolist()
            words = (
                scorer.broken_relations(means, ids_of)
                if isinstance(scorer, RelationExplainer)
                else [""] * len(mine)
            )
            for j, z_row, top, broken in zip(mine, z.tolist(), tops, words, strict=True):
                event = found[todo[j]]
                deviations = tuple((MODEL_SIGNALS[c], round(z_row[c], 2)) for c in top)
                parts = ", ".join(f"{s} z={v:+.1f}" for s, v in deviations)
                if broken:
                    parts = f"relation broken: {broken}; {parts}"
                out[todo[j]] = replace(
                    event, deviations=deviations, detail=f"{event.detail}; {parts}"
                )
        return out
