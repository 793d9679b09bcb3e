"""Diagnosis engine benchmark: the engine beside a per-reading Python loop of the same rules.

Run by hand (not in CI): `.venv/bin/python -m bench.diagnosis` (see bench/README.md).

The workload is a simulated fleet (`simulators.Fleet`, three machine models, one reading per
machine a second), cut into frames of `--readings-per-frame` readings per machine that the
engine processes in order, as the gateway hands it committed batches. A stream of several frames
spans several minutes per machine, so 60 s windows close and the anomaly model scores them. Two
scenarios: a healthy fleet, and the same fleet with `--faulty` of its machines given a fault
(simulators.faults, sudden forms, from the first minute) so that alarms are raised.

Contenders, each on the same frames, in this process, pinned to one CPU where the OS allows:

* engine       - `Engine.process` with every rule, the J1939 codes and a `RegimeModel` per
                 machine model (trained beforehand on an hour of the same machines' healthy
                 history: the model judges each machine against its own baseline).
* engine-rules - the same engine without anomaly models (windows are still accumulated).
* naive        - a straightforward loop over readings in Python implementing the rules (threshold
                 with persistence and hysteresis, oil-pressure curve, rate of change, fuel while
                 off, battery while running, power loss, geofence) with the same semantics and the
                 same events; no fault codes, no model. Its raises are checked against
                 engine-rules', so the comparison is of equal work (the full engine also holds
                 oil pressure against each machine's baseline, which takes a model).

Each engine repetition starts from a fresh engine (registering the machines is not timed) and
times `process` on every frame; the figure is the stream's readings over the summed time.
Best-of-N and median are printed, and the engine's cost per reading as a share of the gateway's
(about 1/118,000 s a reading end to end, bench/README.md).

Goals, in the words of the issue: the engine (rules and model) adds under 10 % to the gateway's
cost per reading, and it evaluates rules at 5 M readings/s or more on one core (engine-rules;
the full engine's figure is printed beside it).
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file would shadow the `diagnosis` package it measures.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    del sys.path[0]

import argparse
import gc
import math
import os
import statistics
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from diagnosis import events as ev
from diagnosis.engine import AnomalyScorer, Engine
from diagnosis.events import AlarmEvent, Transition
from diagnosis.frame import FloatArray, Frame, IntArray, MachineInfo
from diagnosis.model import AnomalyDetector, RegimeModel
from diagnosis.relations import RelationDetector
from diagnosis.rules import RuleBook, Thresholds
from diagnosis.signals import SIGNAL_NAMES
from diagnosis.windows import HistoryWindows
from simulators import FaultInjector, FaultSpec, Fleet, MachineSpec, make_fleet
from simulators.faults import COMMON_DTCS, FaultKind
from simulators.state import WIRE_SIGNALS

GATEWAY_READINGS_PER_S = 118_000.0
"""End-to-end gateway throughput for batched payloads on the 2-core bench machine (README)."""
GOAL_READINGS_PER_S = 5_000_000.0
GOAL_SHARE_OF_GATEWAY = 0.10
T0_MS = 1_700_000_040_000  # a whole minute: windows are aligned on epoch minutes
NAIVE_FAULTS = (
    ev.LOW_OIL_PRESSURE,
    ev.ENGINE_OVERHEAT,
    ev.COOLANT_RISING_FAST,
    ev.HYDRAULIC_OVERHEAT,
    ev.FUEL_DROP_ENGINE_OFF,
    ev.CHARGING_FAILURE,
    ev.ENGINE_POWER_LOSS,
    ev.OUTSIDE_SITE,
)
FAULT_KINDS: tuple[FaultKind, ...] = (
    "low_oil_pressure",
    "engine_power_loss",
    "charging_failure",
    "outside_site",
    "unexplained_anomaly",
    "dtc",
    "engine_overheat",
    "coolant_rising_fast",
    "hydraulic_overheat",
    "fuel_drop_engine_off",
)
"""Faults injected in the faulty scenario, round-robin (machine_silent is a timer's business)."""
_SIGNAL_ROWS = np.array([WIRE_SIGNALS.index(name) for name in SIGNAL_NAMES], np.int64)
_EARTH_M_PER_DEG = 6_371_008.8 * math.pi / 180.0
_HIGHER_IS_WORSE = {
    ev.ENGINE_OVERHEAT,
    ev.COOLANT_RISING_FAST,
    ev.HYDRAULIC_OVERHEAT,
    ev.OUTSIDE_SITE,
}
isnan = math.isnan


# -- workload ----------------------------------------------------------------------------------


@dataclass
class Stream:
    """Consecutive frames of one fleet, and what the engine needs to know of its machines."""

    infos: list[MachineInfo]
    frames: list[Frame]
    faulty: int = 0

    @property
    def readings(self) -> int:
        return sum(len(f) for f in self.frames)


def simulate(
    machines: Sequence[MachineSpec],
    steps: int,
    *,
    seed: int,
    faults: Sequence[FaultSpec] = (),
) -> tuple[IntArray, FloatArray, np.ndarray, list[dict[int, list[tuple[int, int, int]]]]]:
    """`steps` readings a second of every machine: ts (steps, n), values (steps, signals, n)
    in `SIGNAL_NAMES` order, the published mask (steps, n) and the fault codes per step."""
    n = len(machines)
    offsets = np.random.default_rng(seed + 1).integers(0, 1000, n)
    fleet = Fleet(machines, seed=seed, start_ts_ms=T0_MS - 1000, offsets_ms=offsets)
    injector = FaultInjector(machines, faults, seed=seed) if faults else None
    if injector is not None:
        injector.attach(fleet)
    ts = np.empty((steps, n), np.int64)
    values = np.empty((steps, len(SIGNAL_NAMES), n))
    sent = np.ones((steps, n), np.bool_)
    codes: list[dict[int, list[tuple[int, int, int]]]] = []
    for k in range(steps):
        frame = fleet.step(T0_MS + k * 1000)
        if injector is not None:
            frame, sent[k] = injector.observe(frame)
        ts[k] = frame.ts_ms
        values[k] = frame.values[_SIGNAL_ROWS]
        codes.append({i: [(d.spn, d.fmi, d.oc) for d in ds] for i, ds in frame.dtcs.items()})
    return ts, values, sent, codes


def to_frame(
    ids: tuple[str, ...],
    ts: IntArray,
    values: FloatArray,
    sent: np.ndarray,
    codes: Sequence[dict[int, list[tuple[int, int, int]]]],
) -> Frame:
    """Steps of the simulation as one diagnosis Frame (machine-major, time order)."""
    steps, n = ts.shape
    keep = sent.T.ravel()
    row_of = np.cumsum(keep) - 1  # machine-major position -> row of the frame
    dtc: list[tuple[int, int, int, int]] = []
    for k, step_codes in enumerate(codes):
        for i, active in step_codes.items():
            if keep[i * steps + k]:
                dtc += [(int(row_of[i * steps + k]), *code) for code in active]
    dtc.sort()
    d = np.array(dtc, np.int64).reshape(len(dtc), 4)
    return Frame(
        machine_ids=ids,
        machine_idx=np.repeat(np.arange(n, dtype=np.int64), steps)[keep],
        ts_ms=ts.T.ravel()[keep],
        values=np.ascontiguousarray(
            values.transpose(1, 2, 0).reshape(len(SIGNAL_NAMES), -1)[:, keep]
        ),
        dtc_row=d[:, 0].copy(),
        dtc_spn=d[:, 1].copy(),
        dtc_fmi=d[:, 2].copy(),
        dtc_oc=d[:, 3].copy(),
    )


def fault_plan(machines: Sequence[MachineSpec], share: float, seed: int) -> list[FaultSpec]:
    """Sudden faults on `share` of the machines, starting within the first minute."""
    rng = np.random.default_rng([seed, 7])
    count = round(share * len(machines))
    chosen = rng.permutation(len(machines))[:count]
    specs = []
    for j, i in enumerate(chosen.tolist()):
        kind = FAULT_KINDS[j % len(FAULT_KINDS)]
        spn = fmi = None
        flapping = False
        if kind == "dtc":
            spn, fmi = COMMON_DTCS[j % len(COMMON_DTCS)]
            flapping = bool(j % 2)
        specs.append(
            FaultSpec(
                kind=kind,
                machine_id=machines[i].machine_id,
                start_ts_ms=T0_MS + int(rng.integers(0, 60_000)),
                duration_s=7200.0,
                spn=spn,
                fmi=fmi,
                flapping=flapping,
            )
        )
    return specs


def build_stream(args: argparse.Namespace, share: float) -> Stream:
    machines = make_fleet(args.machines, seed=args.seed)
    faults = fault_plan(machines, share, args.seed) if share > 0 else []
    per = args.readings_per_frame
    ts, values, sent, codes = simulate(machines, per * args.frames, seed=args.seed, faults=faults)
    ids = tuple(m.machine_id for m in machines)
    frames = [
        to_frame(ids, ts[a : a + per], values[a : a + per], sent[a : a + per], codes[a : a + per])
        for a in range(0, per * args.frames, per)
    ]
    infos = [
        MachineInfo(
            m.machine_id,
            m.model,
            m.site.lat,
            m.site.lon,
            m.site.radius_m,
            machine_class=m.machine_class,
        )
        for m in machines
    ]
    return Stream(infos, frames, len(faults))


def train_models(args: argparse.Namespace, rules: RuleBook) -> tuple[dict[str, RegimeModel], str]:
    """A RegimeModel per machine model, on healthy windows of the stream's own machines.

    The model judges each machine against its own baseline, so it must have seen the machines it
    scores. The simulator draws every machine's settings (idle speed, oil pressure, charging
    voltage) from the fleet's seed, so the history is the same seed's fleet run for
    `--train-minutes` before the stream: its first minutes repeat the stream's readings, which
    does not matter here (this bench measures speed; bench/diagnosis_eval.py measures accuracy).
    `min_machine_rows` is lowered to 5 so that an hour gives most machines a baseline in the
    regimes they visit and the model scores nearly every window, as it would in service.
    """
    machines = make_fleet(args.machines, seed=args.seed)
    ids = tuple(m.machine_id for m in machines)
    timing = rules.default.anomaly
    offsets = np.random.default_rng(args.seed + 1).integers(0, 1000, len(machines))
    steps = int(args.train_minutes * 60)
    start_ms = T0_MS - steps * 1000
    fleet = Fleet(machines, seed=args.seed, start_ts_ms=start_ms - 1000, offsets_ms=offsets)
    chunk = 60
    history = HistoryWindows(
        timing.window_s, timing.min_readings, timing.max_rpm_range, timing.settle_s
    )
    means: list[FloatArray] = []
    owners: list[str] = []
    for first in range(0, steps, chunk):  # minutes, not readings
        taken = [fleet.step(start_ms + k * 1000) for k in range(first, min(first + chunk, steps))]
        ts = np.stack([f.ts_ms for f in taken])
        values = np.stack([f.values[_SIGNAL_ROWS] for f in taken])
        frame = to_frame(ids, ts, values, np.ones(ts.shape, np.bool_), [{}] * len(taken))
        w = history.push(frame)
        means.append(w.means)
        owners += [history.machine_ids[i] for i in w.slot.tolist()]
    x = np.concatenate(means)
    model_of = {m.machine_id: m.model for m in machines}
    models_of_rows = np.array([model_of[o] for o in owners])
    models: dict[str, RegimeModel] = {}
    sizes = []
    for name in sorted(set(model_of.values())):
        at = np.flatnonzero(models_of_rows == name)
        mine = [owners[i] for i in at.tolist()]
        model = RegimeModel(name, seed=args.seed, min_machine_rows=5)
        models[name] = model.fit(x[at], mine, trained_at_ms=T0_MS)
        sizes.append(f"{name} {len(at):,}")
    return models, f"{len(machines):,} machines x {args.train_minutes:g} min: " + ", ".join(sizes)


# -- contenders --------------------------------------------------------------------------------


@dataclass
class Run:
    """One contender's repetitions on one stream."""

    seconds: list[float] = field(default_factory=list)
    events: list[AlarmEvent] = field(default_factory=list)
    windows: int = 0

    def best(self, readings: int) -> float:
        return readings / min(self.seconds)

    def median(self, readings: int) -> float:
        return readings / statistics.median(self.seconds)


def run_engine(
    stream: Stream, rules: RuleBook, models: dict[str, AnomalyScorer], repeat: int
) -> Run:
    run = Run()
    empty = Frame.build([], [], np.zeros((len(SIGNAL_NAMES), 0)))
    for _ in range(repeat):
        counter = _CountingScorers(models)
        engine = Engine(rules, counter.scorers)
        engine.restore(stream.infos, empty, {})
        events: list[AlarmEvent] = []
        gc.collect()
        spent = 0.0
        for frame in stream.frames:
            t0 = time.perf_counter()
            events += engine.process(frame)
            spent += time.perf_counter() - t0
        run.seconds.append(spent)
        run.events, run.windows = events, counter.rows
    return run


class _CountingScorers:
    """Wraps the scorers to count the windows scored (a few calls a batch: no measurable cost)."""

    def __init__(self, models: dict[str, AnomalyScorer]) -> None:
        self.rows = 0
        self.scorers = {name: self._wrap(m) for name, m in models.items()}

    def _wrap(self, model: AnomalyScorer) -> AnomalyScorer:
        outer = self

        class Counted:
            threshold = model.threshold

            def score(self, X: FloatArray, machine_ids: Sequence[str]) -> FloatArray:  # noqa: N803
                outer.rows += len(X)
                return model.score(X, machine_ids)

            def explain(self, X: FloatArray, machine_ids: Sequence[str]) -> FloatArray:  # noqa: N803
                return model.explain(X, machine_ids)

            def oil_baseline(self, machine_ids: Sequence[str]) -> FloatArray:
                return model.oil_baseline(machine_ids)

        return Counted()


class _Episode:
    """One (machine, fault): the active flag, the pending raise and clear runs, and what the
    batch's UPDATED event reports."""

    __slots__ = (
        "active",
        "c_ms",
        "c_n",
        "cc",
        "cs",
        "fault",
        "higher_is_worse",
        "hits",
        "last_hit",
        "r_ms",
        "r_n",
        "rc",
        "rs",
        "worst",
    )

    def __init__(self, fault: str, persist: tuple[int, float, int, float]) -> None:
        self.fault = fault
        self.higher_is_worse = fault in _HIGHER_IS_WORSE
        self.r_n, r_s, self.c_n, c_s = persist
        self.r_ms, self.c_ms = r_s * 1000.0, c_s * 1000.0
        self.active = False
        self.rc = self.cc = 0
        self.rs = self.cs = 0
        self.hits = 0
        self.last_hit = 0
        self.worst = 0.0


class _Machine:
    __slots__ = (
        "buckets",
        "cos0",
        "eps",
        "info",
        "last_ts",
        "lat0",
        "lon0",
        "radius",
        "ref_fuel",
        "run_start",
        "running",
        "th",
    )

    def __init__(self, info: MachineInfo, th: Thresholds) -> None:
        self.info, self.th = info, th
        self.last_ts = -1
        self.running: bool | None = None  # unknown until the first speed
        self.run_start = 0
        self.ref_fuel: float | None = None
        self.buckets: dict[int, tuple[int, float]] = {}
        self.lat0 = info.site_lat
        self.lon0 = info.site_lon
        self.radius = info.site_radius_m
        self.cos0 = math.cos(math.radians(info.site_lat)) if info.site_lat is not None else 1.0

        def p(x: object) -> tuple[int, float, int, float]:
            return (
                getattr(x, "raise_readings"),  # noqa: B009 - one helper for every rule table
                getattr(x, "raise_s"),  # noqa: B009
                getattr(x, "clear_readings"),  # noqa: B009
                getattr(x, "clear_s"),  # noqa: B009
            )

        self.eps = {
            ev.LOW_OIL_PRESSURE: _Episode(ev.LOW_OIL_PRESSURE, p(th.low_oil_pressure)),
            ev.ENGINE_OVERHEAT: _Episode(ev.ENGINE_OVERHEAT, p(th.engine_overheat)),
            ev.COOLANT_RISING_FAST: _Episode(ev.COOLANT_RISING_FAST, p(th.coolant_rising_fast)),
            ev.HYDRAULIC_OVERHEAT: _Episode(ev.HYDRAULIC_OVERHEAT, p(th.hydraulic_overheat)),
            ev.FUEL_DROP_ENGINE_OFF: _Episode(ev.FUEL_DROP_ENGINE_OFF, p(th.fuel_drop_engine_off)),
            ev.CHARGING_FAILURE: _Episode(ev.CHARGING_FAILURE, p(th.charging_failure)),
            ev.ENGINE_POWER_LOSS: _Episode(ev.ENGINE_POWER_LOSS, p(th.engine_power_loss)),
            ev.OUTSIDE_SITE: _Episode(ev.OUTSIDE_SITE, p(th.outside_site)),
        }


def _interp(x: float, xs: Sequence[float], ys: Sequence[float]) -> float:
    if x <= xs[0]:
        return ys[0]
    for k in range(1, len(xs)):
        if x <= xs[k]:
            return ys[k - 1] + (ys[k] - ys[k - 1]) * (x - xs[k - 1]) / (xs[k] - xs[k - 1])
    return ys[-1]


class NaiveDiagnosis:
    """The rules as one would first write them: a loop over readings, a small object per machine.

    Same semantics as the engine for the faults of `NAIVE_FAULTS` (persistence is N readings and
    T seconds, NaN neither raises nor clears, a reading meeting one condition breaks the other's
    run), and the same events: RAISED and CLEARED with a detail sentence, one UPDATED per batch
    for an episode still open with readings meeting its condition.
    """

    def __init__(self, rules: RuleBook, infos: Sequence[MachineInfo]) -> None:
        self.machines = {
            i.machine_id: _Machine(i, rules.for_machine(i.model, i.machine_class)) for i in infos
        }

    def process(
        self,
        machine_ids: Sequence[str],
        midx: Sequence[int],
        ts_ms: Sequence[int],
        rows: Sequence[Sequence[float]],
    ) -> list[AlarmEvent]:
        out: list[AlarmEvent] = []
        touched: list[_Machine] = []
        current: _Machine | None = None
        current_idx = -1
        for i, ts in enumerate(ts_ms):
            if midx[i] != current_idx:
                current_idx = midx[i]
                current = self.machines[machine_ids[current_idx]]
                touched.append(current)
            m = current
            assert m is not None
            if ts <= m.last_ts:
                continue  # redelivered
            m.last_ts = ts
            self._reading(m, ts, rows[i], out)
        for m in touched:  # UPDATED: open episodes with readings meeting the raise condition
            for fault, e in m.eps.items():
                if e.active and e.hits:
                    out.append(
                        AlarmEvent(
                            m.info.machine_id,
                            fault,
                            Transition.UPDATED,
                            e.last_hit,
                            worst=e.worst,
                            count=e.hits,
                            detail=f"{fault} still active in {e.hits} readings",
                        )
                    )
                e.hits = 0
        return out

    def _reading(self, m: _Machine, ts: int, r: Sequence[float], out: list[AlarmEvent]) -> None:
        speed, oil, coolant, hydraulic, fuel, battery, _hours, lat, lon, load = r
        # Engine state, carried over readings without a speed.
        was = m.running
        if not isnan(speed):
            m.running = speed > 0
        if m.running and was is not True:
            m.run_start = ts
        self._oil(m, ts, speed, oil, out)
        if not isnan(coolant):
            t = m.th.engine_overheat
            e = m.eps[ev.ENGINE_OVERHEAT]
            _step(e, coolant >= t.raise_c, coolant < t.clear_c, ts, coolant, m, out)
            self._coolant_rate(m, ts, coolant, out)
        if not isnan(hydraulic):
            t = m.th.hydraulic_overheat
            e = m.eps[ev.HYDRAULIC_OVERHEAT]
            _step(e, hydraulic >= t.raise_c, hydraulic < t.clear_c, ts, hydraulic, m, out)
        self._fuel(m, ts, was, speed, fuel, out)
        self._battery(m, ts, speed, battery, out)
        if not isnan(speed) and not isnan(load):
            pl = m.th.engine_power_loss
            _step(
                m.eps[ev.ENGINE_POWER_LOSS],
                load >= pl.load_pct and 0 < speed < pl.rated_rpm * pl.raise_speed_frac,
                load < pl.load_pct or speed > pl.rated_rpm * pl.clear_speed_frac,
                ts,
                speed,
                m,
                out,
            )
        if m.radius is not None and m.lat0 is not None and m.lon0 is not None:
            dlon = (lon - m.lon0 + 180.0) % 360.0 - 180.0  # equirectangular
            d = math.hypot(dlon * m.cos0, lat - m.lat0) * _EARTH_M_PER_DEG
            if not isnan(d):
                g = m.th.outside_site
                _step(
                    m.eps[ev.OUTSIDE_SITE],
                    d > m.radius + g.raise_margin_m,
                    d <= m.radius + g.clear_margin_m,
                    ts,
                    d,
                    m,
                    out,
                )

    @staticmethod
    def _oil(m: _Machine, ts: int, speed: float, oil: float, out: list[AlarmEvent]) -> None:
        """Oil pressure against the minimum curve over engine speed."""
        e = m.eps[ev.LOW_OIL_PRESSURE]
        if speed == 0:
            _step(e, False, False, ts, oil, m, out)
        elif speed > 0 and not isnan(oil):
            c = m.th.low_oil_pressure
            limit = _interp(speed, c.curve_rpm, c.curve_kpa)
            _step(e, oil < limit, oil > limit + c.clear_margin_kpa, ts, oil, m, out)

    @staticmethod
    def _coolant_rate(m: _Machine, ts: int, coolant: float, out: list[AlarmEvent]) -> None:
        """Rate of change against the last sample of the bucket one span before."""
        cr = m.th.coolant_rising_fast
        bucket = int(ts // int(cr.span_s * 1000 / 12))
        ref = m.buckets.get(bucket - 12)
        if bucket not in m.buckets:
            m.buckets.pop(bucket - 13, None)
        m.buckets[bucket] = (ts, coolant)
        e = m.eps[ev.COOLANT_RISING_FAST]
        if coolant <= cr.min_temp_c:
            _step(e, False, True, ts, coolant, m, out)
        elif ref is not None:
            rate = (coolant - ref[1]) * 60_000.0 / (ts - ref[0])
            _step(e, rate > cr.raise_c_per_min, rate < cr.clear_c_per_min, ts, coolant, m, out)

    @staticmethod
    def _fuel(
        m: _Machine, ts: int, was: bool | None, speed: float, fuel: float, out: list[AlarmEvent]
    ) -> None:
        """Fuel while off: below the level at engine stop (or the highest since)."""
        if m.running is False:
            level = None if isnan(fuel) else min(max(fuel, 0.0), 100.0)
            is_stop = was is not False
            if is_stop or (level is not None and (m.ref_fuel is None or level > m.ref_fuel)):
                m.ref_fuel = level
        else:
            m.ref_fuel = None
        e = m.eps[ev.FUEL_DROP_ENGINE_OFF]
        if speed > 0:
            _step(e, False, True, ts, fuel, m, out)
        elif speed == 0 and m.ref_fuel is not None and not isnan(fuel):
            drop = m.ref_fuel - fuel
            fd = m.th.fuel_drop_engine_off
            _step(e, drop > fd.raise_drop_pct, drop <= fd.clear_drop_pct, ts, fuel, m, out)

    @staticmethod
    def _battery(m: _Machine, ts: int, speed: float, battery: float, out: list[AlarmEvent]) -> None:
        """Battery low with the engine running long enough (without a speed, only a clear)."""
        if isnan(battery):
            return
        cf, e = m.th.charging_failure, m.eps[ev.CHARGING_FAILURE]
        if not isnan(speed):
            ran = speed > 0 and ts - m.run_start >= cf.min_running_s * 1000
            if speed > 0 and cf.raise_v <= battery < cf.raise_v + cf.raise_band_v:
                e.cc = 0  # noise about the threshold: neither counts nor breaks the raise run
                return
            _step(e, battery < cf.raise_v and ran, battery >= cf.clear_v, ts, battery, m, out)
        elif battery >= cf.clear_v:
            _step(e, False, True, ts, battery, m, out)
        else:
            e.cc = 0


def _step(
    e: _Episode,
    is_raise: bool,
    is_clear: bool,
    ts: int,
    value: float,
    m: _Machine,
    out: list[AlarmEvent],
) -> None:
    """One known reading of one fault: continue or break the runs, raise or clear."""
    higher_is_worse, fault = e.higher_is_worse, e.fault
    if is_raise:
        e.cc = 0
        if e.rc == 0:
            e.rs = ts
        e.rc += 1
        if e.active:
            e.hits += 1
            e.last_hit = ts
            if e.hits == 1 or (value > e.worst if higher_is_worse else value < e.worst):
                e.worst = value
        elif e.rc >= e.r_n and ts - e.rs >= e.r_ms:
            e.active, e.hits = True, 0
            out.append(
                AlarmEvent(
                    m.info.machine_id,
                    fault,
                    Transition.RAISED,
                    ts,
                    value=value,
                    worst=value,
                    higher_is_worse=higher_is_worse,
                    count=e.rc,
                    detail=f"{fault}: {value:,.1f} for {e.rc} readings",
                )
            )
    elif is_clear:
        e.rc = 0
        if e.cc == 0:
            e.cs = ts
        e.cc += 1
        if e.active and e.cc >= e.c_n and ts - e.cs >= e.c_ms:
            e.active = False
            out.append(
                AlarmEvent(
                    m.info.machine_id,
                    fault,
                    Transition.CLEARED,
                    ts,
                    value=value,
                    count=e.hits,
                    higher_is_worse=higher_is_worse,
                    detail=f"{fault}: {value:,.1f}, clear for {e.cc} readings",
                )
            )
            e.hits = 0
    else:
        e.rc = e.cc = 0


def run_naive(stream: Stream, rules: RuleBook, repeat: int) -> Run:
    """The loop over plain Python values (lists made beforehand, as a JSON decoder gives them)."""
    inputs = [
        (f.machine_ids, f.machine_idx.tolist(), f.ts_ms.tolist(), f.values.T.tolist())
        for f in stream.frames
    ]
    run = Run()
    for _ in range(repeat):
        naive = NaiveDiagnosis(rules, stream.infos)
        events: list[AlarmEvent] = []
        gc.collect()
        t0 = time.perf_counter()
        for ids, midx, ts, rows in inputs:
            events += naive.process(ids, midx, ts, rows)
        run.seconds.append(time.perf_counter() - t0)
        run.events = events
    return run


# -- report ------------------------------------------------------------------------------------


def _transitions(events: Sequence[AlarmEvent], kinds: set[Transition]) -> set[tuple[str, str, int]]:
    return {
        (e.machine_id, e.fault, e.ts_ms)
        for e in events
        if e.fault in NAIVE_FAULTS and e.transition in kinds
    }


def agreement(engine: Sequence[AlarmEvent], naive: Sequence[AlarmEvent]) -> list[str]:
    raised = ({(m, f) for m, f, _ in _transitions(x, {Transition.RAISED})} for x in (engine, naive))
    e_r, n_r = raised
    e_t = _transitions(engine, {Transition.RAISED, Transition.CLEARED})
    n_t = _transitions(naive, {Transition.RAISED, Transition.CLEARED})
    lines = [
        f"raised (machine, fault): engine {len(e_r):,}, naive {len(n_r):,}, in both "
        f"{len(e_r & n_r):,}" + ("  -> agree" if e_r == n_r else "  -> DIFFER"),
        f"RAISED and CLEARED at the same reading: {len(e_t & n_t):,} of {len(e_t | n_t):,}",
    ]
    for what, diff in (("engine only", e_r - n_r), ("naive only", n_r - e_r)):
        if diff:
            lines.append(f"  {what}: {sorted(diff)[:5]}")
    return lines


def describe(events: Sequence[AlarmEvent]) -> str:
    kinds = Counter(e.transition.value for e in events)
    faults = Counter(e.fault if not e.fault.startswith("dtc_") else "dtc_*" for e in events)
    top = ", ".join(f"{f} {c:,}" for f, c in faults.most_common(6))
    return (
        f"{len(events):,} events (raised {kinds['raised']:,}, updated {kinds['updated']:,}, "
        f"cleared {kinds['cleared']:,}); {top}"
    )


def scenario(
    name: str,
    stream: Stream,
    rules: RuleBook,
    models: dict[str, AnomalyScorer],
    args: argparse.Namespace,
) -> None:
    n = stream.readings
    per_frame = n / len(stream.frames)
    print(f"\n[{name}] {stream.faulty:,} faulty machines", flush=True)
    full = run_engine(stream, rules, models, args.repeat)
    rules_only = run_engine(stream, rules, {}, args.repeat)
    naive = run_naive(stream, rules, args.naive_repeat)
    gateway_s = 1 / GATEWAY_READINGS_PER_S
    rows = [("engine", full), ("engine-rules", rules_only), ("naive", naive)]
    for label, run in rows:
        best, median = run.best(n), run.median(n)
        line = f"  {label:13s} {best:>12,.0f} readings/s best  {median:>12,.0f} median"
        line += f"   {1e6 / best:6.3f} µs/reading"
        if label != "naive":
            line += f"   {best / naive.best(n):6.1f}x naive"
        print(line, flush=True)
    best = full.best(n)
    ms_per_frame = per_frame / best * 1000
    print(f"  engine: {ms_per_frame:,.0f} ms per frame of {per_frame:,.0f} readings (best)")
    per_m = full.windows / n * 1e6
    print(f"  windows scored by the model: {full.windows:,} ({per_m:,.0f} per 1M readings)")
    print(f"  engine: {describe(full.events)}")
    print(f"  naive:  {describe(naive.events)}")
    for line in agreement(rules_only.events, naive.events):
        print(f"  {line}")
    share = (1 / best) / gateway_s
    rules_best = rules_only.best(n)
    print(
        f"  goal: rules at >= {GOAL_READINGS_PER_S / 1e6:.0f} M readings/s on one core: "
        f"{rules_best / 1e6:.2f} M ({'met' if rules_best >= GOAL_READINGS_PER_S else 'NOT met'});"
        f" with the model too: {best / 1e6:.2f} M "
        f"({'also' if best >= GOAL_READINGS_PER_S else 'not'} at the goal)"
    )
    print(
        f"  engine cost per reading: {1e6 / best:.3f} µs = {share:.1%} of the gateway's "
        f"{gateway_s * 1e6:.2f} µs (goal < {GOAL_SHARE_OF_GATEWAY:.0%}: "
        f"{'met' if share < GOAL_SHARE_OF_GATEWAY else 'NOT met'})",
        flush=True,
    )


def pin_to_one_core() -> str:
    if not hasattr(os, "sched_setaffinity"):
        return "not pinned (no sched_setaffinity here)"
    cpus = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpus[-1]})
    return f"pinned to CPU {cpus[-1]} of {len(cpus)}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--machines", type=int, default=10_000)
    p.add_argument("--readings-per-frame", type=int, default=100, help="per machine, 1 a second")
    p.add_argument("--frames", type=int, default=4, help="consecutive frames in the stream")
    p.add_argument("--faulty", type=float, default=0.10, help="share of faulty machines")
    p.add_argument("--repeat", type=int, default=5, help="engine repetitions (best and median)")
    p.add_argument("--naive-repeat", type=int, default=2, help="naive loop repetitions")
    p.add_argument("--train-minutes", type=float, default=60.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--only", choices=("healthy", "faulty"), default=None, help="run one scenario only"
    )
    args = p.parse_args()
    print(pin_to_one_core(), flush=True)
    rules = RuleBook.load()
    t0 = time.perf_counter()
    trained, how = train_models(args, rules)
    models: dict[str, AnomalyScorer] = dict(trained)
    print(f"models: trained on {how} windows ({time.perf_counter() - t0:.0f} s)", flush=True)
    span_s = args.readings_per_frame * args.frames
    print(
        f"stream: {args.machines:,} machines (3 models) x {span_s} s at 1 reading/s, "
        f"{args.frames} frames of {args.machines * args.readings_per_frame:,} readings; "
        f"engine best of {args.repeat}, naive best of {args.naive_repeat}",
        flush=True,
    )
    shares = {"healthy": 0.0, "faulty": args.faulty}
    for name, share in shares.items():
        if args.only not in (None, name):
            continue
        stream = build_stream(args, share)
        scenario(name, stream, rules, models, args)
        del stream
        gc.collect()
    print(detector_speed(), flush=True)


def detector_speed(rows: int = 1_000, repeat: int = 20) -> str:
    """Scoring speed of the relation detector against the isolation forest's, as a ratio.

    Both score the same batch of `rows` six-column rows (a batch's windows of `MODEL_SIGNALS`
    residuals), each fitted on 20,000 such rows; best of `repeat`. The regime model now runs
    both per regime, so the engine figures above include the relation detector's cost.
    """
    rng = np.random.default_rng(0)
    train = rng.normal(size=(20_000, 6)) @ rng.normal(size=(6, 6))
    batch = rng.normal(size=(rows, 6)) @ rng.normal(size=(6, 6))
    contenders = {
        "forest": AnomalyDetector().fit(train).score,
        "relations": RelationDetector(method="regression", lags=0).fit(train).score,
    }
    best: dict[str, float] = {}
    for name, score in contenders.items():
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            score(batch)
            times.append(time.perf_counter() - t0)
        best[name] = min(times)
    ratio = best["forest"] / best["relations"]
    return (
        f"detectors on {rows:,} rows: isolation forest {best['forest'] * 1e6 / rows:.2f} us/row, "
        f"relations {best['relations'] * 1e6 / rows:.2f} us/row: relations {ratio:.1f}x faster"
    )


if __name__ == "__main__":
    main()
