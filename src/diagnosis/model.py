"""The anomaly model: per-machine baselines, and a robust-scaled isolation forest per regime.

This module owns everything learned from data in `diagnosis`, and it is the only module of the
project that imports scikit-learn: it fits the forests and hands their trees' arrays to
`diagnosis.forest`, which scores them in numpy (per-machine baselines are `diagnosis.baseline`'s).
The rest of the package sees plain float matrices and machine ids in and float arrays out (the
engine's `AnomalyScorer` protocol: `threshold`, `score`, `explain`). It never does I/O: training
rows come in as arrays and models leave as bytes, which the telematics side stores in PostgreSQL
(`anomaly_models`).

Two layers:

* `AnomalyDetector` is the fit/score core for any float matrix, with no idea what its columns
  mean, so it can be checked on any labelled data set. Columns are standardised robustly (median
  and IQR), then an `IsolationForest` is grown on them; the score is `-score_samples`, so higher
  means more anomalous (about 0.35-0.5 for typical rows, towards 1 for isolated ones). Scoring
  does not call scikit-learn: the fitted trees are copied into flat arrays
  (`forest.FlatForest`) and scored for all rows at once in numpy, to the same figure.
* `RegimeModel` is the model of one machine model. Its rows are 60 s window means of
  `MODEL_SIGNALS`, each with the machine it is a window of. Machines differ more from each other
  than a healthy machine varies, so each is judged against its own healthy baseline per
  operating regime (`baseline.Baselines`); what is healthy also depends on what the engine is
  doing (oil pressure and coolant temperature at full load would be alarming at idle), so each
  regime has its own baselines, detector and calibrated threshold. The score combines the forest
  score with the largest robust z-score of the row's residuals (a forest alone does not see how
  far one signal drifted, see `RegimeModel`), and is divided by the regime's threshold, so one
  threshold, 1.0, serves every regime and the engine needs no regime logic.

Errors derive from `ModelError`; every subclass carries the figures that explain it.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import struct
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import sklearn
from numpy.typing import ArrayLike, NDArray
from sklearn.ensemble import IsolationForest

from diagnosis.baseline import Baselines
from diagnosis.errors import DiagnosisError
from diagnosis.forest import FlatForest, TreeArrays
from diagnosis.windows import (
    IDLE_MAX_LOAD_PCT,
    MODEL_SIGNALS,
    NOT_SCORED,
    PART_MAX_LOAD_PCT,
    REGIMES,
    RUNNING_MIN_RPM,
    WARM_MIN_COOLANT_C,
    regime_of,
)

__all__ = [
    "ALGORITHM_VERSION",
    "FORMAT_VERSION",
    "IDLE_MAX_LOAD_PCT",
    "MODEL_SIGNALS",
    "NOT_SCORED",
    "PART_MAX_LOAD_PCT",
    "REGIMES",
    "RUNNING_MIN_RPM",
    "WARM_MIN_COOLANT_C",
    "AnomalyDetector",
    "Calibration",
    "MachineIdsError",
    "ModelError",
    "ModelFormatError",
    "ModelInfo",
    "NotEnoughDataError",
    "NotFittedError",
    "RegimeModel",
    "ShapeError",
    "read_header",
    "regime_index",
]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

_SPEED_COL: Final = MODEL_SIGNALS.index("engine_speed_rpm")
_LOAD_COL: Final = MODEL_SIGNALS.index("load_pct")
_COOLANT_COL: Final = MODEL_SIGNALS.index("coolant_temp_c")

ALGORITHM_VERSION: Final = "machine-baseline-iforest-4"
"""What the model computes; bump it when scores of the same data would change."""
FORMAT_VERSION: Final = 3
"""Layout of `RegimeModel.to_bytes`; bump it when the layout or the body's state changes."""
_MAGIC: Final = b"TMAM"  # telematics anomaly model
_PREFIX: Final = struct.Struct(">4sHI")  # magic, format version, header length

_IQR_TO_SIGMA: Final = 1.349  # the IQR of a normal distribution, in standard deviations
_SCALE_RTOL: Final = 1e-9  # a spread below this (relative to the centre) counts as none


class ModelError(DiagnosisError):
    """Base of every error of this module."""


class NotEnoughDataError(ModelError):
    """Too few usable rows to fit.

    Attributes:
        rows: Usable rows given (finite and, for a `RegimeModel`, with the engine running).
        needed: Rows the fit needs.
    """

    def __init__(self, rows: int, needed: int) -> None:
        super().__init__(f"{rows} usable rows, at least {needed} needed")
        self.rows = rows
        self.needed = needed


class NotFittedError(ModelError):
    """A model was used before `fit`."""

    def __init__(self, what: str) -> None:
        super().__init__(f"{what} is not fitted")
        self.what = what


class ShapeError(ModelError):
    """Input is not a 2-D matrix with the columns the model was fitted on.

    Attributes:
        expected: Columns expected, or None when any count would do.
        shape: Shape of the input.
    """

    def __init__(self, expected: int | None, shape: tuple[int, ...]) -> None:
        cols = "any number of" if expected is None else str(expected)
        super().__init__(f"expected a 2-D matrix with {cols} columns, got shape {shape}")
        self.expected = expected
        self.shape = shape


class MachineIdsError(ModelError):
    """Machine ids do not come one per row.

    Attributes:
        rows: Rows given.
        shape: Shape of the machine ids given.
    """

    def __init__(self, rows: int, shape: tuple[int, ...]) -> None:
        super().__init__(f"expected one machine id for each of {rows} rows, got shape {shape}")
        self.rows = rows
        self.shape = shape


class ModelFormatError(ModelError):
    """A serialised model cannot be loaded by this code.

    Attributes:
        reason: What is wrong: `magic`, `truncated`, `format_version`, `sklearn_version`,
            `signals`, `checksum`, `header` or `body`.
        found: The value found in the blob, when there is one.
        expected: The value this code needs, when there is one.
    """

    def __init__(self, reason: str, found: str | None = None, expected: str | None = None) -> None:
        detail = f": found {found!r}, expected {expected!r}" if found or expected else ""
        super().__init__(f"incompatible anomaly model ({reason}){detail}")
        self.reason = reason
        self.found = found
        self.expected = expected


def _as_matrix(x: ArrayLike, columns: int | None) -> FloatArray:
    """`x` as a float64 matrix, checked against the expected column count."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2 or (columns is not None and arr.shape[1] != columns):
        raise ShapeError(columns, arr.shape)
    return arr


def _finite_rows(x: FloatArray) -> BoolArray:
    """Rows without NaN or infinity: the only ones a forest can take."""
    return np.asarray(np.isfinite(x).all(axis=1), dtype=np.bool_)


@dataclass(frozen=True, slots=True)
class _RobustScale:
    """Per-column centre and spread: median and IQR (as sigma), else std, else 1."""

    center: FloatArray
    scale: FloatArray

    @staticmethod
    def fit(x: FloatArray) -> _RobustScale:
        q25, median, q75 = np.percentile(x, [25.0, 50.0, 75.0], axis=0)
        tol = _SCALE_RTOL * np.maximum(1.0, np.abs(median))
        # A column with a zero IQR (a flag, a quantised signal) still has a spread worth using.
        scale = np.where((q75 - q25) > tol, (q75 - q25) / _IQR_TO_SIGMA, x.std(axis=0))
        scale = np.where(scale > tol, scale, 1.0)
        return _RobustScale(np.asarray(median, dtype=np.float64), scale.astype(np.float64))

    def z(self, x: FloatArray) -> FloatArray:
        z: FloatArray = (x - self.center) / self.scale
        return z


def _flat_forest(forest: IsolationForest, n_features: int) -> FlatForest:
    """The numpy scorer of a fitted forest whose trees see every column, in order.

    The one place scikit-learn's tree arrays are read: `diagnosis.forest` gets them as plain
    arrays and never sees scikit-learn.
    """
    # With max_features < 1 sklearn gives each tree only its sampled columns; ours use all.
    if getattr(forest, "_max_features", n_features) != n_features:
        raise ValueError("forests that subsample features are not supported")
    trees = [
        TreeArrays(
            t.children_left,
            t.children_right,
            t.feature,
            t.threshold,
            t.n_node_samples,
            int(t.max_depth),
        )
        for t in (est.tree_ for est in forest.estimators_)
    ]
    return FlatForest.of(trees, forest.max_samples_)


class AnomalyDetector:
    """Robust standardisation, then an isolation forest: for any float matrix.

    Args:
        n_estimators: Trees in the forest; 100 is sklearn's default and plenty for six columns.
        seed: Seed of the forest, so a fit is reproducible.
        max_samples: Rows drawn per tree (capped at the rows available); 256 is the value of the
            isolation forest paper, and it keeps the score scale the same for any training size.

    Attributes:
        n_rows: Rows the detector was fitted on.
        n_dropped: Rows dropped from the fit because they held NaN or infinity.
        n_features: Columns of the training matrix; inputs must have as many.
    """

    MIN_ROWS: Final = 10

    def __init__(self, *, n_estimators: int = 100, seed: int = 0, max_samples: int = 256) -> None:
        self.n_estimators = n_estimators
        self.seed = seed
        self.max_samples = max_samples
        self.n_rows = 0
        self.n_dropped = 0
        self.n_features = 0
        self._scale: _RobustScale | None = None
        self._forest: FlatForest | None = None

    def fit(self, x: ArrayLike) -> AnomalyDetector:
        """Learn the training statistics and the forest.

        Args:
            x: Training matrix, one row per sample; rows with NaN or infinity are dropped
                (counted in `n_dropped`).

        Returns:
            The detector itself.

        Raises:
            ShapeError: `x` is not a 2-D matrix.
            NotEnoughDataError: Fewer than `MIN_ROWS` finite rows.
        """
        arr = _as_matrix(x, None)
        is_finite = _finite_rows(arr)
        arr = arr[is_finite]
        if len(arr) < self.MIN_ROWS:
            raise NotEnoughDataError(len(arr), self.MIN_ROWS)
        scale = _RobustScale.fit(arr)
        forest = IsolationForest(
            n_estimators=self.n_estimators,
            max_samples=min(self.max_samples, len(arr)),
            random_state=self.seed,
        )
        forest.fit(scale.z(arr))
        self._scale, self._forest = scale, _flat_forest(forest, arr.shape[1])
        self.n_rows, self.n_dropped, self.n_features = (
            len(arr),
            int((~is_finite).sum()),
            arr.shape[1],
        )
        return self

    def _fitted(self) -> tuple[_RobustScale, FlatForest]:
        if self._scale is None or self._forest is None:
            raise NotFittedError("AnomalyDetector")
        return self._scale, self._forest

    def score(self, x: ArrayLike) -> FloatArray:
        """Anomaly score per row, higher is more anomalous; NaN for rows with NaN or infinity.

        One pass over all trees for the whole batch (numpy, no per-tree dispatch).

        Args:
            x: Matrix with `n_features` columns.

        Returns:
            Scores in (0, 1], shape (len(x),).

        Raises:
            NotFittedError: Before `fit`.
            ShapeError: `x` has the wrong shape.
        """
        scale, forest = self._fitted()
        arr = _as_matrix(x, self.n_features)
        scores = np.full(len(arr), np.nan)
        is_finite = _finite_rows(arr)
        if is_finite.any():
            scores[is_finite] = forest.score(scale.z(arr[is_finite]))
        return scores

    def explain(self, x: ArrayLike) -> FloatArray:
        """Robust z-score of every value against the training statistics.

        Args:
            x: Matrix with `n_features` columns.

        Returns:
            `(x - median) / (IQR / 1.349)` per column, same shape as `x`; NaN stays NaN.

        Raises:
            NotFittedError: Before `fit`.
            ShapeError: `x` has the wrong shape.
        """
        scale, _ = self._fitted()
        return scale.z(_as_matrix(x, self.n_features))

    def state(self) -> dict[str, Any]:
        """The fitted detector as plain containers and numpy arrays, for pickling.

        Raises:
            NotFittedError: Before `fit`.
        """
        scale, forest = self._fitted()
        return {
            "params": [self.n_estimators, self.seed, self.max_samples],
            "counts": [self.n_rows, self.n_dropped, self.n_features],
            "center": scale.center,
            "scale": scale.scale,
            "forest": forest.state(),
        }

    @staticmethod
    def from_state(state: Mapping[str, Any]) -> AnomalyDetector:
        """A fitted detector from `state` output.

        Raises:
            KeyError: A field is missing.
            TypeError: A field has the wrong type.
            ValueError: A field has the wrong value.
        """
        n_estimators, seed, max_samples = (int(v) for v in state["params"])
        det = AnomalyDetector(n_estimators=n_estimators, seed=seed, max_samples=max_samples)
        det.n_rows, det.n_dropped, det.n_features = (int(v) for v in state["counts"])
        center = np.asarray(state["center"], dtype=np.float64)
        scale = np.asarray(state["scale"], dtype=np.float64)
        forest = FlatForest.from_state(state["forest"], det.n_features)
        if center.shape != (det.n_features,) or scale.shape != (det.n_features,):
            raise ValueError("statistics do not match the feature count")
        det._scale, det._forest = _RobustScale(center, scale), forest
        return det


def regime_index(x: ArrayLike) -> IntArray:
    """The operating regime of each `MODEL_SIGNALS` row (`diagnosis.windows.regime_of`).

    Args:
        x: Matrix with the columns of `MODEL_SIGNALS`.

    Returns:
        Per row, its position in `REGIMES`, or `NOT_SCORED` (-1) when the engine is off
        (below `RUNNING_MIN_RPM`), still warming up (coolant below `WARM_MIN_COOLANT_C`), or
        speed, load or coolant temperature is missing.

    Raises:
        ShapeError: `x` does not have the columns of `MODEL_SIGNALS`.
    """
    arr = _as_matrix(x, len(MODEL_SIGNALS))
    return regime_of(arr[:, _SPEED_COL], arr[:, _LOAD_COL], arr[:, _COOLANT_COL])


@dataclass(frozen=True, slots=True)
class Calibration:
    """How one regime's raw figures become a score where 1.0 is the alarm threshold.

    Attributes:
        forest: `quantile` of out-of-fold forest scores (`AnomalyDetector.score`).
        tail: Per signal, `quantile` of out-of-fold absolute robust z-scores. Per signal,
            because their tails differ by an order of magnitude: coolant held by a thermostat
            has a tiny spread, so ordinary load changes move it many of its sigmas, while
            battery voltage barely leaves its band; one tail for all would let the loosest
            signal set the bar for every other.
        threshold: `quantile` of the combined score `max(forest / f, max_k |z_k| / t_k)`,
            times `margin`; the combined score divided by it is `RegimeModel.score`.
    """

    forest: float
    tail: tuple[float, ...]
    threshold: float

    def combined(self, forest_scores: FloatArray, abs_z: FloatArray) -> FloatArray:
        """Forest and tail figures on one scale (about 1.0 at the calibration quantile)."""
        tails = np.maximum(np.asarray(self.tail, dtype=np.float64), 1e-9)
        worst: FloatArray = (abs_z / tails).max(axis=1, initial=0.0)
        return np.maximum(forest_scores / self.forest, worst)


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What a `RegimeModel` is and what it was trained on (readable without unpickling).

    Attributes:
        machine_model: Machine model the model belongs to (`excavator`, ...).
        trained_at_ms: When it was trained, epoch milliseconds.
        version: `ALGORITHM_VERSION` of the code that trained it.
        sklearn_version: scikit-learn version that trained it; loading needs the same.
        signals: Columns of a row, `MODEL_SIGNALS` at training time.
        n_rows: Training rows per regime (all of `REGIMES`, zero included), of machines with a
            baseline in that regime: the rows the detectors were fitted on.
        n_dropped: Rows dropped for NaN or infinity.
        n_off: Finite rows left out because the engine was off.
        n_machines: Per regime, machines with a baseline in it (scored in that regime).
        n_thin: Running rows left out because their machine had fewer than `min_machine_rows`
            rows in that regime (no baseline).
        unscored: Regimes with fewer than `min_regime_rows` rows: no detector, not scored.
        calibration: Per scored regime, its `Calibration`.
        n_estimators: Trees per forest.
        seed: Seed of the forests and of the calibration split.
        quantile: Calibration quantile of out-of-fold training scores.
        margin: Factor applied to the combined quantile.
        min_machine_rows: Rows a machine needs in a regime for its baseline there.
    """

    machine_model: str
    trained_at_ms: int
    version: str
    sklearn_version: str
    signals: tuple[str, ...]
    n_rows: Mapping[str, int]
    n_dropped: int
    n_off: int
    n_machines: Mapping[str, int]
    n_thin: int
    unscored: tuple[str, ...]
    calibration: Mapping[str, Calibration]
    n_estimators: int
    seed: int
    quantile: float
    margin: float
    min_machine_rows: int

    def to_json(self) -> dict[str, object]:
        """The info as a JSON-compatible dict."""
        return {
            "machine_model": self.machine_model,
            "trained_at_ms": self.trained_at_ms,
            "version": self.version,
            "sklearn_version": self.sklearn_version,
            "signals": list(self.signals),
            "n_rows": dict(self.n_rows),
            "n_dropped": self.n_dropped,
            "n_off": self.n_off,
            "n_machines": dict(self.n_machines),
            "n_thin": self.n_thin,
            "unscored": list(self.unscored),
            "calibration": {
                name: [c.forest, list(c.tail), c.threshold] for name, c in self.calibration.items()
            },
            "n_estimators": self.n_estimators,
            "seed": self.seed,
            "quantile": self.quantile,
            "margin": self.margin,
            "min_machine_rows": self.min_machine_rows,
        }

    @staticmethod
    def from_json(obj: Mapping[str, Any]) -> ModelInfo:
        """The info from `to_json` output.

        Raises:
            KeyError: A field is missing.
            TypeError: A field has the wrong type.
            ValueError: A field has the wrong value.
        """
        return ModelInfo(
            machine_model=str(obj["machine_model"]),
            trained_at_ms=int(obj["trained_at_ms"]),
            version=str(obj["version"]),
            sklearn_version=str(obj["sklearn_version"]),
            signals=tuple(str(s) for s in obj["signals"]),
            n_rows={str(k): int(v) for k, v in obj["n_rows"].items()},
            n_dropped=int(obj["n_dropped"]),
            n_off=int(obj["n_off"]),
            n_machines={str(k): int(v) for k, v in obj["n_machines"].items()},
            n_thin=int(obj["n_thin"]),
            unscored=tuple(str(r) for r in obj["unscored"]),
            calibration={
                str(k): Calibration(float(f), tuple(float(v) for v in t), float(c))
                for k, (f, t, c) in obj["calibration"].items()
            },
            n_estimators=int(obj["n_estimators"]),
            seed=int(obj["seed"]),
            quantile=float(obj["quantile"]),
            margin=float(obj["margin"]),
            min_machine_rows=int(obj["min_machine_rows"]),
        )


def _abs(z: FloatArray) -> FloatArray:
    abs_z: FloatArray = np.abs(z)
    return abs_z


class RegimeModel:
    """The anomaly model of one machine model: per operating regime, every machine's healthy
    baseline, and a detector and threshold for how far a healthy machine strays from its own.

    Regimes (`regime_index`): engine off (below 300 rpm) and warm-up are not scored; running
    rows are idle (load < 25 %), part load (25-65 %) or full load (>= 65 %).

    Baselines. Each machine is judged against itself: per regime, a machine with at least
    `min_machine_rows` healthy training windows there gets a baseline (`Baselines`: the median
    of each signal, and its slope of oil pressure over engine speed), and the model's rows are
    residuals, a window minus its machine's baseline. The fleet's training rows teach what a
    healthy machine's residuals look like (shared by every machine of the model: one machine's
    windows are too few to learn tails from).

    Machines without a baseline are not scored. A machine first seen after training (or one
    that barely ran in a regime) gets no `unexplained_anomaly` from the model, only the rules'
    alarms, until a later training run has seen `min_machine_rows` of its healthy windows in
    that regime: `telematics train` picks up every machine of the model with history in its
    period, so retraining regularly (nightly, or after machines are added) is what brings new
    machines in. Judging them against the fleet instead would bring back the false alarms that
    this design removes (an unusual but healthy machine alarming at every idle), and a baseline
    learned online by the engine would be state the store does not hold.

    Score. Per row, two figures from its regime's detector on its residuals: the forest score,
    which sees unusual combinations of signals, and the largest absolute robust z-score
    (`explain`), each signal's divided by that signal's own calibration tail, which sees how far
    a signal left its healthy range. The tail figure is needed because an isolation forest
    saturates: a row outside the training range in one signal is isolated like the most extreme
    training row, however far out it is (on synthetic data a coolant shift of 4 sigma scores
    0.514 and one of 50 sigma 0.516, below the healthy 0.99 quantile), so the forest alone would
    never alarm on one drifting signal. Each figure is divided by its calibration quantile, the
    larger counts, and the result is divided by the regime's threshold: `threshold` is 1.0
    everywhere.

    Calibration. All quantiles are of out-of-fold training figures: the rows are split in two
    halves at random, a detector fitted on one half scores the other, and vice versa. In-sample
    scores would be too low (a forest isolates the rows it was grown on late), and the
    thresholds with them; the forests share `max_samples`, so the halves' scores are on the
    scale of the final detector, which is then fitted on all rows. The threshold is the
    `quantile` (0.999) of the combined figure times `margin` (1.25). Baselines are taken from
    all of a machine's rows (a median of at least `min_machine_rows`, which a row moves little).
    A regime with fewer than `min_regime_rows` rows (of machines with a baseline) is not scored.

    Why this meets the target of fewer than 0.05 false alarms per healthy machine-day, scored
    every 60 s with 2 consecutive windows to raise. A machine-day has at most 1,440 windows
    (fewer in practice: off is not scored). At the 0.999 quantile alone a healthy window exceeds
    with probability p ~ 1e-3; a margin of 1.1 cuts that to p ~ 1.5e-4. If windows were independent,
    alarms per day would be about 1,440 p^2 = 3e-5. They are not (an unusual but healthy
    condition lasts minutes), so the bound that matters is 1,440 p c, with c the chance that the
    window after an exceedance also exceeds: at p = 1.5e-4 the target holds for c < 0.23. What no
    calibration covers is healthy conditions absent from the training data (a new season, a new
    site, a machine after an overhaul that moved its baseline): train on weeks of data, and
    retrain after a repair that changes a machine's settings.

    Why 1.25 and not 1.1. In bench/diagnosis_eval.py (seed 1) the anomaly alarms left on
    machines without a fault at the time scored 1.02-1.06 at 1.1: a warming engine just past
    70 °C, a throttle set higher than usual. Every detection of an injected fault scored 1.26 or
    more, the weakest a gradual oil-pressure rise caught while still ramping. 1.25 puts the line
    between the two. Tuned on one seed; bench/README.md gives another seed's figures as the check.

    Serialised with `to_bytes` / `from_bytes`: a JSON header (format version, scikit-learn
    version, `ModelInfo`, checksum) and a pickled body of plain containers and numpy arrays (the
    baselines, and the forests as flat arrays). Pickle executes code on load; that is acceptable
    because blobs live in the product's own database, written only by `telematics train` on an
    admin's request, never taken from machines or users.

    Args:
        machine_model: Machine model this model belongs to.
        n_estimators: Trees per forest.
        seed: Seed of forests and calibration split; the same data and seed give the same model.
        quantile: Calibration quantile of out-of-fold training figures.
        margin: Factor on the combined quantile (> 1 makes alarms rarer).
        min_rows: Running, finite training rows of machines with a baseline needed at all.
        min_regime_rows: Training rows a regime needs to be scored.
        min_machine_rows: Training rows a machine needs in a regime for its baseline there
            (30: half an hour of steady running).

    Attributes:
        threshold: Always 1.0: scores are already divided by their regime's threshold.
    """

    def __init__(
        self,
        machine_model: str,
        *,
        n_estimators: int = 100,
        seed: int = 0,
        quantile: float = 0.999,
        margin: float = 1.25,
        min_rows: int = 200,
        min_regime_rows: int = 200,
        min_machine_rows: int = 30,
    ) -> None:
        self.machine_model = machine_model
        self.n_estimators = n_estimators
        self.seed = seed
        self.quantile = quantile
        self.margin = margin
        # Out-of-fold calibration fits on halves: each needs a detector's minimum.
        self.min_rows = max(min_rows, 2 * AnomalyDetector.MIN_ROWS)
        self.min_regime_rows = max(min_regime_rows, 2 * AnomalyDetector.MIN_ROWS)
        self.min_machine_rows = max(min_machine_rows, 1)
        self.threshold: float = 1.0
        self._info: ModelInfo | None = None
        self._detectors: dict[str, AnomalyDetector] = {}  # by regime name
        self._baselines: dict[str, Baselines] = {}  # by regime name

    @property
    def info(self) -> ModelInfo:
        """Metadata of the fitted model.

        Raises:
            NotFittedError: Before `fit`.
        """
        if self._info is None:
            raise NotFittedError("RegimeModel")
        return self._info

    def machines(self, regime: str) -> tuple[str, ...]:
        """The machines with a baseline in `regime` (scored there), sorted.

        Raises:
            NotFittedError: Before `fit`.
            KeyError: `regime` is not one of `REGIMES`.
        """
        if self._info is None:
            raise NotFittedError("RegimeModel")
        if regime not in REGIMES:
            raise KeyError(regime)
        base = self._baselines.get(regime)
        return () if base is None else base.machine_ids

    def _new_detector(self) -> AnomalyDetector:
        return AnomalyDetector(n_estimators=self.n_estimators, seed=self.seed)

    def _out_of_fold(
        self, x: FloatArray, is_first_half: BoolArray
    ) -> tuple[FloatArray, FloatArray]:
        """Forest scores and |z| of `x`, each half by a detector fitted on the other."""
        forest_scores, abs_z = np.empty(len(x)), np.empty(x.shape)
        for half in (is_first_half, ~is_first_half):
            det = self._new_detector().fit(x[half])
            forest_scores[~half] = det.score(x[~half])
            abs_z[~half] = _abs(det.explain(x[~half]))
        return forest_scores, abs_z

    def _quantile(self, values: FloatArray) -> float:
        return float(np.quantile(values, self.quantile))

    def _calibrate(self, x: FloatArray, is_first_half: BoolArray) -> Calibration:
        """The calibration of rows `x` from their out-of-fold figures."""
        forest_scores, abs_z = self._out_of_fold(x, is_first_half)
        tails = tuple(float(q) for q in np.quantile(abs_z, self.quantile, axis=0))
        partial = Calibration(self._quantile(forest_scores), tails, 1.0)
        combined = partial.combined(forest_scores, abs_z)
        return Calibration(partial.forest, partial.tail, self._quantile(combined) * self.margin)

    def fit(
        self, x: ArrayLike, machine_ids: Sequence[str], *, trained_at_ms: int | None = None
    ) -> RegimeModel:
        """Learn every machine's baselines, then fit detectors and calibrate thresholds.

        Args:
            x: Healthy rows with the columns of `MODEL_SIGNALS`. Rows with NaN or infinity are
                dropped and counted (`info.n_dropped`); engine-off and warm-up rows are left out
                (`info.n_off`).
            machine_ids: Per row, the machine it is a window of.
            trained_at_ms: Training time for the metadata; defaults to now.

        Returns:
            The model itself.

        Raises:
            ShapeError: `x` does not have the columns of `MODEL_SIGNALS`.
            MachineIdsError: `machine_ids` is not one per row.
            NotEnoughDataError: Fewer than `min_rows` finite running rows of machines with a
                baseline.
        """
        arr = _as_matrix(x, len(MODEL_SIGNALS))
        ids = _machine_array(machine_ids, len(arr))
        is_finite = _finite_rows(arr)
        regimes = regime_index(arr)
        is_used = is_finite & (regimes != NOT_SCORED)
        n_dropped, n_off = int((~is_finite).sum()), int((is_finite & ~is_used).sum())
        arr, regimes, ids = arr[is_used], regimes[is_used], ids[is_used]
        baselines: dict[str, Baselines] = {}
        residuals: dict[str, FloatArray] = {}
        for r, name in enumerate(REGIMES):
            is_regime = regimes == r
            if not is_regime.any():
                continue
            base = Baselines.fit(arr[is_regime], ids[is_regime], self.min_machine_rows)
            idx = base.index_of(ids[is_regime].tolist())
            if len(base.machine_ids):
                baselines[name] = base
                residuals[name] = base.residuals(arr[is_regime][idx >= 0], idx[idx >= 0])
        n_rows = {name: len(residuals.get(name, ())) for name in REGIMES}
        if sum(n_rows.values()) < self.min_rows:
            raise NotEnoughDataError(sum(n_rows.values()), self.min_rows)
        rng = np.random.default_rng(self.seed)
        self._detectors, self._baselines = {}, {}
        calibration: dict[str, Calibration] = {}
        for name in REGIMES:
            if n_rows[name] < self.min_regime_rows:
                continue
            res = residuals[name]
            is_first_half = rng.permutation(len(res)) % 2 == 0
            self._detectors[name] = self._new_detector().fit(res)
            self._baselines[name] = baselines[name]
            calibration[name] = self._calibrate(res, is_first_half)
        self._info = ModelInfo(
            machine_model=self.machine_model,
            trained_at_ms=time.time_ns() // 1_000_000 if trained_at_ms is None else trained_at_ms,
            version=ALGORITHM_VERSION,
            sklearn_version=sklearn.__version__,
            signals=MODEL_SIGNALS,
            n_rows=n_rows,
            n_dropped=n_dropped,
            n_off=n_off,
            n_machines={n: len(self._baselines[n].machine_ids) for n in self._baselines},
            n_thin=len(arr) - sum(n_rows.values()),
            unscored=tuple(name for name in REGIMES if name not in self._detectors),
            calibration=calibration,
            n_estimators=self.n_estimators,
            seed=self.seed,
            quantile=self.quantile,
            margin=self.margin,
            min_machine_rows=self.min_machine_rows,
        )
        return self

    def _scored_rows(
        self, x: ArrayLike, machine_ids: Sequence[str]
    ) -> Iterator[tuple[IntArray, FloatArray, AnomalyDetector, Calibration]]:
        """Per scored regime: rows (positions in `x`) of machines with a baseline in it, their
        residuals, its detector and calibration.
        """
        info = self.info
        arr = _as_matrix(x, len(MODEL_SIGNALS))
        ids = _machine_array(machine_ids, len(arr))
        regimes = regime_index(arr)
        for r, name in enumerate(REGIMES):
            at = np.flatnonzero(regimes == r)
            det = self._detectors.get(name)
            if not len(at) or det is None:
                continue
            base = self._baselines[name]
            idx = base.index_of(ids[at].tolist())
            at, idx = at[idx >= 0], idx[idx >= 0]
            if len(at):
                yield at, base.residuals(arr[at], idx), det, info.calibration[name]

    def score(self, x: ArrayLike, machine_ids: Sequence[str]) -> FloatArray:
        """Anomaly score per row, relative to its regime's threshold: above 1.0 is anomalous.

        One pass of the regime's forest per regime for the whole batch.

        Args:
            x: Rows with the columns of `MODEL_SIGNALS`.
            machine_ids: Per row, the machine it is a window of.

        Returns:
            Scores, shape (len(x),); NaN for rows with the engine off or warming up, any value
            missing, in a regime that is not scored, or of a machine without a baseline in the
            row's regime.

        Raises:
            NotFittedError: Before `fit`.
            ShapeError: `x` does not have the columns of `MODEL_SIGNALS`.
            MachineIdsError: `machine_ids` is not one per row.
        """
        scores = np.full(len(np.asarray(x)), np.nan)
        for at, res, det, cal in self._scored_rows(x, machine_ids):
            scores[at] = cal.combined(det.score(res), _abs(det.explain(res))) / cal.threshold
        return scores

    def explain(self, x: ArrayLike, machine_ids: Sequence[str]) -> FloatArray:
        """Robust z-score of every value's deviation from its machine's healthy baseline.

        The deviation (residual) is in units of the spread of healthy machines about their own
        baselines in the row's regime: `oil_pressure_kpa z=+12` is twelve such sigmas above what
        this machine shows at this engine speed.

        Args:
            x: Rows with the columns of `MODEL_SIGNALS`.
            machine_ids: Per row, the machine it is a window of.

        Returns:
            Same shape as `x`, columns in `MODEL_SIGNALS` order; rows not scored (see `score`)
            are all NaN, and missing values stay NaN.

        Raises:
            NotFittedError: Before `fit`.
            ShapeError: `x` does not have the columns of `MODEL_SIGNALS`.
            MachineIdsError: `machine_ids` is not one per row.
        """
        z = np.full(np.shape(x), np.nan)
        for at, res, det, _ in self._scored_rows(x, machine_ids):
            z[at] = det.explain(res)
        return z

    def oil_baseline(self, machine_ids: Sequence[str]) -> FloatArray:
        """Each machine's healthy oil pressure over engine speed, per regime, as a line.

        What the `low_oil_pressure` rule holds a reading against (`oil_reference`): the
        baseline's median oil pressure plus the machine's own slope times the speed's distance
        from its median speed (`Baselines.oil_line`), the same for single readings as for
        window means.

        Returns:
            Shape (len(machine_ids), len(REGIMES), 2): intercept (kPa) and slope (kPa/rpm); NaN
            where the machine has no baseline in the regime or the regime is not scored.

        Raises:
            NotFittedError: Before `fit`.
        """
        if self._info is None:
            raise NotFittedError("RegimeModel")
        lines = np.full((len(machine_ids), len(REGIMES), 2), np.nan)
        for r, name in enumerate(REGIMES):
            base = self._baselines.get(name)
            if base is None or name not in self._detectors:
                continue
            idx = base.index_of(machine_ids)
            has = idx >= 0
            lines[has, r] = base.oil_line(idx[has])
        return lines

    def oil_reference(
        self, x: ArrayLike, machine_ids: Sequence[str], machine_of: ArrayLike
    ) -> FloatArray:
        """Per row, its machine's healthy oil pressure at the row's engine speed and regime.

        Args:
            x: Rows with the columns of `MODEL_SIGNALS`.
            machine_ids: The distinct machines of the rows.
            machine_of: Per row, its machine's position in `machine_ids`.

        Returns:
            Shape (len(x),); NaN where the row is not scored (see `score`): engine off, warming
            up, speed, load or coolant missing, or no baseline for the machine in that regime.

        Raises:
            NotFittedError: Before `fit`.
            ShapeError: `x` does not have the columns of `MODEL_SIGNALS`.
            MachineIdsError: `machine_of` is not one index per row.
        """
        lines = self.oil_baseline(machine_ids)
        arr = _as_matrix(x, len(MODEL_SIGNALS))
        rows_of = np.asarray(machine_of, dtype=np.int64)
        if rows_of.shape != (len(arr),):
            raise MachineIdsError(len(arr), rows_of.shape)
        regimes = regime_index(arr)
        ref = np.full(len(arr), np.nan)
        at = np.flatnonzero(regimes != NOT_SCORED)
        line = lines[rows_of[at], regimes[at]]
        ref[at] = line[:, 0] + line[:, 1] * arr[at, _SPEED_COL]
        return ref

    def to_bytes(self) -> bytes:
        """The fitted model as bytes for the `anomaly_models` table.

        Layout: magic `TMAM`, format version (uint16), header length (uint32), header (UTF-8
        JSON: format and library versions, `ModelInfo`, SHA-256 of the body), body (a pickle of
        plain containers and numpy arrays: per regime the detector's statistics and flat forest,
        and the machines' baselines; no class of ours or of scikit-learn, so renaming code
        breaks no stored model).

        Raises:
            NotFittedError: Before `fit`.
        """
        info = self.info
        state = {
            "detectors": {k: d.state() for k, d in self._detectors.items()},
            "baselines": {k: b.state() for k, b in self._baselines.items()},
            "min_rows": [self.min_rows, self.min_regime_rows],
        }
        body = pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
        header = {
            "format": FORMAT_VERSION,
            "sklearn": sklearn.__version__,
            "numpy": np.__version__,
            "body_sha256": hashlib.sha256(body).hexdigest(),
            "info": info.to_json(),
        }
        header_bytes = json.dumps(header, sort_keys=True).encode()
        return _PREFIX.pack(_MAGIC, FORMAT_VERSION, len(header_bytes)) + header_bytes + body

    @staticmethod
    def from_bytes(blob: bytes) -> RegimeModel:
        """A model from `to_bytes` output.

        Only blobs of the same format version and scikit-learn version load: forests grown by
        another scikit-learn version may split differently, so the model must be retrained
        (`telematics train`) after an upgrade.

        Args:
            blob: Bytes from `to_bytes`, from a trusted store only (the body is a pickle).

        Returns:
            The model, scoring exactly as the one serialised.

        Raises:
            ModelFormatError: The blob is not a model, is damaged, or is incompatible.
        """
        header, body = read_header(blob)
        digest = hashlib.sha256(body).hexdigest()
        if digest != header["body_sha256"]:
            raise ModelFormatError("checksum", digest, str(header["body_sha256"]))
        info = ModelInfo.from_json(header["info"])
        try:
            state = pickle.loads(body)  # noqa: S301 - written by admins to our own database
            detectors = {
                str(k): AnomalyDetector.from_state(s) for k, s in state["detectors"].items()
            }
            baselines = {str(k): Baselines.from_state(s) for k, s in state["baselines"].items()}
            min_rows, min_regime_rows = state["min_rows"]
        except (pickle.UnpicklingError, EOFError, AttributeError, ImportError) as exc:
            raise ModelFormatError("body") from exc
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise ModelFormatError("body") from exc
        scored = {name for name in REGIMES if name not in info.unscored}
        if set(detectors) != scored or set(baselines) != scored or set(info.calibration) != scored:
            raise ModelFormatError("body")
        model = RegimeModel(
            info.machine_model,
            n_estimators=info.n_estimators,
            seed=info.seed,
            quantile=info.quantile,
            margin=info.margin,
            min_rows=int(min_rows),
            min_regime_rows=int(min_regime_rows),
            min_machine_rows=info.min_machine_rows,
        )
        model._detectors, model._baselines, model._info = detectors, baselines, info
        return model


def _machine_array(machine_ids: Sequence[str], rows: int) -> NDArray[np.str_]:
    """Machine ids as a numpy string array, one per row."""
    ids = np.asarray(machine_ids, dtype=np.str_)
    if ids.shape != (rows,):
        raise MachineIdsError(rows, ids.shape)
    return ids


def read_header(blob: bytes) -> tuple[dict[str, Any], bytes]:
    """Check a serialised model's header, without unpickling anything.

    `ModelInfo.from_json(header["info"])` then gives the metadata, e.g. to list stored models.

    Args:
        blob: Bytes from `RegimeModel.to_bytes`.

    Returns:
        The parsed header and the body.

    Raises:
        ModelFormatError: Not a model, damaged, or another format, scikit-learn version or
            signal set.
    """
    if len(blob) < _PREFIX.size:
        raise ModelFormatError("truncated")
    magic, version, header_len = _PREFIX.unpack_from(blob)
    if magic != _MAGIC:
        raise ModelFormatError("magic", repr(magic), repr(_MAGIC))
    if version != FORMAT_VERSION:
        raise ModelFormatError("format_version", str(version), str(FORMAT_VERSION))
    end = _PREFIX.size + header_len
    if len(blob) < end:
        raise ModelFormatError("truncated")
    try:
        header = json.loads(blob[_PREFIX.size : end])
        sklearn_version = str(header["sklearn"])
        info = ModelInfo.from_json(header["info"])
        str(header["body_sha256"])
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ModelFormatError("header") from exc
    if sklearn_version != sklearn.__version__:
        raise ModelFormatError("sklearn_version", sklearn_version, sklearn.__version__)
    if info.signals != MODEL_SIGNALS:
        raise ModelFormatError("signals", ",".join(info.signals), ",".join(MODEL_SIGNALS))
    return header, blob[end:]
