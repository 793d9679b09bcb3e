"""Fault injection: each kind changes its signals as stated, healthy machines stay untouched, and
the ground truth says when each fault became visible. Pure simulation except the last two tests,
which publish to the real Mosquitto at 127.0.0.1:1883."""

from __future__ import annotations

import argparse
import math
import uuid
from dataclasses import replace
from pathlib import Path

import numpy as np
import orjson
import pytest

from simulators import (
    FAULT_KINDS,
    FaultInjector,
    FaultPlan,
    FaultSpec,
    Fleet,
    GroundTruth,
    SimConfig,
    load_plan,
    make_fleet,
    plan_faults,
    read_ground_truth,
    run,
    save_plan,
    write_ground_truth,
)
from simulators.cli import _fault_plan, build_parser, main
from simulators.faults import DEFAULT_RAMP_S
from simulators.state import OFF, WIRE_SIGNALS, WORKING, Frame

T0_MS = 1_700_000_000_000
PERIOD_MS = 10_000
STEPS = 3_600  # ten hours
SEED = 5
H_MS = 3_600_000

# The physical ranges the backend accepts (wire contract v1, signal catalogue).
PHYSICAL_RANGE = {
    "engine_speed_rpm": (0.0, 8031.875),
    "oil_pressure_kpa": (0.0, 1000.0),
    "coolant_temp_c": (-40.0, 210.0),
    "hydraulic_oil_temp_c": (-40.0, 210.0),
    "fuel_level_pct": (0.0, 100.0),
    "battery_v": (0.0, 64.0),
    "engine_hours": (0.0, 1_000_000.0),
    "lat": (-90.0, 90.0),
    "lon": (-180.0, 180.0),
    "load_pct": (0.0, 250.0),
}

MACHINES = make_fleet(30, seed=SEED)
IDS = [m.machine_id for m in MACHINES]


def spec(n: int, kind: str, **fields: object) -> FaultSpec:
    """A fault on machine `n` from hour 1 for six hours unless `fields` say otherwise."""
    window: dict[str, object] = {"start_ts_ms": T0_MS + H_MS, "duration_s": 6 * 3600.0}
    return FaultSpec(kind=kind, machine_id=IDS[n], **{**window, **fields})  # type: ignore[arg-type]


SPECS = (
    spec(0, "low_oil_pressure"),
    spec(1, "low_oil_pressure", form="gradual", ramp_s=3600.0),
    spec(2, "engine_overheat"),
    spec(3, "engine_overheat", form="gradual"),
    spec(4, "coolant_rising_fast"),
    spec(5, "hydraulic_overheat"),
    spec(6, "hydraulic_overheat", form="gradual"),
    spec(7, "fuel_drop_engine_off", duration_s=8 * 3600.0),
    spec(8, "fuel_drop_engine_off", form="gradual"),
    spec(9, "charging_failure"),
    spec(10, "charging_failure", form="gradual"),
    spec(11, "engine_power_loss"),
    spec(12, "engine_power_loss", form="gradual", ramp_s=3600.0),
    spec(13, "machine_silent", duration_s=3600.0),
    spec(14, "outside_site", duration_s=3600.0),
    spec(15, "unexplained_anomaly", variant="oil_pressure_high"),
    spec(16, "unexplained_anomaly", variant="overcharging"),
    spec(17, "dtc", spn=3251, fmi=0, duration_s=1800.0),
    spec(18, "dtc", spn=97, fmi=15, oc=4, flapping=True, flap_readings=3, duration_s=1800.0),
    spec(19, "unexplained_anomaly", variant="oil_pressure_low_for_speed"),
)
HEALTHY = list(range(20, 30))


class Run:
    """Frames of one simulated run, with or without faults, and the means to read them."""

    def __init__(self, specs: tuple[FaultSpec, ...]) -> None:
        fleet = Fleet(MACHINES, seed=SEED, start_ts_ms=T0_MS)
        self.injector = FaultInjector(MACHINES, specs, seed=SEED)
        self.injector.attach(fleet)
        steps = [self.injector.step(fleet, T0_MS + (k + 1) * PERIOD_MS) for k in range(STEPS)]
        self.frames: list[Frame] = [frame for frame, _ in steps]
        self.is_sent = np.stack([sent for _, sent in steps])
        self.ts_ms = np.stack([f.ts_ms for f in self.frames])
        self.states = np.stack([f.state for f in self.frames])
        self.truth = {t.machine_id: t for t in self.injector.ground_truth()}

    def signal(self, name: str, n: int) -> np.ndarray:
        return np.array([f.signal(name)[n] for f in self.frames])

    def window(self, n: int) -> np.ndarray:
        """Mask of the steps at which machine `n`'s fault was in effect."""
        t = self.truth[IDS[n]]
        assert t.start_ts_ms is not None
        assert t.end_ts_ms is not None
        ts = self.ts_ms[:, n]
        return (ts >= t.start_ts_ms) & (ts < t.end_ts_ms)

    def at(self, n: int, ts_ms: int | None) -> int:
        assert ts_ms is not None
        return int(np.flatnonzero(self.ts_ms[:, n] == ts_ms)[0])


@pytest.fixture(scope="module")
def faulty() -> Run:
    return Run(SPECS)


@pytest.fixture(scope="module")
def healthy() -> Run:
    return Run(())


def test_healthy_machines_read_exactly_as_in_a_run_without_faults(
    faulty: Run, healthy: Run
) -> None:
    for f, h in zip(faulty.frames, healthy.frames, strict=True):
        assert np.array_equal(f.values[:, HEALTHY], h.values[:, HEALTHY])
        assert np.array_equal(f.ts_ms, h.ts_ms)
        assert {i: c for i, c in f.dtcs.items() if i in HEALTHY} == {}
    assert faulty.is_sent[:, HEALTHY].all()
    # Faults never touch the duty cycle, which is what keeps the shared random stream in step.
    assert np.array_equal(faulty.states, healthy.states)


def test_faulty_machines_read_as_healthy_before_their_fault(faulty: Run, healthy: Run) -> None:
    for n, s in enumerate(SPECS):
        before = faulty.ts_ms[:, n] < s.start_ts_ms
        for name in WIRE_SIGNALS:
            assert np.array_equal(
                faulty.signal(name, n)[before], healthy.signal(name, n)[before]
            ), (s.kind, name)


def test_every_fault_starts_becomes_visible_and_ends_in_order(faulty: Run) -> None:
    truths = faulty.injector.ground_truth()
    assert [t.machine_id for t in truths] == IDS[: len(SPECS)]
    for s, t in zip(SPECS, truths, strict=True):
        assert t.start_ts_ms is not None, s.kind
        assert t.visible_ts_ms is not None, s.kind
        assert t.end_ts_ms is not None, s.kind
        assert s.start_ts_ms <= t.start_ts_ms <= t.visible_ts_ms < t.end_ts_ms, s.kind
        assert t.planned_start_ts_ms == s.start_ts_ms
        assert t.planned_end_ts_ms == s.end_ts_ms
        assert t.criterion
        assert t.fault in t.faults


def test_faulty_signals_stay_in_the_physical_ranges(faulty: Run) -> None:
    for name, (low, high) in PHYSICAL_RANGE.items():
        values = np.stack([f.signal(name) for f in faulty.frames])
        assert np.all(np.isfinite(values)), name
        assert low <= values.min(), name
        assert values.max() <= high, name


def test_low_oil_pressure_keeps_a_fraction_of_the_healthy_pressure(
    faulty: Run, healthy: Run
) -> None:
    n, truth = 0, faulty.truth[IDS[0]]
    kept = float(truth.params["kept_fraction"])
    assert 0.35 <= kept <= 0.45
    on = faulty.window(n) & (faulty.states[:, n] != OFF)
    oil, oil_h = faulty.signal("oil_pressure_kpa", n), healthy.signal("oil_pressure_kpa", n)
    assert on.sum() > 30
    assert np.all(np.abs(oil[on] - kept * oil_h[on]) < 12.0)
    first = faulty.at(n, truth.visible_ts_ms)
    assert faulty.ts_ms[first, n] == truth.start_ts_ms or oil_h[first] > 0
    assert oil[first] < 0.6 * oil_h[first] + 4.0


def test_gradual_low_oil_pressure_falls_over_its_ramp(faulty: Run, healthy: Run) -> None:
    n, truth = 1, faulty.truth[IDS[1]]
    assert truth.start_ts_ms is not None
    on = faulty.window(n) & (healthy.signal("oil_pressure_kpa", n) > 0)
    ratio = faulty.signal("oil_pressure_kpa", n)[on] / healthy.signal("oil_pressure_kpa", n)[on]
    since_s = (faulty.ts_ms[on, n] - truth.start_ts_ms) / 1000.0
    early, late = ratio[since_s < 900], ratio[since_s > 3600]
    assert early.size
    assert late.size
    assert early.mean() > 0.8
    assert late.mean() < 0.5
    # Visible when the pressure is 60 % of healthy: 40 % of the way down, two thirds of the ramp.
    visible_s = (truth.visible_ts_ms - truth.start_ts_ms) / 1000.0  # type: ignore[operator]
    kept = float(truth.params["kept_fraction"])
    assert visible_s >= 0.4 / (1 - kept) * 3600.0 - 600.0


def two_minute_rates(ts_ms: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Rise per minute over each 2-minute span of 10-s readings."""
    span = 120_000 // PERIOD_MS
    return (values[span:] - values[:-span]) / ((ts_ms[span:] - ts_ms[:-span]) / 60_000.0)


def test_sudden_engine_overheat_climbs_fast_to_its_target(faulty: Run) -> None:
    n, truth = 2, faulty.truth[IDS[2]]
    coolant, window = faulty.signal("coolant_temp_c", n), faulty.window(n)
    target = float(truth.params["target_c"])
    assert 108.0 <= target <= 115.0
    assert target - 2.5 <= coolant[window].max() <= target + 2.5
    assert truth.faults == ("engine_overheat", "coolant_rising_fast")
    rates = two_minute_rates(faulty.ts_ms[:, n], coolant)
    hot = coolant[120_000 // PERIOD_MS :] > 90.0
    assert np.max(rates[hot & window[120_000 // PERIOD_MS :]]) >= 1.5
    first = faulty.at(n, truth.visible_ts_ms)
    assert coolant[first] >= 105.0
    assert np.all(coolant[window][: np.flatnonzero(np.flatnonzero(window) == first)[0]] < 105.0)


def test_gradual_engine_overheat_never_rises_fast(faulty: Run) -> None:
    n, truth = 3, faulty.truth[IDS[3]]
    coolant, window = faulty.signal("coolant_temp_c", n), faulty.window(n)
    assert truth.faults == ("engine_overheat",)
    assert coolant[window].max() >= 105.0
    # At most 0.6 °C/min: well below the 1.5 °C/min of coolant_rising_fast, sensor noise and all.
    rates = two_minute_rates(faulty.ts_ms[:, n], coolant)
    span = 120_000 // PERIOD_MS
    hot = (coolant[span:] > 90.0) & window[span:] & window[:-span]
    assert np.max(rates[hot]) < 1.5
    assert np.percentile(rates[hot], 99) < 1.2
    assert coolant[faulty.at(n, truth.visible_ts_ms)] >= 105.0


def test_coolant_rising_fast_climbs_from_running_temperature_and_stops_short_of_overheat(
    faulty: Run,
) -> None:
    n, truth = 4, faulty.truth[IDS[4]]
    coolant, window = faulty.signal("coolant_temp_c", n), faulty.window(n)
    assert truth.start_ts_ms is not None
    assert truth.end_ts_ms is not None
    assert coolant[faulty.at(n, truth.start_ts_ms)] >= 84.0
    assert coolant.max() < 105.0
    peak = float(truth.params["target_c"])
    assert coolant[window].max() >= peak - 1.5
    # 2-4 °C/min from ~85-93 °C to ~100-103 °C takes minutes, not hours.
    assert (truth.end_ts_ms - truth.start_ts_ms) / 60_000 < 15
    visible = faulty.at(n, truth.visible_ts_ms)
    earlier = np.flatnonzero(faulty.ts_ms[:, n] <= faulty.ts_ms[visible, n] - 120_000)[-1]
    rate = (coolant[visible] - coolant[earlier]) / (
        (faulty.ts_ms[visible, n] - faulty.ts_ms[earlier, n]) / 60_000
    )
    assert coolant[visible] > 90.0
    assert rate >= 1.5


@pytest.mark.parametrize("n", [5, 6])
def test_hydraulic_overheat_reaches_its_target(faulty: Run, n: int) -> None:
    truth = faulty.truth[IDS[n]]
    oil = faulty.signal("hydraulic_oil_temp_c", n)
    target = float(truth.params["target_c"])
    assert 98.0 <= target <= 110.0
    assert oil[faulty.window(n)].max() >= target - 1.5
    first = faulty.at(n, truth.visible_ts_ms)
    assert oil[first] >= 95.0
    assert oil[first - 1] < 95.0


def test_fuel_theft_drains_a_parked_machine_and_the_tank_is_topped_back(
    faulty: Run, healthy: Run
) -> None:
    n, truth = 7, faulty.truth[IDS[7]]
    fuel, fuel_h = faulty.signal("fuel_level_pct", n), healthy.signal("fuel_level_pct", n)
    window = faulty.window(n)
    assert np.all(faulty.states[window, n] == OFF)
    stolen = fuel_h[window] - fuel[window]
    assert float(truth.params["taken_pct"]) - 0.05 <= stolen.max() <= 40.0 + 0.05
    drained = np.flatnonzero(stolen >= stolen.max() - 0.01)[0]
    assert 100.0 <= drained * PERIOD_MS / 1000 <= 310.0  # 2-5 minutes
    assert faulty.signal("engine_speed_rpm", n)[faulty.at(n, truth.visible_ts_ms)] == 0.0
    end = faulty.at(n, truth.end_ts_ms)
    assert fuel[end] == fuel_h[end]
    assert faulty.frames[end].is_refuelled[n]
    assert np.array_equal(fuel[end:], fuel_h[end:])


def test_fuel_leak_loses_a_few_percent_an_hour_while_off(faulty: Run, healthy: Run) -> None:
    n, truth = 8, faulty.truth[IDS[8]]
    window = faulty.window(n)
    assert np.all(faulty.states[window, n] == OFF)
    lost = healthy.signal("fuel_level_pct", n)[window] - faulty.signal("fuel_level_pct", n)[window]
    hours = np.arange(window.sum()) * PERIOD_MS / H_MS
    rate = float(truth.params["rate_pct_per_min"]) * 60
    assert 4.0 <= rate <= 9.5
    assert np.allclose(lost, np.minimum(rate * hours, 15.0), atol=0.02)
    visible = faulty.at(n, truth.visible_ts_ms)
    assert 3.0 < lost[visible - np.flatnonzero(window)[0]] < 3.0 + rate * PERIOD_MS / H_MS + 0.02


def running_for_s(run: Run, n: int) -> np.ndarray:
    """Seconds the engine has been running at each reading of machine `n` (0 when off)."""
    out, since = np.zeros(STEPS), None
    rpm, ts = run.signal("engine_speed_rpm", n), run.ts_ms[:, n]
    for k in range(STEPS):
        since = None if rpm[k] == 0 else (since if since is not None else ts[k])
        out[k] = 0.0 if since is None else (ts[k] - since) / 1000
    return out


@pytest.mark.parametrize("n", [9, 10])
def test_charging_failure_lets_the_running_battery_fall(faulty: Run, n: int) -> None:
    truth = faulty.truth[IDS[n]]
    volts, window, running = (
        faulty.signal("battery_v", n),
        faulty.window(n),
        running_for_s(faulty, n),
    )
    visible = faulty.at(n, truth.visible_ts_ms)
    assert volts[visible] < 25.5
    assert running[visible] > 60
    ramped_ms = truth.visible_ts_ms + (DEFAULT_RAMP_S * 1000 if n == 10 else 0)  # type: ignore[operator]
    settled = window & (faulty.ts_ms[:, n] > ramped_ms) & (running > 120)
    assert settled.sum() > 30
    assert np.all(volts[settled] < 25.0)
    assert volts[settled].min() > 22.5
    before = ~window & (faulty.ts_ms[:, n] < truth.planned_start_ts_ms) & (running > 120)
    assert np.all(volts[before] > 26.8)


def test_gradual_charging_failure_fades(faulty: Run) -> None:
    n, truth = 10, faulty.truth[IDS[10]]
    assert truth.start_ts_ms is not None
    volts, running = faulty.signal("battery_v", n), running_for_s(faulty, n)
    since_s = (faulty.ts_ms[:, n] - truth.start_ts_ms) / 1000
    early = faulty.window(n) & (since_s < 300) & (running > 120)
    if early.any():
        assert volts[early].min() > 26.5


@pytest.mark.parametrize("n", [11, 12])
def test_engine_power_loss_drops_speed_under_full_load(faulty: Run, healthy: Run, n: int) -> None:
    truth = faulty.truth[IDS[n]]
    assert truth.start_ts_ms is not None
    working = faulty.window(n) & (faulty.states[:, n] == WORKING)
    rpm, rpm_h = faulty.signal("engine_speed_rpm", n), healthy.signal("engine_speed_rpm", n)
    load = faulty.signal("load_pct", n)
    since_s = (faulty.ts_ms[:, n] - truth.start_ts_ms) / 1000
    full = working & (since_s > (3600 if n == 12 else 0))
    assert full.sum() > 30
    drop = float(truth.params["speed_drop"])
    assert np.all(load[full] >= 95.0)
    assert np.all(rpm[full] <= (1 - drop) * rpm_h[full] + 0.1)
    assert np.all(rpm[full] < 0.8 * MACHINE_RATED[n])
    visible = faulty.at(n, truth.visible_ts_ms)
    assert load[visible] >= 85.0
    assert rpm[visible] <= 0.8 * rpm_h[visible] + 0.1
    if n == 12:  # gradual: barely any loss at first
        first = working & (since_s < 300)
        assert np.all(rpm[first] > 0.95 * rpm_h[first])
    idle = faulty.window(n) & (faulty.states[:, n] != WORKING)
    assert np.array_equal(rpm[idle], rpm_h[idle])


MACHINE_RATED = {
    n: {"excavator": 2000.0, "pump_truck": 1900.0, "crane": 2100.0}[m.model]
    for n, m in enumerate(MACHINES)
}


def test_machine_silent_drops_exactly_that_machines_readings_in_its_window(faulty: Run) -> None:
    n, truth = 13, faulty.truth[IDS[13]]
    dropped = ~faulty.is_sent
    assert np.array_equal(np.flatnonzero(dropped.any(axis=0)), [n])
    assert np.array_equal(dropped[:, n], faulty.window(n))
    start = faulty.at(n, truth.start_ts_ms)
    assert faulty.states[start, n] == WORKING
    assert truth.visible_ts_ms == truth.start_ts_ms
    assert truth.end_ts_ms == truth.planned_end_ts_ms + (faulty.ts_ms[0, n] - T0_MS - PERIOD_MS)


def test_outside_site_carries_the_fix_far_away_and_back(faulty: Run, healthy: Run) -> None:
    n, truth = 14, faulty.truth[IDS[14]]
    site = MACHINES[n].site
    north = (faulty.signal("lat", n) - site.lat) * 111_320.0
    east = (faulty.signal("lon", n) - site.lon) * 111_320.0 * math.cos(math.radians(site.lat))
    distance = np.hypot(north, east)
    window = faulty.window(n)
    assert distance[window].max() >= float(truth.params["distance_m"]) - site.radius_m
    first = faulty.at(n, truth.visible_ts_ms)
    assert distance[first] > site.radius_m + 100.0
    assert distance[first - 1] <= site.radius_m + 100.0
    # The truck leaves at 10-20 m/s: at most two readings from the gate to 100 m beyond it.
    assert (truth.visible_ts_ms - truth.start_ts_ms) / 1000 <= site.radius_m / 10 + 20  # type: ignore[operator]
    after = ~window & (faulty.ts_ms[:, n] >= truth.end_ts_ms)
    assert np.all(distance[after] <= site.radius_m)
    for name in ("lat", "lon"):
        assert np.array_equal(faulty.signal(name, n)[after], healthy.signal(name, n)[after])


def test_unexplained_anomalies_stay_clear_of_every_rule(faulty: Run, healthy: Run) -> None:
    oil_n, volts_n = 15, 16
    on = faulty.window(oil_n) & (faulty.states[:, oil_n] != OFF)
    oil = faulty.signal("oil_pressure_kpa", oil_n)
    oil_h = healthy.signal("oil_pressure_kpa", oil_n)
    level = float(faulty.truth[IDS[oil_n]].params["level"])
    assert 1.4 <= level <= 1.6
    assert np.all(np.abs(oil[on] - level * oil_h[on]) < 15.0)
    volts, running = faulty.signal("battery_v", volts_n), running_for_s(faulty, volts_n)
    charged = faulty.window(volts_n) & (running > 120)
    assert charged.sum() > 30
    assert np.all((volts[charged] >= 29.0) & (volts[charged] <= 31.0))
    for n in (oil_n, volts_n):
        assert faulty.truth[IDS[n]].faults == ("unexplained_anomaly",)
        window = faulty.window(n)
        assert faulty.signal("coolant_temp_c", n)[window].max() < 100.0
        assert faulty.signal("hydraulic_oil_temp_c", n)[window].max() < 88.0


def test_oil_pressure_too_low_for_the_speed_stays_in_range_and_above_both_limits(
    faulty: Run, healthy: Run
) -> None:
    n = 19
    truth = faulty.truth[IDS[n]]
    level = float(truth.params["level"])
    assert 0.75 <= level <= 0.85
    assert truth.faults == ("unexplained_anomaly",)
    assert truth.visible_ts_ms is not None
    running = faulty.window(n) & (faulty.signal("engine_speed_rpm", n) > 0.0)
    assert running.sum() > 100
    oil, oil_h = faulty.signal("oil_pressure_kpa", n), healthy.signal("oil_pressure_kpa", n)
    rpm = faulty.signal("engine_speed_rpm", n)
    assert np.array_equal(rpm, healthy.signal("engine_speed_rpm", n))
    state = Fleet(MACHINES, seed=SEED, start_ts_ms=T0_MS).state
    idle, rated = float(state.idle_rpm[n]), float(state.rated_rpm[n])
    rise = np.clip((rpm[running] - idle) / (rated - idle), 0.0, 1.0)
    # Right at idle, `level` of healthy at rated speed, in proportion in between (noise aside).
    assert np.all(np.abs(oil[running] - oil_h[running] * (1.0 - rise * (1.0 - level))) < 15.0)
    assert rise.max() > 0.8
    # Above the maker's curve (60 kPa at 800 rpm to 180 at 2000) and 65 % of the machine's own
    # healthy pressure: neither low-oil-pressure limit sees it.
    assert np.all(oil[running] > np.interp(rpm[running], [800.0, 2000.0], [60.0, 180.0]) + 20.0)
    assert np.all(oil[running] > 0.65 * oil_h[running] + 5.0)
    # And every reading on its own is one the healthy fleet also gives while running.
    fleet = np.concatenate(
        [healthy.signal("oil_pressure_kpa", h)[healthy.signal("engine_speed_rpm", h) > 0.0]
         for h in HEALTHY]
    )  # fmt: skip
    assert fleet.min() <= oil[running].min()
    assert oil[running].max() <= fleet.max()
    # Outside its window the machine reads as healthy.
    assert np.array_equal(oil[~faulty.window(n)], oil_h[~faulty.window(n)])


def codes_of(run: Run, n: int) -> list[tuple[int, int, int] | None]:
    out: list[tuple[int, int, int] | None] = []
    for frame in run.frames:
        codes = frame.dtcs.get(n, ())
        out.append((codes[0].spn, codes[0].fmi, codes[0].oc) if codes else None)
    return out


def test_a_steady_code_is_sent_for_exactly_its_window(faulty: Run) -> None:
    n, truth = 17, faulty.truth[IDS[17]]
    codes, window = codes_of(faulty, n), faulty.window(n)
    assert truth.fault == "dtc_3251_0"
    assert all(c == (3251, 0, 1) for c, w in zip(codes, window, strict=True) if w)
    assert all(c is None for c, w in zip(codes, window, strict=True) if not w)
    assert truth.visible_ts_ms == truth.start_ts_ms


def test_a_flapping_code_toggles_every_few_readings_and_counts_occurrences(faulty: Run) -> None:
    n, truth = 18, faulty.truth[IDS[18]]
    codes = [c for c, w in zip(codes_of(faulty, n), faulty.window(n), strict=True) if w]
    on = [c is not None for c in codes]
    assert on[:12] == [True] * 3 + [False] * 3 + [True] * 3 + [False] * 3
    counts = [c[2] for c in codes if c is not None]
    assert counts[:7] == [4, 4, 4, 5, 5, 5, 6]
    assert truth.fault == "dtc_97_15"


def test_the_ground_truth_file_round_trips(faulty: Run, tmp_path: Path) -> None:
    path = tmp_path / "truth.jsonl"
    truths = faulty.injector.ground_truth()
    write_ground_truth(path, truths)
    lines = path.read_bytes().splitlines()
    assert len(lines) == len(SPECS)
    first = orjson.loads(lines[0])
    assert first["kind"] == "low_oil_pressure"
    assert first["machine_id"] == IDS[0]
    assert {"start_ts_ms", "visible_ts_ms", "end_ts_ms", "criterion", "params"} <= set(first)
    assert read_ground_truth(path) == truths


def test_a_fault_that_never_gets_its_duty_is_recorded_as_never_started() -> None:
    fleet = Fleet(MACHINES[:3], seed=1, start_ts_ms=T0_MS)
    # Theft needs a long stop; a 2-minute window never leaves room for one.
    theft = FaultSpec("fuel_drop_engine_off", IDS[0], T0_MS, duration_s=120.0)
    injector = FaultInjector(MACHINES[:3], [theft], seed=1)
    injector.attach(fleet)
    for k in range(30):
        injector.step(fleet, T0_MS + (k + 1) * PERIOD_MS)
    (truth,) = injector.ground_truth()
    assert (truth.start_ts_ms, truth.visible_ts_ms, truth.end_ts_ms) == (None, None, None)


def test_a_plan_is_deterministic_and_puts_each_fault_on_its_own_machine() -> None:
    machines = make_fleet(40, seed=2)
    args = {"start_ts_ms": T0_MS, "horizon_s": 8 * 3600.0}
    plan = plan_faults(machines, FAULT_KINDS, 2, seed=9, **args)  # type: ignore[arg-type]
    assert plan == plan_faults(machines, FAULT_KINDS, 2, seed=9, **args)  # type: ignore[arg-type]
    assert plan != plan_faults(machines, FAULT_KINDS, 2, seed=10, **args)  # type: ignore[arg-type]
    assert len(plan) == 2 * len(FAULT_KINDS)
    assert len({s.machine_id for s in plan}) == len(plan)
    assert [s.kind for s in plan[::2]] == list(FAULT_KINDS)
    for s in plan:
        assert s.start_ts_ms >= T0_MS
        assert s.end_ts_ms <= T0_MS + 8 * H_MS
    with pytest.raises(ValueError, match="healthy machines"):
        plan_faults(machines[:5], FAULT_KINDS, 1, seed=1, **args)  # type: ignore[arg-type]


def test_a_plan_file_round_trips_and_counts_offsets_from_the_run_start(tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    save_plan(path, SPECS)
    assert load_plan(path).specs == SPECS
    relative = [{"kind": "dtc", "machine_id": IDS[0], "spn": 100, "fmi": 1, "start_offset_s": 60,
                 "duration_s": 540}]  # fmt: skip
    path.write_bytes(orjson.dumps(relative))
    (resolved,) = load_plan(path).resolve(MACHINES, T0_MS, 3600.0)
    assert resolved.start_ts_ms == T0_MS + 60_000
    assert resolved.end_ts_ms == T0_MS + 600_000
    path.write_bytes(orjson.dumps([{"kind": "dtc", "machine_id": IDS[0], "start_offset_s": 0}]))
    with pytest.raises(ValueError, match="fault 1"):
        load_plan(path)


def test_a_plan_mixes_fixed_and_random_faults_on_distinct_machines() -> None:
    plan = FaultPlan(specs=SPECS[:2], kinds=("machine_silent", "dtc"), per_kind=3, seed=4)
    specs = plan.resolve(MACHINES, T0_MS, 4 * 3600.0)
    assert specs[:2] == SPECS[:2]
    assert len({s.machine_id for s in specs}) == len(specs) == 8
    with pytest.raises(ValueError, match="not in the fleet"):
        FaultPlan(specs=(replace(SPECS[0], machine_id="NOPE"),)).resolve(MACHINES, T0_MS, None)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"kind": "machine_silent", "form": "gradual"}, "no gradual form"),
        ({"kind": "dtc"}, "needs spn and fmi"),
        ({"kind": "low_oil_pressure", "spn": 100}, "belong to kind dtc"),
        ({"kind": "bogus"}, "unknown fault kind"),
        ({"kind": "low_oil_pressure", "duration_s": 0.0}, "positive"),
        ({"kind": "engine_overheat", "variant": "overcharging"}, "anomalies only"),
    ],
)
def test_a_fault_spec_refuses_nonsense(fields: dict[str, object], message: str) -> None:
    base: dict[str, object] = {"machine_id": "M", "start_ts_ms": T0_MS, "duration_s": 60.0}
    with pytest.raises(ValueError, match=message):
        FaultSpec(**{**base, **fields})  # type: ignore[arg-type]


def test_the_command_line_builds_a_fault_plan(tmp_path: Path) -> None:
    parser = build_parser()
    args = parser.parse_args(["--faults", "all", "--faults-per-kind", "2", "--seed", "3"])
    plan = _fault_plan(args)
    assert plan is not None
    assert (plan.kinds, plan.per_kind, plan.seed) == (FAULT_KINDS, 2, 3)
    assert _fault_plan(parser.parse_args([])) is None
    path = tmp_path / "plan.json"
    save_plan(path, SPECS[:1])
    plan = _fault_plan(parser.parse_args(["--fault-plan", str(path)]))
    assert plan is not None
    assert plan.specs == SPECS[:1]
    with pytest.raises(SystemExit):
        parser.parse_args(["--faults", "low_oil_pressure,bogus"])
    assert isinstance(parser.parse_args(["--ground-truth", "x.jsonl"]), argparse.Namespace)


# -- through the real broker -------------------------------------------------------------------


def unique_prefix() -> str:
    return f"T{uuid.uuid4().hex[:10].upper()}"


def test_a_silenced_machine_publishes_nothing_in_its_window() -> None:
    machines = make_fleet(6, id_prefix=unique_prefix(), seed=3)
    config = SimConfig(
        machines=machines,
        readings_per_machine=720,
        period_s=10.0,
        batch_size=50,
        record_keys=True,
        progress=False,
        seed=3,
        faults=FaultPlan(kinds=("machine_silent",), per_kind=3, seed=3),
    )
    report = run(config)
    assert report.is_complete
    assert report.keys is not None
    silenced = [t for t in report.ground_truth if t.start_ts_ms is not None]
    assert silenced
    dropped = 0
    for truth in silenced:
        assert truth.end_ts_ms is not None
        assert truth.start_ts_ms is not None
        stamps = sorted(ts for machine, ts in report.keys if machine == truth.machine_id)
        inside = [ts for ts in stamps if truth.start_ts_ms <= ts < truth.end_ts_ms]
        assert inside == []
        assert truth.start_ts_ms - 10_000 in stamps
        assert truth.end_ts_ms in stamps
        dropped += (truth.end_ts_ms - truth.start_ts_ms) // 10_000
    assert report.readings == 6 * 720 - dropped
    assert len(report.keys) == report.readings


def test_the_command_line_writes_the_ground_truth(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "truth.jsonl"
    argv = ["--machines", "12", "--readings-per-machine", "360", "--period", "10", "--batch", "60"]
    argv += ["--id-prefix", unique_prefix(), "--no-progress", "--faults", "all"]
    assert main([*argv, "--ground-truth", str(path)]) == 0
    truths = read_ground_truth(path)
    assert sorted(t.kind for t in truths) == sorted(FAULT_KINDS)
    assert all(isinstance(t, GroundTruth) for t in truths)
    assert "11 faults injected" in capsys.readouterr().err
