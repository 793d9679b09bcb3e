"""The anomaly model: detection, regimes, calibration, serialisation, missing data."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from numpy.typing import NDArray
from sklearn.datasets import load_breast_cancer, load_wine
from sklearn.ensemble import IsolationForest
from sklearn.metrics import roc_auc_score

from diagnosis.model import (
    MODEL_SIGNALS,
    NOT_SCORED,
    REGIMES,
    WARM_MIN_COOLANT_C,
    AnomalyDetector,
    MachineIdsError,
    ModelFormatError,
    NotEnoughDataError,
    NotFittedError,
    RegimeModel,
    ShapeError,
    _flat_forest,
    read_header,
    regime_index,
)

Rows = NDArray[np.float64]

COL = {name: i for i, name in enumerate(MODEL_SIGNALS)}
TREES = 50  # enough for stable tests, half the production default for speed

# Healthy window means per regime, in MODEL_SIGNALS order (rpm, load, oil, coolant, hyd, battery),
# as the fleet's average. Full load runs hotter and with more oil pressure than idle.
MEANS = {
    0: (800.0, 12.0, 250.0, 82.0, 55.0, 27.8),
    1: (1500.0, 45.0, 400.0, 88.0, 65.0, 27.7),
    2: (1950.0, 82.0, 480.0, 94.0, 74.0, 27.6),
}
# How far one machine's windows spread about its own settings ...
SDS = {
    0: (5.0, 5.0, 3.0, 2.0, 3.0, 0.02),
    1: (100.0, 10.0, 8.0, 2.0, 3.0, 0.03),
    2: (50.0, 7.0, 8.0, 2.0, 3.0, 0.03),
}
# ... and how far machines' settings lie apart: idle speed, oil pressure (a factor), charging.
BETWEEN_IDLE_RPM, BETWEEN_OIL, BETWEEN_BATTERY_V = 40.0, 0.1, 0.25
LOAD_BOUNDS = {0: (0.0, 24.9), 1: (25.0, 64.9), 2: (65.0, 110.0)}
MACHINES = tuple(f"EX-{i:02d}" for i in range(24))


class Fleet:
    """Machines of one model, each with its own idle speed, oil pressure and charging voltage."""

    def __init__(self, rng: np.random.Generator, ids: tuple[str, ...] = MACHINES) -> None:
        self.ids = ids
        self.idle_rpm = rng.normal(0.0, BETWEEN_IDLE_RPM, len(ids))
        self.oil = 1.0 + rng.normal(0.0, BETWEEN_OIL, len(ids))
        self.battery_v = rng.normal(0.0, BETWEEN_BATTERY_V, len(ids))
        self.oil_slope = rng.uniform(0.15, 0.25, len(ids))

    def healthy(
        self,
        rng: np.random.Generator,
        n: int,
        shares: tuple[float, float, float] = (0.4, 0.4, 0.2),
        machine: int | None = None,
    ) -> tuple[Rows, list[str]]:
        """Healthy windows of random machines (or of `machine`), oil pressure following speed."""
        regimes = rng.choice(3, size=n, p=shares)
        m = rng.integers(0, len(self.ids), n) if machine is None else np.full(n, machine)
        rows = np.empty((n, len(MODEL_SIGNALS)))
        for r in range(3):
            is_r = regimes == r
            rows[is_r] = rng.normal(MEANS[r], SDS[r], size=(int(is_r.sum()), len(MODEL_SIGNALS)))
            rows[is_r, COL["load_pct"]] = np.clip(rows[is_r, COL["load_pct"]], *LOAD_BOUNDS[r])
            speed_dev = rows[is_r, COL["engine_speed_rpm"]] - MEANS[r][0]
            rows[is_r, COL["oil_pressure_kpa"]] += self.oil_slope[m[is_r]] * speed_dev
        is_idle = regimes == 0
        rows[is_idle, COL["engine_speed_rpm"]] += self.idle_rpm[m[is_idle]]
        rows[:, COL["oil_pressure_kpa"]] *= self.oil[m]
        rows[:, COL["battery_v"]] += self.battery_v[m]
        return rows, [self.ids[i] for i in m.tolist()]


FLEET = Fleet(np.random.default_rng(0))


@pytest.fixture(scope="module")
def model() -> RegimeModel:
    rows, ids = FLEET.healthy(np.random.default_rng(1), 20_000)
    return RegimeModel("excavator", n_estimators=TREES, seed=7).fit(rows, ids, trained_at_ms=1_000)


def auc(normal_scores: Rows, anomalous_scores: Rows) -> float:
    labels = np.r_[np.zeros(len(normal_scores)), np.ones(len(anomalous_scores))]
    return float(roc_auc_score(labels, np.r_[normal_scores, anomalous_scores]))


# --- AnomalyDetector: any matrix ---------------------------------------------------------------


def test_detector_separates_shifted_rows_from_healthy() -> None:
    # Columns on very different scales; the anomalies move three of eight columns by 4 sigma.
    # (A forest alone is weak on a shift of one column of many, however large: AUC about 0.73
    # here. That is why RegimeModel adds the largest z-score to its score.)
    rng = np.random.default_rng(2)
    scales = rng.uniform(0.5, 50.0, size=8)
    train = rng.normal(size=(3_000, 8)) * scales
    normal = rng.normal(size=(500, 8)) * scales
    shifted = rng.normal(size=(500, 8)) * scales
    shifted[:, [1, 3, 5]] += 4.0 * scales[[1, 3, 5]]
    det = AnomalyDetector(n_estimators=TREES, seed=0).fit(train)
    assert auc(det.score(normal), det.score(shifted)) >= 0.95  # measured: 0.99


@pytest.mark.parametrize(
    ("loader", "normal_class", "anomalous_class", "min_auc"),
    [
        # measured with seed 0 and 50 trees: 0.965 and 0.968
        pytest.param(load_breast_cancer, 1, 0, 0.93, id="breast_cancer_benign_vs_malignant"),
        pytest.param(load_wine, 0, 2, 0.93, id="wine_class0_vs_class2"),
    ],
)
def test_detector_separates_classes_of_a_real_data_set(
    loader: object, normal_class: int, anomalous_class: int, min_auc: float
) -> None:
    x, y = loader(return_X_y=True)  # type: ignore[operator]
    normal_idx = np.random.default_rng(0).permutation(np.flatnonzero(y == normal_class))
    split = len(normal_idx) * 2 // 3
    det = AnomalyDetector(n_estimators=TREES, seed=0).fit(x[normal_idx[:split]])
    held_out = det.score(x[normal_idx[split:]])
    anomalous = det.score(x[y == anomalous_class])
    assert auc(held_out, anomalous) >= min_auc


def test_detector_drops_nan_rows_in_fit_and_counts_them() -> None:
    x = np.random.default_rng(3).normal(size=(200, 4))
    x[[5, 17], 1] = np.nan
    x[40, 3] = np.inf
    det = AnomalyDetector(n_estimators=10).fit(x)
    assert (det.n_rows, det.n_dropped, det.n_features) == (197, 3, 4)


def test_detector_scores_rows_with_nan_as_nan() -> None:
    x = np.random.default_rng(4).normal(size=(200, 4))
    det = AnomalyDetector(n_estimators=10).fit(x)
    probe = x[:3].copy()
    probe[1, 2] = np.nan
    scores = det.score(probe)
    assert np.isnan(scores[1])
    assert np.isfinite(scores[[0, 2]]).all()
    assert np.isnan(det.score(np.full((2, 4), np.nan))).all()
    assert det.score(np.empty((0, 4))).shape == (0,)


def test_detector_with_too_few_rows_raises_not_enough_data() -> None:
    x = np.ones((12, 3))
    x[:5, 0] = np.nan
    with pytest.raises(NotEnoughDataError) as exc_info:
        AnomalyDetector().fit(x)
    assert (exc_info.value.rows, exc_info.value.needed) == (7, AnomalyDetector.MIN_ROWS)


def test_detector_explain_names_shifted_column_and_survives_constant_columns() -> None:
    rng = np.random.default_rng(5)
    x = np.c_[rng.normal(size=(500, 3)), np.zeros(500)]  # last column constant
    det = AnomalyDetector(n_estimators=10).fit(x)
    probe = np.array([[0.1, -0.2, 6.0, 0.0]])
    z = det.explain(probe)
    assert int(np.argmax(np.abs(z[0]))) == 2
    assert np.isfinite(z).all()


def test_detector_refuses_use_before_fit_and_wrong_shapes() -> None:
    with pytest.raises(NotFittedError):
        AnomalyDetector().score(np.zeros((1, 3)))
    det = AnomalyDetector(n_estimators=10).fit(np.random.default_rng(6).normal(size=(50, 3)))
    with pytest.raises(ShapeError) as exc_info:
        det.score(np.zeros((1, 4)))
    assert (exc_info.value.expected, exc_info.value.shape) == (3, (1, 4))
    with pytest.raises(ShapeError):
        det.score(np.zeros(3))


# --- regimes -----------------------------------------------------------------------------------


def test_regime_index_bins_rows_by_load_and_leaves_engine_off_unscored() -> None:
    rows = np.full((7, len(MODEL_SIGNALS)), 1.0)
    rows[:, COL["coolant_temp_c"]] = 85.0
    rows[:, COL["engine_speed_rpm"]] = [0.0, 250.0, 800.0, 1500.0, 1500.0, 2000.0, np.nan]
    rows[:, COL["load_pct"]] = [0.0, 10.0, 24.9, 25.0, 64.9, 65.0, 50.0]
    assert regime_index(rows).tolist() == [NOT_SCORED, NOT_SCORED, 0, 1, 1, 2, NOT_SCORED]


def test_regime_index_leaves_a_warming_engine_unscored() -> None:
    rows = np.tile(np.array([MEANS[1]]), (3, 1))
    rows[:, COL["coolant_temp_c"]] = [40.0, WARM_MIN_COOLANT_C - 0.1, WARM_MIN_COOLANT_C]
    assert regime_index(rows).tolist() == [NOT_SCORED, NOT_SCORED, 1]


def test_full_load_row_at_idle_speed_is_anomalous_but_normal_at_full_load(
    model: RegimeModel,
) -> None:
    full_load, ids = FLEET.healthy(np.random.default_rng(16), 1, shares=(0, 0, 1), machine=3)
    full_load[0] = MEANS[2]
    full_load[0, COL["oil_pressure_kpa"]] *= FLEET.oil[3]
    full_load[0, COL["battery_v"]] += FLEET.battery_v[3]
    at_idle = full_load.copy()
    at_idle[0, COL["engine_speed_rpm"]] = MEANS[0][0] + FLEET.idle_rpm[3]
    at_idle[0, COL["load_pct"]] = MEANS[0][1]
    assert model.score(full_load, ids)[0] < 0.8
    assert model.score(at_idle, ids)[0] > 1.5
    z = model.explain(at_idle, ids)[0]
    assert z[COL["coolant_temp_c"]] > 5.0
    assert z[COL["oil_pressure_kpa"]] > 5.0


# --- machines judged against their own baseline -------------------------------------------------


def test_unusual_but_healthy_machine_is_judged_against_its_own_baseline() -> None:
    # One machine idles 160 rpm above the fleet (4 sigma between machines): healthy for it, an
    # anomaly for any other machine.
    fleet = Fleet(np.random.default_rng(20))
    fleet.idle_rpm[0] = 4 * BETWEEN_IDLE_RPM
    rows, ids = fleet.healthy(np.random.default_rng(21), 20_000)
    model = RegimeModel("crane", n_estimators=TREES, seed=1).fit(rows, ids)
    own, own_ids = fleet.healthy(np.random.default_rng(22), 2_000, shares=(1, 0, 0), machine=0)
    assert np.mean(model.score(own, own_ids) > model.threshold) < 0.01
    as_other = [fleet.ids[1]] * len(own)
    assert np.mean(model.score(own, as_other) > model.threshold) > 0.99


@pytest.mark.parametrize("machine", [0, 5, 11])
def test_oil_pressure_25_percent_high_is_detected_inside_the_fleet_spread(
    model: RegimeModel, machine: int
) -> None:
    rows, ids = FLEET.healthy(np.random.default_rng(23), 1_000, machine=machine)
    fleet_rows, _ = FLEET.healthy(np.random.default_rng(24), 20_000)
    rows[:, COL["oil_pressure_kpa"]] *= 1.25
    # At idle, +25 % on this machine is still a value healthy machines of the fleet show, so a
    # fleet-wide model could not tell it; against the machine's own baseline it stands out.
    idle = regime_index(rows) == 0
    fleet_idle_oil = fleet_rows[regime_index(fleet_rows) == 0, COL["oil_pressure_kpa"]]
    hi = np.percentile(fleet_idle_oil, 99.9)
    if FLEET.oil[machine] * 1.25 * MEANS[0][2] < hi:
        assert np.median(rows[idle, COL["oil_pressure_kpa"]]) < hi
    assert np.mean(model.score(rows, ids) > model.threshold) > 0.99
    top = np.argmax(np.abs(model.explain(rows, ids)), axis=1)
    assert np.mean(top == COL["oil_pressure_kpa"]) > 0.99


def test_machine_without_a_baseline_is_not_scored(model: RegimeModel) -> None:
    rows, ids = FLEET.healthy(np.random.default_rng(25), 10)
    ids[3] = "EX-NEW"
    scores, z = model.score(rows, ids), model.explain(rows, ids)
    assert np.isnan(scores[3])
    assert np.isnan(z[3]).all()
    assert np.isfinite(np.delete(scores, 3)).all()
    assert set(model.machines("idle")) == set(MACHINES)


def test_oil_reference_is_each_machines_own_pressure_at_the_rows_speed(
    model: RegimeModel,
) -> None:
    # The fleet's machines differ by +-10 % in oil pressure; the reference follows the machine
    # (to within its own spread) and its slope over speed, not the fleet's average.
    rows, ids = FLEET.healthy(np.random.default_rng(27), 3_000)
    names = sorted(set(ids))
    machine_of = np.array([names.index(m) for m in ids])
    ref = model.oil_reference(rows, names, machine_of)
    assert np.isfinite(ref).all()
    oil = rows[:, COL["oil_pressure_kpa"]]
    assert np.median(np.abs(oil / ref - 1.0)) < 0.02
    fleet_mean = np.array([MEANS[int(r)][2] for r in regime_index(rows)])
    assert np.median(np.abs(oil / fleet_mean - 1.0)) > 0.04
    # Unknown machine, engine off and warm-up rows have none.
    rows[0, COL["engine_speed_rpm"]] = 0.0
    rows[1, COL["coolant_temp_c"]] = 40.0
    names[machine_of[2]] = "EX-NEW"
    ref = model.oil_reference(rows, names, machine_of)
    unknown = np.array([names[k] == "EX-NEW" for k in machine_of.tolist()])
    assert np.isnan(ref[:2]).all()
    assert np.isnan(ref[unknown]).all()
    assert np.isfinite(ref[2:][~unknown[2:]]).all()
    with pytest.raises(MachineIdsError):
        model.oil_reference(rows, names, machine_of[:-1])
    with pytest.raises(NotFittedError):
        RegimeModel("crane").oil_reference(rows, names, machine_of)


def test_machine_with_too_few_windows_in_a_regime_gets_no_baseline_there() -> None:
    rng = np.random.default_rng(26)
    rows, ids = FLEET.healthy(rng, 10_000)
    few, few_ids = FLEET.healthy(rng, 300, shares=(0.95, 0.05, 0.0), machine=0)
    few_ids = ["EX-FEW"] * len(few)
    model = RegimeModel("excavator", n_estimators=10, min_machine_rows=30).fit(
        np.r_[rows, few], ids + few_ids
    )
    assert "EX-FEW" in model.machines("idle")
    assert "EX-FEW" not in model.machines("part_load")
    assert "EX-FEW" not in model.machines("full_load")
    assert model.info.n_thin == int(np.sum(regime_index(few) != 0))
    probe, _ = FLEET.healthy(rng, 200, machine=0)
    scores = model.score(probe, ["EX-FEW"] * len(probe))
    assert np.isfinite(scores[regime_index(probe) == 0]).all()
    assert np.isnan(scores[regime_index(probe) != 0]).all()


def test_machine_ids_must_come_one_per_row(model: RegimeModel) -> None:
    rows, ids = FLEET.healthy(np.random.default_rng(27), 5)
    with pytest.raises(MachineIdsError) as exc_info:
        model.score(rows, ids[:4])
    assert (exc_info.value.rows, exc_info.value.shape) == (5, (4,))
    with pytest.raises(MachineIdsError):
        RegimeModel("excavator").fit(rows, ids[:4])


def test_thin_regime_is_not_scored() -> None:
    rng = np.random.default_rng(8)
    rows, ids = FLEET.healthy(rng, 4_000, shares=(0.5, 0.48, 0.02))  # about 80 full-load rows
    model = RegimeModel("crane", n_estimators=TREES, min_regime_rows=200).fit(rows, ids)
    assert model.info.unscored == ("full_load",)
    assert model.info.n_rows["full_load"] < 200
    held_out, held_ids = FLEET.healthy(rng, 100, shares=(0.0, 0.0, 1.0))
    assert np.isnan(model.score(held_out, held_ids)).all()
    assert model.machines("full_load") == ()


# --- the numpy forest --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rows", "cols", "max_samples"),
    [(2_000, 6, 256), (50, 3, 256), (5_000, 6, 64), (3, 2, 256)],
)
def test_numpy_forest_scores_equal_sklearn_score_samples(
    rows: int, cols: int, max_samples: int
) -> None:
    rng = np.random.default_rng(rows + cols)
    x = rng.normal(size=(rows, cols)) * rng.uniform(0.01, 1_000.0, cols)
    forest = IsolationForest(
        n_estimators=100, max_samples=min(max_samples, rows), random_state=rows
    ).fit(x)
    # Far rows, near rows, training rows and rows exactly on split thresholds.
    probe = np.r_[rng.normal(size=(3_000, cols)) * 4 * x.std(axis=0), x[:200]]
    tree = forest.estimators_[0].tree_
    on_split = np.repeat(x[:1], 20, axis=0)
    inner = np.flatnonzero(tree.children_left >= 0)[:20]
    on_split[np.arange(len(inner)), tree.feature[inner]] = tree.threshold[inner]
    probe = np.r_[probe, on_split]
    flat = _flat_forest(forest, cols)
    np.testing.assert_allclose(flat.score(probe), -forest.score_samples(probe), rtol=0, atol=1e-12)


def test_numpy_forest_scores_survive_serialisation(model: RegimeModel) -> None:
    blob = model.to_bytes()
    _, body = read_header(blob)
    assert b"sklearn" not in body  # plain arrays: no scikit-learn object to unpickle


# --- calibration -------------------------------------------------------------------------------


def test_held_out_healthy_rows_rarely_exceed_the_threshold(model: RegimeModel) -> None:
    held_out, ids = FLEET.healthy(np.random.default_rng(9), 50_000)
    scores = model.score(held_out, ids)
    assert model.threshold == 1.0
    assert np.isfinite(scores).all()
    assert np.mean(scores > model.threshold) < 0.005


@pytest.mark.parametrize("signal", ["coolant_temp_c", "oil_pressure_kpa", "battery_v"])
def test_single_signal_drift_is_detected_and_explained(model: RegimeModel, signal: str) -> None:
    rows, ids = FLEET.healthy(np.random.default_rng(10), 2_000)
    sds = np.array([SDS[r][COL[signal]] for r in regime_index(rows)])
    drift = -8.0 if signal in {"oil_pressure_kpa", "battery_v"} else 8.0
    rows[:, COL[signal]] += drift * sds
    assert np.mean(model.score(rows, ids) > model.threshold) > 0.95
    top = np.argmax(np.abs(model.explain(rows, ids)), axis=1)
    assert np.mean(top == COL[signal]) > 0.99


def test_batch_scores_equal_row_by_row_scores(model: RegimeModel) -> None:
    rows, ids = FLEET.healthy(np.random.default_rng(11), 20)
    one_by_one = np.array([model.score(rows[i : i + 1], ids[i : i + 1])[0] for i in range(20)])
    np.testing.assert_allclose(model.score(rows, ids), one_by_one)


# --- missing data and errors -------------------------------------------------------------------


def test_rows_with_nan_or_engine_off_score_nan(model: RegimeModel) -> None:
    rows, ids = FLEET.healthy(np.random.default_rng(12), 4, shares=(1, 0, 0))
    rows[1, COL["battery_v"]] = np.nan
    rows[2, COL["engine_speed_rpm"]] = 0.0
    rows[3, COL["load_pct"]] = np.nan
    scores = model.score(rows, ids)
    assert np.isfinite(scores[0])
    assert np.isnan(scores[1:]).all()
    z = model.explain(rows, ids)
    assert np.isnan(z[1, COL["battery_v"]])
    assert np.isfinite(np.delete(z[1], COL["battery_v"])).all()
    assert np.isnan(z[2:]).all()


def test_fit_drops_and_counts_nan_and_engine_off_rows() -> None:
    rows, ids = FLEET.healthy(np.random.default_rng(13), 2_000)
    rows[:30, COL["coolant_temp_c"]] = np.nan
    rows[30:50, COL["engine_speed_rpm"]] = 0.0
    model = RegimeModel("pump_truck", n_estimators=10).fit(rows, ids)
    assert (model.info.n_dropped, model.info.n_off) == (30, 20)
    assert sum(model.info.n_rows.values()) + model.info.n_thin == 1_950
    assert set(model.info.n_rows) == set(REGIMES)


def test_fit_with_too_few_running_rows_raises_not_enough_data() -> None:
    rows, ids = FLEET.healthy(np.random.default_rng(14), 150)
    with pytest.raises(NotEnoughDataError) as exc_info:
        RegimeModel("excavator", min_rows=200, min_machine_rows=1).fit(rows, ids)
    assert (exc_info.value.rows, exc_info.value.needed) == (150, 200)


def test_model_refuses_use_before_fit_and_wrong_columns(model: RegimeModel) -> None:
    unfitted = RegimeModel("excavator")
    with pytest.raises(NotFittedError):
        unfitted.score(np.zeros((1, len(MODEL_SIGNALS))), ["EX-00"])
    with pytest.raises(NotFittedError):
        unfitted.to_bytes()
    with pytest.raises(ShapeError):
        model.score(np.zeros((1, len(MODEL_SIGNALS) - 1)), ["EX-00"])


# --- serialisation -----------------------------------------------------------------------------


def test_round_trip_gives_identical_scores_and_metadata(model: RegimeModel) -> None:
    blob = model.to_bytes()
    loaded = RegimeModel.from_bytes(blob)
    rows, ids = FLEET.healthy(np.random.default_rng(15), 1_000)
    rows[0, COL["coolant_temp_c"]] += 30.0
    ids[1] = "EX-NEW"
    np.testing.assert_array_equal(loaded.score(rows, ids), model.score(rows, ids))
    np.testing.assert_array_equal(loaded.explain(rows, ids), model.explain(rows, ids))
    assert loaded.info == model.info
    assert loaded.info.machine_model == "excavator"
    assert loaded.info.trained_at_ms == 1_000
    assert loaded.info.n_machines == {r: len(MACHINES) for r in REGIMES}
    assert loaded.machines("part_load") == model.machines("part_load")
    assert loaded.threshold == 1.0


def rewrite_header(blob: bytes, **changes: object) -> bytes:
    magic, version, header_len = struct.unpack_from(">4sHI", blob)
    header = json.loads(blob[10 : 10 + header_len])
    header.update(changes)
    new_header = json.dumps(header).encode()
    return (
        struct.pack(">4sHI", magic, version, len(new_header)) + new_header + blob[10 + header_len :]
    )


def test_blob_of_another_sklearn_version_raises_model_format_error(model: RegimeModel) -> None:
    blob = rewrite_header(model.to_bytes(), sklearn="0.24.2")
    with pytest.raises(ModelFormatError) as exc_info:
        RegimeModel.from_bytes(blob)
    assert (exc_info.value.reason, exc_info.value.found) == ("sklearn_version", "0.24.2")


def test_blob_of_another_format_version_raises_model_format_error(model: RegimeModel) -> None:
    blob = bytearray(model.to_bytes())
    blob[4:6] = struct.pack(">H", 99)
    with pytest.raises(ModelFormatError) as exc_info:
        RegimeModel.from_bytes(bytes(blob))
    assert (exc_info.value.reason, exc_info.value.found) == ("format_version", "99")


@pytest.mark.parametrize(
    ("mangle", "reason"),
    [
        pytest.param(lambda b: b"NOPE" + b[4:], "magic", id="magic"),
        pytest.param(lambda b: b[:7], "truncated", id="truncated_prefix"),
        pytest.param(lambda b: b[:40], "truncated", id="truncated_header"),
        pytest.param(lambda b: b[:-10], "checksum", id="truncated_body"),
        pytest.param(lambda b: b[:10] + b"[" + b[11:], "header", id="broken_header"),
    ],
)
def test_damaged_blob_raises_model_format_error(
    model: RegimeModel, mangle: object, reason: str
) -> None:
    blob = mangle(model.to_bytes())  # type: ignore[operator]
    with pytest.raises(ModelFormatError) as exc_info:
        RegimeModel.from_bytes(blob)
    assert exc_info.value.reason == reason


def test_blob_with_another_signal_set_raises_model_format_error(model: RegimeModel) -> None:
    blob = model.to_bytes()
    header, _ = read_header(blob)
    info = dict(header["info"], signals=[*MODEL_SIGNALS, "fuel_level_pct"])
    with pytest.raises(ModelFormatError) as exc_info:
        RegimeModel.from_bytes(rewrite_header(blob, info=info))
    assert exc_info.value.reason == "signals"
