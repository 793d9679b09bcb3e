"""Relations between signals: a detector of broken relations with its own calibrated decision.

This module owns `RelationDetector`: it learns from healthy rows how signals move together (and,
with `lags`, how they move over a few readings), and flags rows where one signal no longer fits
what the others say it should be: oil pressure normal on its own but too low for the engine speed
and temperature. It also owns the decision: control limits learnt from healthy data alone at a
stated false-alarm rate (`alpha`), and persistence over a few readings (`k_of_n`). It must never
import scikit-learn, know what a column means, or do I/O: float matrices in, float arrays and
masks out. All of it is linear algebra over whole batches (no Python loop over rows).

Two families of statistic, one interface (`method`):

* `"pca"`: principal components of the standardised (and lagged) rows. Hotelling's T² measures
  how far a row lies along the healthy directions (an operating point beyond what training saw);
  the squared prediction error SPE (Q) measures how far it lies off them (a relation broken).
  The statistic is the larger of the two, each divided by its own limit. `"spe"` uses Q alone.
* `"regression"`: each signal regressed (ridge least squares) on the other signals, now and over
  the `lags` readings before; the residuals, divided by their healthy spread, are what broke, and
  the statistic is their sum of squares. A signal's own past is not a regressor: a drifting
  sensor would otherwise predict itself and the drift would show only at its first step.

Limits are empirical, not F or chi-squared: the healthy rows are cut into `folds` contiguous
blocks, a detector fitted without a block scores it, and the limit of each figure is its
`1 - alpha` quantile over those out-of-fold figures. In-sample figures would set the limits too
low (a model fits the rows it was fitted on), and the F and chi-squared limits assume independent
Gaussian rows, which readings a few seconds apart are not. `score` is the statistic divided by its
limit, so 1.0 is the line: a healthy row lies above it with probability about `alpha`.

`explain` gives per signal its signed contribution (reconstruction-based, see `explain`): `-8`
says the signal, alone, is about eight healthy spreads below what its relations with the others
(and its recent past) predict. `partners` names, per signal,
the signals its relation leans on most, so an alarm can say what it is too low *for*.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any, Final, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from diagnosis.model_errors import NotEnoughDataError, NotFittedError
from diagnosis.model_input import as_matrix, finite_rows

__all__ = ["METHODS", "Method", "RelationDetector", "k_of_n", "lagged"]

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]

Method = Literal["pca", "spe", "regression"]
METHODS: Final[tuple[Method, ...]] = ("pca", "spe", "regression")

_MIN_SPREAD: Final = 1e-9


def lagged(x: FloatArray, lags: int) -> FloatArray:
    """Rows with the `lags` rows before each appended: `[x_t, x_(t-1), ..., x_(t-lags)]`.

    The first rows lack a past; they repeat the first row (a steady start), so every row gets a
    figure. Rows must be in time order, of one series.
    """
    if lags <= 0:
        return x
    pad = np.repeat(x[:1], lags, axis=0)
    ext = np.concatenate([pad, x]) if len(x) else x
    n = len(x)
    return np.hstack([ext[lags - k : lags - k + n] for k in range(lags + 1)])


def k_of_n(is_over: ArrayLike, k: int, n: int) -> BoolArray:
    """Persistence: True where at least `k` of the last `n` points (this one included) are over.

    One noisy point does not alarm; a fault that lasts does, `k - 1` points late at most.

    Args:
        is_over: Per point, in time order, whether its score is above the limit.
        k: Points over the limit needed.
        n: Points looked back at (the current one included); `k <= n`.
    """
    over = np.asarray(is_over, dtype=np.bool_)
    if k <= 1:
        return over.copy()
    csum = np.concatenate([[0], np.cumsum(over, dtype=np.int64)])
    idx = np.arange(1, len(over) + 1)
    counts = csum[idx] - csum[np.maximum(idx - n, 0)]
    out: BoolArray = counts >= k
    return out


class RelationDetector:
    """Broken relations between signals, with control limits from healthy data.

    Args:
        method: `"pca"` (T² and SPE), `"spe"` (SPE alone) or `"regression"` (each signal on the
            others); see the module docstring.
        lags: Readings of context appended to each row (0: the relation at one instant).
        variance: Share of the standardised variance the principal components keep (pca, spe).
        ridge: Ridge penalty of the regressions, relative to the standardised variance.
        alpha: Stated false-alarm rate per point of the limits (before persistence); 1 %, the
            usual 99 % control limit of process monitoring.
        folds: Contiguous blocks of the out-of-fold calibration.
        persist: `(k, n)` of `decide`: k of the last n points over the limit.

    Attributes:
        n_features: Signals per row (before lags).
        n_rows: Training rows (finite).
        limits: Per figure, its limit (pca: T² then SPE; spe: SPE; regression: sum of squares).
    """

    MIN_ROWS: Final = 20

    def __init__(
        self,
        *,
        method: Method = "regression",
        lags: int = 1,
        variance: float = 0.95,
        ridge: float = 1e-3,
        alpha: float = 0.01,
        folds: int = 5,
        persist: tuple[int, int] = (3, 4),
    ) -> None:
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}")
        self.method: Method = method
        self.lags = int(lags)
        self.variance = float(variance)
        self.ridge = float(ridge)
        self.alpha = float(alpha)
        self.folds = int(folds)
        self.persist = (int(persist[0]), int(persist[1]))
        self.n_features = 0
        self.n_rows = 0
        self.limits: FloatArray = np.empty(0)
        self._mean: FloatArray | None = None
        self._sd: FloatArray = np.empty(0)
        self._p: FloatArray = np.empty((0, 0))  # pca: loadings; regression: coefficients
        self._eig: FloatArray = np.empty(0)  # pca: kept eigenvalues
        self._res_sd: FloatArray = np.empty(0)  # healthy spread of each signal's residual
        self._m: FloatArray = np.empty((0, 0))  # the statistic as a quadratic form, for explain

    # -- fit --------------------------------------------------------------------------------

    def fit(self, x: ArrayLike) -> RelationDetector:
        """Learn the relations from healthy rows (in time order) and calibrate the limits.

        Raises:
            ShapeError: `x` is not a 2-D matrix.
            NotEnoughDataError: Fewer than `MIN_ROWS` finite rows, or fewer than `folds` times
                that for the calibration.
        """
        arr = as_matrix(x, None)
        arr = arr[finite_rows(arr)]
        folds = max(self.folds, 2)
        if len(arr) < self.MIN_ROWS * folds:
            raise NotEnoughDataError(len(arr), self.MIN_ROWS * folds)
        self._learn(arr, None)
        # Out-of-fold figures: each contiguous block scored by a detector fitted on the rest,
        # with as many components as the final fit keeps (a count that moved between folds
        # would put the folds' SPE on another scale).
        keep = self._p.shape[1]
        bounds = np.linspace(0, len(arr), folds + 1).astype(np.int64)
        figures = []
        for lo, hi in itertools.pairwise(bounds.tolist()):
            rest = np.concatenate([arr[:lo], arr[hi:]])
            part = self._spawn()._learn(rest, keep)
            figures.append(part._figures(arr[lo:hi]))
        oof = np.concatenate(figures)
        q = 1.0 - self.alpha
        limits = np.quantile(oof, q, axis=0)
        if self.method == "pca":
            # Each figure by its own limit, then the larger: the limit of that max is set again
            # so that the combined rate, not each figure's, is alpha.
            combined = (oof / np.maximum(limits, _MIN_SPREAD)).max(axis=1)
            limits = limits * float(np.quantile(combined, q))
        self.limits = np.maximum(np.asarray(limits, dtype=np.float64), _MIN_SPREAD)
        return self

    def _spawn(self) -> RelationDetector:
        return RelationDetector(
            method=self.method,
            lags=self.lags,
            variance=self.variance,
            ridge=self.ridge,
            alpha=self.alpha,
            folds=self.folds,
            persist=self.persist,
        )

    def _learn(self, arr: FloatArray, keep: int | None) -> RelationDetector:
        """Fit the relations (no limits) on finite rows in time order.

        `keep` components (pca, spe), else as many as `variance` asks for.
        """
        self.n_rows, self.n_features = arr.shape
        mean = arr.mean(axis=0)
        sd = arr.std(axis=0)
        self._mean, self._sd = mean, np.where(sd > _MIN_SPREAD, sd, 1.0)
        v = lagged((arr - mean) / self._sd, self.lags)
        if self.method == "regression":
            self._p = self._regressions(v)
        else:
            cov = v.T @ v / max(len(v) - 1, 1)
            eig, vec = np.linalg.eigh(cov)
            eig, vec = eig[::-1], vec[:, ::-1]
            share = np.cumsum(np.maximum(eig, 0.0)) / max(float(np.maximum(eig, 0.0).sum()), 1e-12)
            if keep is None:
                keep = int(np.searchsorted(share, self.variance) + 1)
                keep = min(max(keep, 1), len(eig) - 1) if len(eig) > 1 else 1
            self._p, self._eig = vec[:, :keep], np.maximum(eig[:keep], _MIN_SPREAD)
        res = self._residuals_std(v)
        spread = res.std(axis=0)
        self._res_sd = np.where(spread > _MIN_SPREAD, spread, 1.0)
        self._m = self._quadratic_form(v.shape[1])
        return self

    def _quadratic_form(self, width: int) -> FloatArray:
        """M of the statistic v'Mv of a standardised, lagged row v, for `explain`.

        Regression: the sum of squared residuals, each by its healthy spread. PCA: SPE plus T²,
        each by its own figure's scale (the limits are not known yet when the folds are fitted,
        so the training means stand in for them).
        """
        m = self.n_features
        if self.method == "regression":
            pick = np.zeros((width, m))
            pick[np.arange(m), np.arange(m)] = 1.0
            a = (pick - self._p) / self._res_sd
            out: FloatArray = a @ a.T
            return out
        q = np.eye(width) - self._p @ self._p.T
        if self.method == "spe":
            return q
        t2 = (self._p / self._eig) @ self._p.T
        keep = self._p.shape[1]
        combined: FloatArray = q / max(width - keep, 1) + t2 / keep
        return combined

    def _regressions(self, v: FloatArray) -> FloatArray:
        """Per signal, ridge coefficients on the other signals now and at every lag.

        Returns a matrix B, (columns of v) x n_features, so that `v @ B` predicts each signal;
        column j has zeros where signal j itself (now or lagged) would be.
        """
        m = self.n_features
        width = v.shape[1]
        gram = v.T @ v / max(len(v), 1)
        b = np.zeros((width, m))
        own = np.arange(self.lags + 1) * m
        for j in range(m):  # signals, not rows
            use = np.setdiff1d(np.arange(width), own + j)
            a = gram[np.ix_(use, use)] + self.ridge * np.eye(len(use))
            b[use, j] = np.linalg.solve(a, gram[use, j])
        return b

    # -- score ------------------------------------------------------------------------------

    def _fitted(self) -> FloatArray:
        if self._mean is None:
            raise NotFittedError("RelationDetector")
        return self._mean

    def _standardised(self, x: ArrayLike) -> tuple[FloatArray, BoolArray]:
        mean = self._fitted()
        arr = as_matrix(x, self.n_features)
        is_finite = finite_rows(arr)
        z = (np.where(np.isfinite(arr), arr, mean) - mean) / self._sd
        return lagged(z, self.lags), is_finite

    def _residuals_std(self, v: FloatArray) -> FloatArray:
        """Per row and signal, its value minus what the relations predict.

        In standardised units, not yet divided by the residual spread.
        """
        m = self.n_features
        if self.method == "regression":
            out: FloatArray = v[:, :m] - v @ self._p
            return out
        full: FloatArray = v - (v @ self._p) @ self._p.T
        return full[:, :m]

    def _figures(self, x: ArrayLike) -> FloatArray:
        """Raw figures per row: pca (T², SPE), spe (SPE,), regression (sum of squares,)."""
        return self._figures_of(self._standardised(x)[0])

    def _figures_of(self, v: FloatArray) -> FloatArray:
        if self.method == "regression":
            r = self._residuals_std(v) / self._res_sd
            return np.asarray((r * r).sum(axis=1, keepdims=True), dtype=np.float64)
        t = v @ self._p
        e = v - t @ self._p.T
        spe = (e * e).sum(axis=1)
        if self.method == "spe":
            return np.asarray(spe[:, None], dtype=np.float64)
        t2 = (t * t / self._eig).sum(axis=1)
        return np.stack([t2, spe], axis=1)

    def score(self, x: ArrayLike) -> FloatArray:
        """Per row, its statistic divided by the limit (above 1.0 is anomalous); NaN for rows
        with NaN or infinity. Rows are in time order when `lags` > 0.

        Raises:
            NotFittedError: Before `fit`.
            ShapeError: `x` has the wrong shape.
        """
        v, is_finite = self._standardised(x)
        figures = self._figures_of(v)
        s = np.asarray((figures / self.limits).max(axis=1), dtype=np.float64)
        s[~is_finite] = np.nan
        return s

    def is_anomalous(self, x: ArrayLike) -> BoolArray:
        """Per row, whether its score is above 1.0 (no persistence)."""
        out: BoolArray = np.nan_to_num(self.score(x), nan=0.0) > 1.0
        return out

    def decide(self, x: ArrayLike) -> BoolArray:
        """The alarm mask: `persist` = (k, n), at least k of the last n rows anomalous."""
        k, n = self.persist
        return k_of_n(self.is_anomalous(x), k, n)

    def explain(self, x: ArrayLike) -> FloatArray:
        """Per row and signal, how far that signal alone is off its relations with the others.

        Reconstruction-based contributions (Alcala and Qin, 2009): for a statistic v'Mv of the
        (standardised, lagged) row v, signal j's is the largest reduction of the statistic that
        changing signal j alone could bring, `(e_j'Mv)^2 / e_j'Me_j`, given here as its square
        root with the sign of that change: negative when the signal is lower than its relations
        say. Plain residuals smear: when oil pressure breaks, the regression of engine speed on
        oil pressure breaks too, as much; the contribution is large only for the signal whose
        correction restores every relation at once.

        Returns:
            Same shape as `x`; NaN where the row has NaN or infinity.

        Raises:
            NotFittedError: Before `fit`.
            ShapeError: `x` has the wrong shape.
        """
        v, is_finite = self._standardised(x)
        m = self.n_features
        mv = (v @ self._m)[:, :m]
        den = np.maximum(np.diag(self._m)[:m], _MIN_SPREAD)
        out: FloatArray = np.sign(mv) * np.abs(mv) / np.sqrt(den)
        out[~is_finite] = np.nan
        return out

    def partners(self, top: int = 2, share: float = 0.25) -> list[tuple[int, ...]]:
        """Per signal, the other signals its healthy relation leans on most (column indices).

        Regression: the largest coefficients (current and lagged summed), in standardised
        units. PCA: the signals that load most with it on the kept components, weighted by
        their variance. At most `top`, and only those of at least `share` of the largest
        weight: a signal that adds nothing the first one did not say is not named.
        """
        self._fitted()
        m = self.n_features
        if self.method == "regression":
            weight = np.abs(self._p).reshape(self.lags + 1, m, m).sum(axis=0)  # [k, j]
        else:
            cur = self._p[:m] * np.sqrt(self._eig)
            weight = np.abs(cur @ cur.T)
        out = []
        for j in range(m):  # signals, not rows
            w = weight[:, j].copy()
            w[j] = -np.inf
            order = [int(k) for k in np.argsort(-w, kind="stable") if k != j][:top]
            best = w[order[0]] if order else 0.0
            out.append(tuple(k for k in order if w[k] >= share * best))
        return out

    # -- state ------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """The fitted detector as plain containers and numpy arrays, for pickling."""
        mean = self._fitted()
        return {
            "params": [self.method, self.lags, self.variance, self.ridge, self.alpha, self.folds],
            "persist": list(self.persist),
            "counts": [self.n_rows, self.n_features],
            "mean": mean,
            "sd": self._sd,
            "p": self._p,
            "eig": self._eig,
            "res_sd": self._res_sd,
            "m": self._m,
            "limits": self.limits,
        }

    @staticmethod
    def from_state(state: Mapping[str, Any]) -> RelationDetector:
        """A fitted detector from `state` output.

        Raises:
            KeyError, TypeError, ValueError: The state is damaged.
        """
        method, lags, variance, ridge, alpha, folds = state["params"]
        if method not in METHODS:
            raise ValueError("unknown method")
        k, n = (int(v) for v in state["persist"])
        det = RelationDetector(
            method=method,
            lags=int(lags),
            variance=float(variance),
            ridge=float(ridge),
            alpha=float(alpha),
            folds=int(folds),
            persist=(k, n),
        )
        det.n_rows, det.n_features = (int(v) for v in state["counts"])
        arrays = [np.asarray(state[f], dtype=np.float64) for f in ("mean", "sd", "p", "eig")]
        det._mean, det._sd, det._p, det._eig = arrays
        det._res_sd = np.asarray(state["res_sd"], dtype=np.float64)
        det._m = np.asarray(state["m"], dtype=np.float64)
        det.limits = np.asarray(state["limits"], dtype=np.float64)
        m, width = det.n_features, det.n_features * (det.lags + 1)
        if det._mean.shape != (m,) or det._sd.shape != (m,) or det._res_sd.shape != (m,):
            raise ValueError("statistics do not match the feature count")
        if det._p.shape[0] != width or det._m.shape != (width, width):
            raise ValueError("relations do not match the feature count")
        return det
