"""The fleet model and the wire encoding, without any I/O."""

from __future__ import annotations

import math
from datetime import datetime

import numpy as np
import orjson
import pytest

from simulators.fleet import Fleet
from simulators.machines import MODEL_SPECS, MODELS, make_fleet
from simulators.state import OFF, TRAVELLING, WIRE_SIGNALS, Dtc, FleetState, Frame
from simulators.wire import encode_batch, encode_reading, frame_rows

T0_MS = 1_700_000_000_000

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


def simulate(
    machines: int = 60, steps: int = 600, period_ms: int = 10_000, seed: int = 7
) -> tuple[Fleet, list[Frame]]:
    fleet = Fleet(make_fleet(machines, seed=seed), seed=seed, start_ts_ms=T0_MS)
    frames = [fleet.step(T0_MS + (k + 1) * period_ms) for k in range(steps)]
    return fleet, frames


@pytest.fixture(scope="module")
def run_frames() -> tuple[Fleet, list[Frame]]:
    return simulate()


def stacked(frames: list[Frame], name: str) -> np.ndarray:
    return np.stack([f.signal(name) for f in frames])


def test_run_visits_every_state(run_frames: tuple[Fleet, list[Frame]]) -> None:
    _, frames = run_frames
    states = np.stack([f.state for f in frames])
    # Otherwise the invariants below would be checked on too little.
    assert set(np.unique(states).tolist()) == {0, 1, 2, 3}


def test_off_machines_report_zero_speed_and_oil_pressure(
    run_frames: tuple[Fleet, list[Frame]],
) -> None:
    _, frames = run_frames
    states = np.stack([f.state for f in frames])
    rpm, oil = stacked(frames, "engine_speed_rpm"), stacked(frames, "oil_pressure_kpa")
    is_off = states == OFF
    assert np.all(rpm[is_off] == 0.0)
    assert np.all(oil[is_off] == 0.0)
    assert np.all(rpm[~is_off] > 500.0)
    assert np.all(oil[~is_off] > 40.0)


def test_engine_speed_and_oil_pressure_follow_the_duty_cycle(
    run_frames: tuple[Fleet, list[Frame]],
) -> None:
    _, frames = run_frames
    states = np.stack([f.state for f in frames])
    rpm, oil = stacked(frames, "engine_speed_rpm"), stacked(frames, "oil_pressure_kpa")
    idle, working = states == 1, states == 2
    assert 650.0 < np.median(rpm[idle]) < 950.0
    assert 1600.0 < np.median(rpm[working]) < 2100.0
    assert 60.0 < np.median(oil[idle]) < 160.0
    assert 250.0 < np.median(oil[working]) < 500.0


def test_engine_hours_advance_exactly_while_running() -> None:
    period_ms = 10_000
    _, frames = simulate(machines=40, steps=500, period_ms=period_ms)
    hours = stacked(frames, "engine_hours")
    running = np.stack([f.state != OFF for f in frames])
    # Over each step, the state reported at its end held throughout it.
    step_h = np.diff(hours, axis=0)
    assert np.all(step_h[~running[1:]] == 0.0)
    assert np.allclose(step_h[running[1:]], period_ms / 3_600_000, atol=2e-4)
    running_h = running[1:].sum(axis=0) * period_ms / 3_600_000
    assert np.allclose(hours[-1] - hours[0], running_h, atol=1e-4)


def test_fuel_only_falls_except_at_refuel() -> None:
    _, frames = simulate(machines=50, steps=3_000, period_ms=60_000)
    fuel = stacked(frames, "fuel_level_pct")
    refuelled = np.stack([f.is_refuelled for f in frames])[1:]
    rises = np.diff(fuel, axis=0) > 0
    assert not np.any(rises & ~refuelled)
    assert refuelled.sum() > 0
    assert np.all((fuel[1:][refuelled] >= 92.0) & (fuel[1:][refuelled] <= 98.0))
    assert fuel.min() >= 0.0


def test_positions_stay_within_the_site(run_frames: tuple[Fleet, list[Frame]]) -> None:
    fleet, frames = run_frames
    lat, lon = stacked(frames, "lat"), stacked(frames, "lon")
    site_lat = np.array([m.site.lat for m in fleet.machines])
    site_lon = np.array([m.site.lon for m in fleet.machines])
    radius_m = np.array([m.site.radius_m for m in fleet.machines])
    north_m = (lat - site_lat) * 111_320.0
    east_m = (lon - site_lon) * 111_320.0 * np.cos(np.radians(site_lat))
    assert np.all(np.hypot(north_m, east_m) <= radius_m + 0.1)


def test_machines_move_only_while_travelling() -> None:
    fleet = Fleet(make_fleet(60, seed=3), seed=3, start_ts_ms=T0_MS)
    moved_while_travelling = 0
    for k in range(300):
        x, y = fleet.state.x_m.copy(), fleet.state.y_m.copy()
        frame = fleet.step(T0_MS + (k + 1) * 10_000)
        moved = (fleet.state.x_m != x) | (fleet.state.y_m != y)
        assert not np.any(moved & (frame.state != TRAVELLING))
        assert np.all(np.hypot(fleet.state.x_m, fleet.state.y_m) <= fleet.state.site_radius_m)
        moved_while_travelling += int(moved.sum())
    assert moved_while_travelling > 0


def test_signals_stay_in_the_physical_ranges(run_frames: tuple[Fleet, list[Frame]]) -> None:
    _, frames = run_frames
    for name in WIRE_SIGNALS:
        low, high = PHYSICAL_RANGE[name]
        values = stacked(frames, name)
        assert np.all(np.isfinite(values)), name
        assert values.min() >= low, name
        assert values.max() <= high, name


def test_battery_charges_while_running_and_rests_when_off(
    run_frames: tuple[Fleet, list[Frame]],
) -> None:
    _, frames = run_frames
    volts = stacked(frames, "battery_v")
    states = np.stack([f.state for f in frames])
    assert np.all((volts >= 24.0) & (volts <= 28.4))
    assert 27.0 < np.median(volts[states != OFF]) < 28.2
    assert 24.0 < np.median(volts[states == OFF]) < 25.0


def test_reading_times_are_unique_and_increasing_per_machine() -> None:
    offsets_ms = np.random.default_rng(1).integers(0, 1000, 30)
    fleet = Fleet(make_fleet(30), seed=1, start_ts_ms=T0_MS, offsets_ms=offsets_ms)
    ts = np.stack([fleet.step(T0_MS + (k + 1) * 1000).ts_ms for k in range(100)])
    assert np.all(np.diff(ts, axis=0) > 0)
    with pytest.raises(ValueError, match="not after"):
        fleet.step(T0_MS + 100 * 1000)


def test_same_seed_gives_the_same_readings() -> None:
    _, first = simulate(machines=20, steps=50, seed=11)
    _, again = simulate(machines=20, steps=50, seed=11)
    _, other = simulate(machines=20, steps=50, seed=12)
    assert all(np.array_equal(a.values, b.values) for a, b in zip(first, again, strict=True))
    assert not np.array_equal(first[-1].values, other[-1].values)


def test_modifiers_change_the_state_before_the_sensors_are_read() -> None:
    fleet = Fleet(make_fleet(5), seed=2, start_ts_ms=T0_MS)
    calls: list[tuple[int, float]] = []

    def low_oil_pressure(state: FleetState, ts_ms: int, dt_s: float) -> None:
        calls.append((ts_ms, dt_s))
        state.oil_pressure_kpa[0] = 0.0
        state.dtcs[0] = (Dtc(spn=100, fmi=1, oc=3),)

    fleet.modifiers.append(low_oil_pressure)
    frame = fleet.step(T0_MS + 2000)
    assert calls == [(T0_MS + 2000, 2.0)]
    assert frame.signal("oil_pressure_kpa")[0] == 0.0
    rows = frame_rows(frame)
    assert rows[0]["dtc"] == [{"spn": 100, "fmi": 1, "oc": 3}]
    assert all("dtc" not in row for row in rows[1:])


def test_rows_carry_every_signal_and_round_trip_as_json() -> None:
    _, frames = simulate(machines=3, steps=2)
    rows = frame_rows(frames[-1])
    doc = orjson.loads(encode_reading(rows[0]))
    assert set(doc) == {"ts", *WIRE_SIGNALS}
    assert type(doc["ts"]) is int
    assert all(isinstance(doc[name], float) for name in WIRE_SIGNALS)
    batch = orjson.loads(encode_batch(rows))
    assert batch == {"readings": rows}


def test_rfc3339_times_name_the_same_millisecond() -> None:
    _, frames = simulate(machines=3, steps=2)
    frame = frames[-1]
    for row, ts_ms in zip(frame_rows(frame, "rfc3339"), frame.ts_ms.tolist(), strict=True):
        text = row["ts"]
        assert isinstance(text, str)
        parsed = datetime.fromisoformat(text)
        assert parsed.utcoffset() is not None
        assert round(parsed.timestamp() * 1000) == ts_ms


def test_a_batch_holds_at_most_1000_readings() -> None:
    with pytest.raises(ValueError, match="at most 1000"):
        encode_batch([{"ts": i} for i in range(1001)])


def test_rosters_name_machines_customers_and_sites() -> None:
    fleet = make_fleet(25, id_prefix="T1", machines_per_customer=10, spread_km=5.0, centre_lat=31.2)
    assert [m.machine_id for m in fleet[:3]] == ["T1-EX-0001", "T1-PT-0002", "T1-CR-0003"]
    assert [m.model for m in fleet[:4]] == [*MODELS, "excavator"]
    assert {m.customer_id for m in fleet} == {"CUST-001", "CUST-002", "CUST-003"}
    for m in fleet:
        north_m = (m.site.lat - 31.2) * 111_320.0
        east_m = (m.site.lon - 121.5) * 111_320.0 * math.cos(math.radians(31.2))
        assert math.hypot(north_m, east_m) <= 5_000.0 + 1.0
        nominal = MODEL_SPECS[m.model].site_radius_m
        assert 0.8 * nominal - 0.1 <= m.site.radius_m <= 1.2 * nominal + 0.1
    assert fleet[0].registration_body()["site"] == {
        "lat": fleet[0].site.lat,
        "lon": fleet[0].site.lon,
        "radius_m": fleet[0].site.radius_m,
    }
