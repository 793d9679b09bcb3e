"""The relation detector: broken relations caught and named, healthy shifts not, limits kept."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from numpy.typing import NDArray

from diagnosis.model import NotEnoughDataError, NotFittedError, ShapeError
from diagnosis.relations import METHODS, RelationDetector, k_of_n, lagged

Rows = NDArray[np.float64]

SIGNALS = ("engine_speed_rpm", "coolant_temp_c", "oil_pressure_kpa", "load_pct")
SPEED, COOLANT, OIL, LOAD = range(4)


def machine(rng: np.random.Generator, n: int, speed_rpm: Rows | None = None) -> Rows:
    """Readings in which oil pressure follows engine speed and falls as the oil warms.

    Speed wanders slowly (an AR(1) process about 1,500 rpm, sd 250 rpm); load follows speed
    and coolant follows load; every signal is noisy. Load pins engine speed down, so a broken
    oil pressure cannot be mistaken for a wrong speed. On its own each signal varies widely; oil
    pressure given speed and coolant varies by its noise only (3 kPa).
    """
    if speed_rpm is None:
        speed_rpm = np.empty(n)
        level = 0.0
        for i in range(n):
            level = 0.95 * level + rng.normal(0.0, 80.0)
            speed_rpm[i] = 1500.0 + level
    load = 20.0 + 0.03 * (speed_rpm - 1000.0) + rng.normal(0.0, 1.0, n)
    coolant = 80.0 + 0.2 * load + rng.normal(0.0, 0.3, n)
    oil = 100.0 + 0.2 * speed_rpm - 10.0 * (coolant - 85.0) + rng.normal(0.0, 3.0, n)
    return np.column_stack([speed_rpm, coolant, oil, load])


@pytest.fixture(scope="module")
def fitted() -> RelationDetector:
    return RelationDetector().fit(machine(np.random.default_rng(1), 4000))


def test_oil_pressure_too_low_for_speed_is_caught_and_named(fitted: RelationDetector) -> None:
    rng = np.random.default_rng(2)
    x = machine(rng, 600)
    # 30 kPa low: ten noise spreads for the relation, but well inside oil pressure's own range.
    x[300:, OIL] -= 30.0
    lo, hi = np.percentile(machine(rng, 4000)[:, OIL], [1, 99])
    assert ((x[300:, OIL] > lo) & (x[300:, OIL] < hi)).mean() > 0.8
    alarms = fitted.decide(x)
    assert alarms[310:].mean() > 0.95
    assert alarms[:300].mean() < 0.01
    contributions = fitted.explain(x[310:])
    # With four signals the others' contributions come close (speed would explain much of it,
    # if load did not vouch for speed); oil pressure's is the largest nearly always.
    assert (np.argmax(np.abs(contributions), axis=1) == OIL).mean() > 0.9
    assert int(np.argmax(np.abs(contributions).mean(axis=0))) == OIL
    assert np.median(contributions[:, OIL]) < -5.0  # lower than the relation says
    assert set(fitted.partners()[OIL]) == {SPEED, COOLANT}


def test_a_healthy_shift_in_operating_point_is_not_caught(fitted: RelationDetector) -> None:
    rng = np.random.default_rng(3)
    # The machine goes from low speed to high speed and stays there: every signal moves with it.
    speed = np.where(np.arange(800) < 400, 1150.0, 1850.0) + rng.normal(0.0, 20.0, 800)
    x = machine(rng, 800, speed)
    assert abs(x[400:, OIL].mean() - x[:400, OIL].mean()) > 80.0
    assert fitted.decide(x).mean() < 0.01


def test_one_noisy_point_does_not_alarm(fitted: RelationDetector) -> None:
    x = machine(np.random.default_rng(4), 400)
    x[200, OIL] -= 60.0
    assert fitted.is_anomalous(x)[200]
    assert not fitted.decide(x)[195:206].any()


def test_k_of_n_needs_k_points_over_within_n() -> None:
    over = np.array([1, 0, 1, 0, 0, 1, 1, 1, 0, 0], dtype=bool)
    assert k_of_n(over, 2, 3).tolist() == [0, 0, 1, 0, 0, 0, 1, 1, 1, 0]
    assert k_of_n(over, 1, 4).tolist() == over.tolist()
    assert k_of_n(np.zeros(0, bool), 3, 4).shape == (0,)


@pytest.mark.parametrize("method", METHODS)
def test_limits_hold_the_stated_false_alarm_rate_on_fresh_healthy_data(method: str) -> None:
    det = RelationDetector(method=method, alpha=0.01).fit(  # type: ignore[arg-type]
        machine(np.random.default_rng(5), 5000)
    )
    fresh = machine(np.random.default_rng(6), 20_000)
    rate = float(det.is_anomalous(fresh).mean())
    assert 0.005 < rate < 0.015, rate
    assert float(det.decide(fresh).mean()) < rate / 2


def test_saved_detector_scores_the_same(fitted: RelationDetector) -> None:
    x = machine(np.random.default_rng(7), 300)
    x[150:, OIL] += 20.0
    back = RelationDetector.from_state(pickle.loads(pickle.dumps(fitted.state())))
    np.testing.assert_array_equal(back.score(x), fitted.score(x))
    np.testing.assert_array_equal(back.explain(x), fitted.explain(x))
    assert back.partners() == fitted.partners()
    damaged = fitted.state() | {"mean": np.zeros(3)}
    with pytest.raises(ValueError, match="feature count"):
        RelationDetector.from_state(damaged)


def test_rows_with_missing_values_are_not_scored(fitted: RelationDetector) -> None:
    x = machine(np.random.default_rng(8), 50)
    x[10, COOLANT] = np.nan
    s = fitted.score(x)
    assert np.isnan(s[10])
    assert np.isfinite(np.delete(s, 10)).all()
    assert not fitted.is_anomalous(x)[10]
    assert np.isnan(fitted.explain(x)[10]).all()


def test_errors() -> None:
    with pytest.raises(NotFittedError):
        RelationDetector().score(np.zeros((3, 4)))
    with pytest.raises(NotEnoughDataError):
        RelationDetector().fit(np.zeros((50, 4)))
    with pytest.raises(ShapeError):
        RelationDetector().fit(np.zeros(500))
    with pytest.raises(ValueError, match="method"):
        RelationDetector(method="svm")  # type: ignore[arg-type]


def test_lagged_rows_carry_the_readings_before() -> None:
    x = np.arange(6.0).reshape(3, 2)
    assert lagged(x, 1).tolist() == [[0, 1, 0, 1], [2, 3, 0, 1], [4, 5, 2, 3]]
    assert lagged(x, 0) is x
