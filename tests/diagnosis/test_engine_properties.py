"""Invariants of the engine: batch boundaries and machine order never change the alarms."""

from __future__ import annotations

import math
from dataclasses import replace
from itertools import pairwise

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from diagnosis.events import AlarmEvent, Transition
from diagnosis.frame import Frame
from tests.diagnosis.test_engine import RULES, Stream, engine_for, frame_of

T = RULES.default
PHASES: dict[str, dict[str, float]] = {
    "healthy": {},
    "overheat": {"coolant_temp_c": T.engine_overheat.raise_c + 2},
    "warm": {"coolant_temp_c": (T.engine_overheat.raise_c + T.engine_overheat.clear_c) / 2},
    "hydraulic": {"hydraulic_oil_temp_c": T.hydraulic_overheat.raise_c + 1},
    "low_oil": {"oil_pressure_kpa": 30.0},
    "no_coolant": {"coolant_temp_c": math.nan},
    "off": {"engine_speed_rpm": 0.0, "oil_pressure_kpa": 0.0, "battery_v": 24.6},
    "theft": {"engine_speed_rpm": 0.0, "oil_pressure_kpa": 0.0, "fuel_level_pct": 40.0},
    "battery": {"battery_v": T.charging_failure.raise_v - 1},
    "lugging": {"engine_speed_rpm": 1200.0, "load_pct": 95.0},
    "away": {"lat": 52.6},
    "dtc": {},
}

phase = st.tuples(st.sampled_from(sorted(PHASES)), st.integers(1, 40))
machine = st.lists(phase, min_size=1, max_size=6)


def _stream(machine_id: str, phases: list[tuple[str, int]], period_s: float) -> Stream:
    s = Stream(machine_id, period_s=period_s)
    for kind, n in phases:
        s.add(n, dtcs=[(100, 1, 2)] if kind == "dtc" else None, **PHASES[kind])
    return s


def _key(events: list[AlarmEvent]) -> list[tuple[object, ...]]:
    """Events that do not depend on batch boundaries (UPDATED are once per batch)."""
    return sorted(
        (e.machine_id, e.fault, e.transition, e.ts_ms, e.value)
        for e in events
        if e.transition is not Transition.UPDATED
    )


def _run(frames: list[Frame], ids: list[str]) -> list[AlarmEvent]:
    engine = engine_for(*ids)
    out: list[AlarmEvent] = []
    for f in frames:
        out += engine.process(f)
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    machines=st.lists(machine, min_size=1, max_size=4),
    period_s=st.sampled_from([1.0, 2.5]),
    order=st.randoms(use_true_random=False),
)
def test_machine_order_in_a_batch_does_not_change_the_alarms(
    machines: list[list[tuple[str, int]]], period_s: float, order: object
) -> None:
    ids = [f"m{i}" for i in range(len(machines))]
    streams = [_stream(m, p, period_s) for m, p in zip(ids, machines, strict=True)]
    shuffled = list(streams)
    order.shuffle(shuffled)  # type: ignore[attr-defined]
    # Renaming machines reorders them inside the frame as well.
    renamed = [
        Stream(f"z{9 - i}", s.period_s, s.start_s, s.rows, s.dtcs) for i, s in enumerate(streams)
    ]
    back = {f"z{9 - i}": f"m{i}" for i in range(len(streams))}
    plain = _run([frame_of(*streams)], ids)
    assert plain == _run([frame_of(*shuffled)], ids)
    moved = _run([frame_of(*renamed)], list(back))
    assert _key(plain) == _key([_rename(e, back[e.machine_id]) for e in moved])


def _rename(e: AlarmEvent, machine_id: str) -> AlarmEvent:
    return replace(e, machine_id=machine_id)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    machines=st.lists(machine, min_size=1, max_size=3),
    cuts=st.lists(st.integers(0, 250), max_size=6),
    per_machine=st.lists(st.integers(0, 250), min_size=3, max_size=3),
)
def test_batch_cuts_do_not_change_the_alarms(
    machines: list[list[tuple[str, int]]], cuts: list[int], per_machine: list[int]
) -> None:
    ids = [f"m{i}" for i in range(len(machines))]
    streams = [_stream(m, p, 1.0) for m, p in zip(ids, machines, strict=True)]
    whole = _key(_run([frame_of(*streams)], ids))
    # The same cut for every machine, at several points.
    bounds = sorted({0, *cuts, 10_000})
    parts = [frame_of(*streams, lo=a, hi=b) for a, b in pairwise(bounds)]
    assert _key(_run(parts, ids)) == whole
    # A different cut per machine: each batch holds some machines' early and others' late readings.
    first = [frame_of(s, hi=k) for s, k in zip(streams, per_machine, strict=False)]
    second = [frame_of(s, lo=k) for s, k in zip(streams, per_machine, strict=False)]
    engine = engine_for(*ids)
    out: list[AlarmEvent] = []
    for f in _merge(first), _merge(second):
        out += engine.process(f)
    assert _key(out) == whole


def _merge(frames: list[Frame]) -> Frame:
    """One frame of several single-machine frames."""
    ids = [f.machine_ids[i] for f in frames for i in f.machine_idx.tolist()]
    ts = np.concatenate([f.ts_ms for f in frames])
    values = np.concatenate([f.values for f in frames], axis=1)
    dtcs: list[list[tuple[int, int, int]] | None] = []
    for f in frames:
        per_row: list[list[tuple[int, int, int]] | None] = [None] * len(f)
        for row, spn, fmi, oc in zip(
            f.dtc_row.tolist(),
            f.dtc_spn.tolist(),
            f.dtc_fmi.tolist(),
            f.dtc_oc.tolist(),
            strict=True,
        ):
            per_row[row] = [*(per_row[row] or []), (spn, fmi, oc)]
        dtcs += per_row
    return Frame.build(ids, ts, values, dtcs)
