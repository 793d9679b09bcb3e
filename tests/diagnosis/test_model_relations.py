"""The regime model's relation detectors: a broken relation inside the healthy ranges is caught
and named, a healthy change of duty is not, and models stored before them still load."""

from __future__ import annotations

import hashlib
import json
import pickle
import struct

import numpy as np
import pytest
from numpy.typing import NDArray

from diagnosis.model import MODEL_SIGNALS, RegimeModel

Rows = NDArray[np.float64]

COL = {name: i for i, name in enumerate(MODEL_SIGNALS)}
MACHINES = tuple(f"PT-{i:02d}" for i in range(12))


def windows(
    rng: np.random.Generator, n: int, load_pct: Rows | None = None, hyd_follows: bool = True
) -> tuple[Rows, list[str]]:
    """Part-load windows of 12 machines: hydraulic oil runs 0.5 °C and coolant 0.3 °C warmer
    per % of load.

    Each machine has its own settings (offsets); within one, load spreads 8 % about 45 %, so
    hydraulic oil spreads 4 °C on its own but only 0.8 °C about what the load says it should be.
    Coolant vouches for the load: when hydraulic oil alone leaves the relation, the detector can
    tell that it is the hydraulic oil, not the load, that is off.
    """
    m = rng.integers(0, len(MACHINES), n)
    offsets = np.random.default_rng(0).normal(0.0, 1.0, (len(MACHINES), len(MODEL_SIGNALS)))
    load = np.clip(rng.normal(45.0, 8.0, n), 26.0, 64.0) if load_pct is None else load_pct
    rows = np.empty((n, len(MODEL_SIGNALS)))
    rows[:, COL["engine_speed_rpm"]] = 1500.0 + 60.0 * offsets[m, 0] + rng.normal(0.0, 30.0, n)
    rows[:, COL["load_pct"]] = load
    speed_dev = rows[:, COL["engine_speed_rpm"]] - 1500.0
    rows[:, COL["oil_pressure_kpa"]] = 400.0 + 0.2 * speed_dev + rng.normal(0.0, 4.0, n)
    rows[:, COL["coolant_temp_c"]] = 88.0 + 0.3 * (load - 45.0) + rng.normal(0.0, 0.5, n)
    hyd_load = load - 45.0 if hyd_follows else np.zeros(n)
    rows[:, COL["hydraulic_oil_temp_c"]] = (
        65.0 + 2.0 * offsets[m, 4] + 0.5 * hyd_load + rng.normal(0.0, 0.8, n)
    )
    rows[:, COL["battery_v"]] = 27.7 + 0.2 * offsets[m, 5] + rng.normal(0.0, 0.03, n)
    return rows, [MACHINES[i] for i in m.tolist()]


@pytest.fixture(scope="module")
def model() -> RegimeModel:
    rows, ids = windows(np.random.default_rng(1), 8_000)
    return RegimeModel("PT", n_estimators=30, seed=3).fit(rows, ids, trained_at_ms=1)


def test_hydraulic_oil_too_cool_for_the_load_is_caught_and_named(model: RegimeModel) -> None:
    # At 64 % load, hydraulic oil stays where it is at 45 %: on its own a normal temperature.
    load = np.full(400, 64.0)
    rows, ids = windows(np.random.default_rng(2), 400, load, hyd_follows=False)
    z = model.explain(rows, ids)
    assert np.abs(z[:, COL["hydraulic_oil_temp_c"]]).max() < 4.0  # inside its own healthy range
    assert (model.score(rows, ids) > 1.0).mean() > 0.9
    words = model.broken_relations(rows, ids)
    named = [w for w in words if w]
    assert len(named) > 0.9 * len(words)
    hydraulic = [w for w in named if w.startswith("hydraulic_oil_temp_c low for load_pct")]
    assert len(hydraulic) > 0.95 * len(named)


def test_a_heavier_duty_the_relation_follows_is_not_caught(model: RegimeModel) -> None:
    load = np.full(400, 64.0)
    rows, ids = windows(np.random.default_rng(3), 400, load)
    assert (model.score(rows, ids) > 1.0).mean() < 0.01
    assert not any(model.broken_relations(rows, ids))


def test_healthy_windows_rarely_break_a_relation(model: RegimeModel) -> None:
    rows, ids = windows(np.random.default_rng(4), 20_000)
    assert (model.score(rows, ids) > 1.0).mean() < 0.002
    assert sum(bool(w) for w in model.broken_relations(rows, ids)) / len(rows) < 0.005


def as_format_3(blob: bytes) -> bytes:
    """The blob as the previous format wrote it: version 3, no relation detectors."""
    _, _, header_len = struct.unpack_from(">4sHI", blob)
    header = json.loads(blob[10 : 10 + header_len])
    state = pickle.loads(blob[10 + header_len :])
    del state["relations"]
    body = pickle.dumps(state)
    header.update(format=3, body_sha256=hashlib.sha256(body).hexdigest())
    head = json.dumps(header).encode()
    return struct.pack(">4sHI", b"TMAM", 3, len(head)) + head + body


def test_a_model_stored_before_relations_still_loads_and_scores(model: RegimeModel) -> None:
    old = RegimeModel.from_bytes(as_format_3(model.to_bytes()))
    rows, ids = windows(np.random.default_rng(5), 300)
    rows[:10, COL["oil_pressure_kpa"]] += 100.0
    scores = old.score(rows, ids)
    assert np.isfinite(scores).all()
    assert (scores[:10] > 1.0).all()
    assert not any(old.broken_relations(rows, ids))


def test_round_trip_keeps_the_relations(model: RegimeModel) -> None:
    loaded = RegimeModel.from_bytes(model.to_bytes())
    rows, ids = windows(np.random.default_rng(6), 300, np.full(300, 64.0), hyd_follows=False)
    np.testing.assert_array_equal(loaded.score(rows, ids), model.score(rows, ids))
    assert loaded.broken_relations(rows, ids) == model.broken_relations(rows, ids)
