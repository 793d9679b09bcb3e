"""Anomaly detectors on public, real, labelled multivariate process data, at their own thresholds.

Run by hand (not in CI), after `pip install -e '.[eval]'`: `.venv/bin/python -m bench.anomaly_eval`
(see bench/README.md and docs/diagnosis.md).

Data: the Tennessee Eastman process benchmark (Downs and Vogel's plant, the Braatz group's runs:
52 signals, 41 measurements and 11 manipulated variables, one reading every 3 minutes) as shipped
inside the `bibmon` wheel on PyPI (Apache-2.0; the files are read from the installed package,
which is never imported, so its plotting dependencies are not needed). Training: `d00.dat`,
500 healthy readings. Test: `d00_te.dat` (960 healthy) and `d01_te.dat` .. `d21_te.dat`
(960 each, the fault starting after reading 160: labels are 0 before it and 1 from it on).

Protocol, the same for every detector: fit on the healthy training run alone; each detector sets
its own threshold from it (no threshold tuned on test labels); each test run is scored as one
series in time order (lags and persistence never cross runs); point-wise F1, false-alarm rate
(alarms among healthy points), missed-alarm rate (faulty points not alarmed) and ROC-AUC of the
raw score, pooled over all test points; `over 1` is, for the relation detectors, the share of
the healthy test run's points above the limit before persistence (the stated rate is 0.005).
Faults 3, 9 and 15 are known to leave no trace in these signals (the literature drops them);
the table gives the figures with and without them.

Detectors:
* `relations-*`: `diagnosis.relations.RelationDetector` variants, limits at alpha = 0.5 % per
  point from out-of-fold healthy figures, persistence 3 of 4 (`decide`).
* `current`: `diagnosis.model.AnomalyDetector` (robust scaling + isolation forest), its score's
  99th percentile on the training rows as the threshold.
* `iforest`: scikit-learn's `IsolationForest`, its own `predict` (contamination "auto").
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    del sys.path[0]

import numpy as np
from numpy.typing import NDArray
from sklearn.ensemble import IsolationForest
from sklearn.metrics import roc_auc_score

from diagnosis.model import AnomalyDetector
from diagnosis.relations import RelationDetector

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]

FAULT_START = 160
UNDETECTABLE = (3, 9, 15)


@dataclass(frozen=True)
class Run:
    """One test run: its readings, labels and fault number (0: healthy)."""

    fault: int
    x: FloatArray
    is_faulty: BoolArray


def data_dir() -> Path:
    """Where the installed `bibmon` wheel keeps the Tennessee Eastman files (not imported)."""
    spec = importlib.util.find_spec("bibmon")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the evaluation data is in the `eval` extra: pip install -e '.[eval]'")
    return Path(next(iter(spec.submodule_search_locations))) / "tennessee_eastman"


def load(folder: Path) -> tuple[FloatArray, list[Run]]:
    """The healthy training run and the 22 test runs."""
    train = np.loadtxt(folder / "d00.dat")
    if train.shape[0] == 52:  # d00.dat is stored transposed
        train = train.T
    runs = []
    for fault in range(22):
        x = np.loadtxt(folder / f"d{fault:02d}_te.dat")
        is_faulty = np.arange(len(x)) >= FAULT_START if fault else np.zeros(len(x), np.bool_)
        runs.append(Run(fault, x, is_faulty))
    return train, runs


@dataclass(frozen=True)
class Result:
    """Pooled point-wise figures of one detector."""

    f1: float
    far: float
    mar: float
    auc: float
    f1_kept: float
    healthy_over: float
    fit_s: float
    score_us_per_row: float


Detector = tuple[Callable[[FloatArray], FloatArray], Callable[[FloatArray], BoolArray]]


def evaluate(
    make: Callable[[FloatArray], Detector], train: FloatArray, runs: Sequence[Run]
) -> Result:
    """Fit on the training run, score and decide every test run, pool the figures."""
    t0 = time.perf_counter()
    score, decide = make(train)
    fit_s = time.perf_counter() - t0
    scores, alarms, labels, faults = [], [], [], []
    t0 = time.perf_counter()
    for run in runs:
        scores.append(score(run.x))
        alarms.append(decide(run.x))
    per_row = (time.perf_counter() - t0) / sum(len(r.x) for r in runs) * 1e6
    for run in runs:
        labels.append(run.is_faulty)
        faults.append(np.full(len(run.x), run.fault))
    s, a, y, f = (np.concatenate(v) for v in (scores, alarms, labels, faults))

    def f1_of(keep: BoolArray) -> float:
        tp = float((a & y & keep).sum())
        fp = float((a & ~y & keep).sum())
        fn = float((~a & y & keep).sum())
        return 2 * tp / max(2 * tp + fp + fn, 1.0)

    kept = ~np.isin(f, UNDETECTABLE)
    return Result(
        f1=f1_of(np.ones_like(y)),
        far=float((a & ~y).sum() / max((~y).sum(), 1)),
        mar=float((~a & y).sum() / max(y.sum(), 1)),
        auc=float(roc_auc_score(y, np.nan_to_num(s, nan=0.0))),
        f1_kept=f1_of(kept),
        healthy_over=float((s[f == 0] > 1.0).mean()),
        fit_s=fit_s,
        score_us_per_row=per_row,
    )


def relations(method: str, lags: int) -> Callable[[FloatArray], Detector]:
    def make(train: FloatArray) -> Detector:
        det = RelationDetector(method=method, lags=lags).fit(train)  # type: ignore[arg-type]
        return det.score, det.decide

    return make


def current(train: FloatArray) -> Detector:
    det = AnomalyDetector().fit(train)
    limit = float(np.quantile(det.score(train), 0.99))

    def decide(x: FloatArray) -> BoolArray:
        out: BoolArray = det.score(x) > limit
        return out

    return det.score, decide


def iforest(train: FloatArray) -> Detector:
    forest = IsolationForest(random_state=0).fit(train)

    def score(x: FloatArray) -> FloatArray:
        out: FloatArray = -forest.score_samples(x)
        return out

    def decide(x: FloatArray) -> BoolArray:
        out: BoolArray = forest.predict(x) == -1
        return out

    return score, decide


def detectors(variants: bool) -> dict[str, Callable[[FloatArray], Detector]]:
    out: dict[str, Callable[[FloatArray], Detector]] = {}
    chosen = [("regression", 1)]
    if variants:
        chosen = [(m, lags) for m in ("pca", "spe", "regression") for lags in (0, 1, 2)]
    for method, lags in chosen:
        out[f"relations-{method}-lags{lags}"] = relations(method, lags)
    out["current"] = current
    out["iforest"] = iforest
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--variants", action="store_true", help="every method and lag count")
    args = p.parse_args()
    train, runs = load(data_dir())
    print(f"Tennessee Eastman: train {train.shape}, {len(runs)} test runs of {len(runs[0].x)}")
    head = f"{'detector':28} {'F1':>6} {'F1 w/o 3,9,15':>14} {'FAR':>7} {'MAR':>7} {'AUC':>6}"
    print(head + f" {'over 1':>7} {'fit s':>6} {'us/row':>7}")
    for name, make in detectors(args.variants).items():
        r = evaluate(make, train, runs)
        over = f"{r.healthy_over:7.4f}" if name.startswith("relations") else f"{'-':>7}"
        print(
            f"{name:28} {r.f1:6.3f} {r.f1_kept:14.3f} {r.far:7.4f} {r.mar:7.3f} {r.auc:6.3f}"
            f" {over} {r.fit_s:6.2f} {r.score_us_per_row:7.2f}"
        )


if __name__ == "__main__":
    main()
