"""Window means for the anomaly model: alignment, running readings only, carry across batches."""

from __future__ import annotations

from itertools import pairwise

import numpy as np

from diagnosis.frame import Frame
from diagnosis.signals import SIGNAL_INDEX
from diagnosis.state import Segments
from diagnosis.windows import (
    MODEL_SIGNALS,
    HistoryWindows,
    WindowAccumulator,
    Windows,
    is_counted,
    window_rows,
)
from tests.diagnosis.test_engine import T0, Stream, frame_of

WINDOW_S = 60.0


def _stream(n: int, seed: int = 0, machine: str = "m1", start_s: float = 0.0) -> Stream:
    rng = np.random.default_rng(seed)
    s = Stream(machine, start_s=start_s)
    for _ in range(n):
        s.add(
            engine_speed_rpm=float(rng.uniform(800, 2000)),
            oil_pressure_kpa=float(rng.uniform(100, 400)),
            coolant_temp_c=float(rng.uniform(80, 95)),
        )
    return s


def _push_in_batches(
    frame_parts: list[Frame], min_readings: int = 5, max_rpm_range: float = np.inf
) -> Windows:
    acc = WindowAccumulator(1)
    acc.configure(0, WINDOW_S, min_readings, max_rpm_range)
    found: list[Windows] = []
    for part in frame_parts:
        sg = Segments.of_frame(part.machine_idx, part.ts_ms, np.zeros(1, np.int64))
        found.append(acc.push(sg, part.values, is_counted(part.values)))
    found.append(acc.flush(np.zeros(1, np.int64)))
    return Windows(
        *(
            np.concatenate([getattr(w, f) for w in found])
            for f in ("slot", "start_ms", "end_ts_ms", "count")
        ),
        np.concatenate([w.means for w in found]),
        np.concatenate([w.rpm_range for w in found]),
    )


def test_windows_are_aligned_on_epoch_time() -> None:
    s = _stream(300, start_s=17.0)  # starts mid-window
    rows = window_rows(frame_of(s), WINDOW_S)
    assert (rows.start_ms % round(WINDOW_S * 1000) == 0).all()
    assert rows.count[0] == 60 - ((T0 // 1000 + 17) % 60)


def test_window_mean_is_the_mean_of_its_running_readings() -> None:
    s = _stream(120)
    frame = frame_of(s)
    rows = window_rows(frame, WINDOW_S)
    w = round(WINDOW_S * 1000)
    first = (frame.ts_ms // w) == (frame.ts_ms[0] // w)
    for k, name in enumerate(MODEL_SIGNALS):
        expected = frame.values[SIGNAL_INDEX[name], first].mean()
        assert np.isclose(rows.means[0, k], expected)


def test_engine_off_and_incomplete_readings_do_not_count() -> None:
    s = _stream(60)
    for i in range(0, 60, 3):
        s.rows[i]["engine_speed_rpm"] = 0.0
    s.rows[1]["battery_v"] = float("nan")
    rows = window_rows(frame_of(s), WINDOW_S)
    assert rows.count.tolist() == [60 - 20 - 1]


def test_sparse_window_is_dropped() -> None:
    s = Stream("m1", period_s=20.0).add(9)  # three readings per minute
    assert len(window_rows(frame_of(s), WINDOW_S, min_readings=5)) == 0
    assert len(window_rows(frame_of(s), WINDOW_S, min_readings=3)) == 3


def test_batch_cuts_do_not_change_windows() -> None:
    s = _stream(400, seed=3, start_s=7.0)
    whole = window_rows(frame_of(s), WINDOW_S)
    cuts = [0, 13, 14, 75, 200, 201, 333, 400]
    parts = [frame_of(s, lo=a, hi=b) for a, b in pairwise(cuts)]
    split = _push_in_batches(parts)
    assert split.start_ms.tolist() == whole.start_ms.tolist()
    assert split.count.tolist() == whole.count.tolist()
    assert np.allclose(split.means, whole.means)
    assert np.allclose(split.rpm_range, whole.rpm_range)


def test_window_is_emitted_when_a_later_reading_arrives() -> None:
    s = _stream(90, start_s=0.0)
    acc = WindowAccumulator(1)
    acc.configure(0, WINDOW_S, 5)
    zero = np.zeros(1, np.int64)
    first = frame_of(s, hi=30)
    sg = Segments.of_frame(first.machine_idx, first.ts_ms, zero)
    assert len(acc.push(sg, first.values, is_counted(first.values))) == 0
    off = Stream("m1", start_s=200.0).add(1, engine_speed_rpm=0.0)  # even with the engine off
    later = frame_of(off)
    sg = Segments.of_frame(later.machine_idx, later.ts_ms, zero)
    assert acc.push(sg, later.values, is_counted(later.values)).count.tolist() == [30]


def test_window_rows_keep_machines_apart() -> None:
    frame = frame_of(_stream(120, machine="a"), _stream(120, seed=1, machine="b"))
    rows = window_rows(frame, WINDOW_S)
    assert sorted(set(rows.slot.tolist())) == [0, 1]
    assert (np.diff(rows.slot) >= 0).all()


def test_unsteady_windows_are_dropped_wherever_the_batches_are_cut() -> None:
    s = Stream("m1")
    for i in range(240):
        # Steady at 1,800 rpm except for a drop to idle in the middle of the third minute.
        rpm = 800.0 if 140 <= i < 150 else 1800.0 + (i % 3)
        s.add(engine_speed_rpm=rpm, oil_pressure_kpa=300.0, coolant_temp_c=88.0)
    frame = frame_of(s)
    everything = window_rows(frame, WINDOW_S)
    assert len(everything) >= 4
    steady = window_rows(frame, WINDOW_S, max_rpm_range=300.0)
    assert len(steady) == len(everything) - 1
    dropped = set(everything.start_ms.tolist()) - set(steady.start_ms.tolist())
    (start,) = dropped
    ts_dip = frame.ts_ms[140]
    assert start <= ts_dip < start + round(WINDOW_S * 1000)
    assert (steady.rpm_range <= 2.0).all()
    for cut in (37, 139, 145, 151):
        parts = [frame_of(s, hi=cut), frame_of(s, lo=cut)]
        pushed = _push_in_batches(parts, max_rpm_range=300.0)
        assert pushed.start_ms.tolist() == steady.start_ms.tolist()
        np.testing.assert_allclose(pushed.rpm_range, steady.rpm_range)


def test_readings_of_the_first_minutes_after_each_engine_start_do_not_count() -> None:
    # Running from the first reading (a start), a stop with a reading without speed in it, a
    # restart: 90 s after each start do not count; the missing speed carries "off".
    s = Stream("m1").add(300).add(60, engine_speed_rpm=0.0).add(240)
    s.rows[330]["engine_speed_rpm"] = float("nan")
    frame = frame_of(s)
    every = window_rows(frame, WINDOW_S)
    settled = window_rows(frame, WINDOW_S, settle_s=90.0)
    assert every.count.sum() - settled.count.sum() == 2 * 90
    restart_ms = s.ts(360)
    counted_after = settled.end_ts_ms[settled.end_ts_ms > restart_ms]
    assert counted_after.min() >= restart_ms + 90_000
    assert int(settled.count.sum()) == (300 - 90) + (240 - 90)


def test_a_history_read_in_pieces_gives_the_windows_of_the_whole() -> None:
    # Engine starts and open windows carry from piece to piece, for several machines.
    streams = [
        _stream(400, seed=k, machine=f"m{k}", start_s=7.0 * k)
        .add(100, engine_speed_rpm=0.0)
        .add(300, engine_speed_rpm=1500.0)
        for k in range(3)
    ]
    whole = window_rows(frame_of(*streams), WINDOW_S, settle_s=90.0)
    history = HistoryWindows(WINDOW_S, settle_s=90.0)
    pieces = [history.push(frame_of(*streams, lo=lo, hi=lo + 37)) for lo in range(0, 800, 37)]
    pieces.append(history.flush())
    assert history.machine_ids == ("m0", "m1", "m2")
    got = sorted(
        (int(w.slot[i]), int(w.start_ms[i]), int(w.count[i]), w.means[i].tolist())
        for w in pieces
        for i in range(len(w))
    )
    want = sorted(
        (int(whole.slot[i]), int(whole.start_ms[i]), int(whole.count[i]), whole.means[i].tolist())
        for i in range(len(whole))
    )
    assert [g[:3] for g in got] == [w[:3] for w in want]
    np.testing.assert_allclose([g[3] for g in got], [w[3] for w in want], rtol=1e-12)
    assert 0 < sum(w[2] for w in want) <= 3 * ((400 - 90) + (300 - 90))
