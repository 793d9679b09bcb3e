"""What a fitted anomaly model is, as plain values: its metadata and per-regime calibrations.

This module owns `ModelInfo` (what a `RegimeModel` is and what it was trained on, readable from
a stored model's JSON header without unpickling anything) and `Calibration` (how one regime's
raw forest score and z-scores become one score where 1.0 is the alarm line). It must never fit
or score rows, import scikit-learn (its version is only a string here), or do I/O: values in,
values and JSON-compatible dicts out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]


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
        threshold: `quantile` of the combined score `max(forest / f, max_k |z_k| / t_k, r)`,
            times `margin`; the combined score divided by it is `RegimeModel.score`. `r` is the
            relation detector's score (`diagnosis.relations`, already 1.0 at its own limit), in
            models of format 4; format 3 models have none.
    """

    forest: float
    tail: tuple[float, ...]
    threshold: float

    def combined(
        self, forest_scores: FloatArray, abs_z: FloatArray, relation: FloatArray | None = None
    ) -> FloatArray:
        """Forest, tail and relation figures on one scale (about 1.0 at the calibration
        quantile).
        """
        tails = np.maximum(np.asarray(self.tail, dtype=np.float64), 1e-9)
        worst: FloatArray = (abs_z / tails).max(axis=1, initial=0.0)
        out: FloatArray = np.maximum(forest_scores / self.forest, worst)
        if relation is not None:
            out = np.maximum(out, relation)
        return out


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
