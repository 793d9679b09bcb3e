"""The work-summary formulas on their own: readings in, slot contributions out (no server)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from diagnosis.rules import RuleBook
from telematics.summaries.usage import SLOT_MS, Batch, Tail, Usage, contributions

LIMITS = RuleBook.load().default.usage
T0 = 1_796_000_400_000 // SLOT_MS * SLOT_MS  # a slot boundary
NAN = float("nan")


def batch(rows: list[dict[str, float]], machine: int = 0) -> Batch:
    def col(name: str) -> np.ndarray:
        return np.asarray([r.get(name, NAN) for r in rows], np.float64)

    return Batch(
        machine_idx=np.full(len(rows), machine, np.int64),
        ts_ms=np.asarray([int(r["ts"]) for r in rows], np.int64),
        rpm=col("rpm"),
        load_pct=col("load"),
        fuel_pct=col("fuel"),
        hours=col("hours"),
        lat=col("lat"),
        lon=col("lon"),
    )


def run(
    rows: list[dict[str, float]], cuts: list[int] | None = None
) -> tuple[dict[str, float], Usage]:
    """Feed `rows` in pieces cut at `cuts`; totals of every column over all slots."""
    tails: list[Tail | None] = [None]
    totals: dict[str, float] = {}
    bounds = [0, *(cuts or []), len(rows)]
    usage = None
    for lo, hi in itertools.pairwise(bounds):
        usage = contributions(batch(rows[lo:hi]), tails, [LIMITS], 300_000)
        tails = [usage.tails.get(0, tails[0])]
        for name in (
            "known_s",
            "working_s",
            "idle_s",
            "engine_h",
            "fuel_used_pct",
            "refuel_pct",
            "distance_m",
            "meter_anomalies",
        ):
            totals[name] = totals.get(name, 0.0) + float(usage.slots.column(name).sum())
    assert usage is not None
    return totals, usage


def every(start_ms: int, seconds: int, step_s: int = 10, **values: float) -> list[dict[str, float]]:
    return [{"ts": start_ms + i * step_s * 1000, **values} for i in range(seconds // step_s)]


def test_working_idle_and_off_are_time_weighted() -> None:
    rows = (
        every(T0, 3600, rpm=1800, load=60)  # working an hour
        + every(T0 + 3600_000, 1800, rpm=800, load=5)  # idle half an hour
        + every(T0 + 5400_000, 600, rpm=0)  # off ten minutes
        + [{"ts": T0 + 6000_000, "rpm": 0}]
    )
    totals, _ = run(rows)
    assert totals["working_s"] == pytest.approx(3600)
    assert totals["idle_s"] == pytest.approx(1800)
    assert totals["known_s"] == pytest.approx(6000)


def test_no_load_reported_uses_engine_speed_near_idle() -> None:
    rows = every(T0, 600, rpm=1500) + every(T0 + 600_000, 600, rpm=850) + [{"ts": T0 + 1200_000}]
    totals, _ = run(rows)
    assert totals["working_s"] == pytest.approx(600)
    assert totals["idle_s"] == pytest.approx(600)


def test_a_gap_longer_than_the_setting_is_unknown_not_running() -> None:
    rows = [
        {"ts": T0, "rpm": 1800, "load": 50},
        {"ts": T0 + 301_000, "rpm": 1800, "load": 50},
        {"ts": T0 + 311_000, "rpm": 1800, "load": 50},
    ]
    totals, _ = run(rows)
    assert totals["known_s"] == pytest.approx(10)
    assert totals["working_s"] == pytest.approx(10)


def test_an_interval_is_split_exactly_at_the_slot_boundary() -> None:
    rows = [
        {"ts": T0 + SLOT_MS - 100_000, "rpm": 1800, "load": 50, "hours": 100.0},
        {"ts": T0 + SLOT_MS + 100_000, "rpm": 1800, "load": 50, "hours": 100.05},
    ]
    _, usage = run(rows)
    assert usage.slots.slot_ms.tolist() == [T0, T0 + SLOT_MS]
    assert usage.slots.column("working_s").tolist() == pytest.approx([100, 100])
    assert usage.slots.column("engine_h").tolist() == pytest.approx([0.025, 0.025])
    assert usage.slots.first_start_ms.tolist() == [T0 + SLOT_MS - 100_000, T0 + SLOT_MS]
    assert usage.slots.last_stop_ms.tolist() == [T0 + SLOT_MS, T0 + SLOT_MS + 100_000]


def test_cutting_the_stream_into_batches_changes_nothing() -> None:
    rng = np.random.default_rng(7)
    rows = []
    level, hours, lat = 80.0, 1000.0, 31.2
    for i in range(2000):
        rpm = float(rng.choice([0.0, 800.0, 1800.0]))
        level -= 0.01 if rpm else 0.0
        if i == 900:
            level += 30.0  # a refuel
        hours += 5 / 3600 if rpm else 0.0
        lat += 0.0002 if rpm == 1800 else 0.0
        noisy = level + float(rng.uniform(-0.3, 0.3))
        rows.append(
            {
                "ts": T0 + i * 5000 + int(rng.integers(0, 3)) * 1000,
                "rpm": rpm,
                "load": float(rng.uniform(0, 90)),
                "fuel": noisy,
                "hours": round(hours, 2),
                "lat": lat,
                "lon": 121.5,
            }
        )
    whole, _ = run(rows)
    cut, _ = run(
        rows, cuts=sorted(int(c) for c in rng.choice(np.arange(1, 2000), 25, replace=False))
    )
    assert cut == pytest.approx(whole)
    assert whole["refuel_pct"] > 29.0


def test_a_backwards_counter_is_flagged_and_not_summed() -> None:
    rows = [
        {"ts": T0 + i * 60_000, "rpm": 1800, "load": 50, "hours": h}
        for i, h in enumerate([100.0, 100.0, 100.1, 95.0, 95.0, 95.1])
    ]
    totals, usage = run(rows)
    assert [(a.reason, a.previous_h, a.value_h) for a in usage.anomalies] == [
        ("backwards", 100.1, 95.0)
    ]
    assert totals["meter_anomalies"] == 1
    assert totals["engine_h"] == pytest.approx(0.2)


def test_a_counter_jumping_faster_than_the_clock_is_flagged() -> None:
    rows = [{"ts": T0, "hours": 10.0}, {"ts": T0 + 60_000, "hours": 12.0}]
    totals, usage = run(rows)
    assert [a.reason for a in usage.anomalies] == ["too_fast"]
    assert totals["engine_h"] == 0


def test_fuel_noise_does_not_add_up_to_consumption() -> None:
    rng = np.random.default_rng(3)
    rows = [
        {"ts": T0 + i * 10_000, "fuel": 50.0 + float(rng.uniform(-0.3, 0.3))} for i in range(3000)
    ]
    totals, _ = run(rows, cuts=[500, 1500])
    assert totals["fuel_used_pct"] <= 0.6
    assert totals["refuel_pct"] == 0


def test_a_refuel_is_one_event_at_the_start_of_the_rise() -> None:
    levels = [60.0, 59.0, 58.0, 58.0, 62.0, 70.0, 80.0, 90.0, 90.0, 89.8, 89.0, 88.0]
    rows = [{"ts": T0 + i * 30_000, "fuel": v} for i, v in enumerate(levels)]
    totals, usage = run(rows, cuts=[5])
    assert totals["fuel_used_pct"] == pytest.approx(2.0 + 2.0)  # 60 -> 58, then 90 -> 88
    assert totals["refuel_pct"] == pytest.approx(32.0)
    assert [(r.ts_ms, r.added_pct) for r in usage.refuels] == [(T0 + 3 * 30_000, 32.0)]


def test_gps_jitter_adds_no_distance() -> None:
    rng = np.random.default_rng(1)
    rows = [
        {
            "ts": T0 + i * 1000,
            "lat": 31.2 + float(rng.normal(0, 2e-5)),
            "lon": 121.5 + float(rng.normal(0, 2e-5)),
        }
        for i in range(3000)
    ]
    totals, _ = run(rows, cuts=[1000])
    assert totals["distance_m"] == 0


def test_moving_adds_the_distance_travelled() -> None:
    rows = [{"ts": T0 + i * 10_000, "lat": 31.2 + i * 0.001, "lon": 121.5} for i in range(11)]
    totals, _ = run(rows, cuts=[4])
    assert totals["distance_m"] == pytest.approx(1111.95, abs=1.0)
