"""Partial least squares path modelling (PLS-PM), the estimator of ACSI-type indices.

Pure numpy: it imports no I/O library, reads no clock and touches no database. Values in (an
n x p matrix of item scores, the blocks of items of each construct, the paths between
constructs), values out (outer weights, latent scores, path coefficients, R²).

The algorithm is the standard iterative one (Wold; Lohmöller's simultaneous updates) on centred,
unscaled items, `X` below being the centred item matrix and `X_j` the columns of block j:

1. Start with w_j = 1 (or the given weights), scaled so that y_j = X_j w_j has unit variance
   (variance with divisor n, as every variance here).
2. Inner estimate: z_j = Σ_{i adjacent to j} e_ji y_i, with the scheme's inner weights:
   centroid e_ji = sign(cor(y_j, y_i)); factorial e_ji = cor(y_j, y_i); path e_ji = the
   coefficient of y_i in the OLS regression of y_j on all its predecessors, when i precedes j,
   and cor(y_j, y_i) when i follows j.
3. Outer estimate, Mode A: w_j = X_jᵀ z_j / n, rescaled so that X_j w_j has unit variance.
4. Repeat 2-3 until no weight changes by more than `tol` (1e-10).
5. Path coefficients: OLS of each endogenous score on its predecessors' scores (no intercept:
   scores are centred); R²_j = 1 - mean(residual²) (the scores have unit variance).

Scores are y = X w, so each latent score Σ wᵢ(xᵢ - x̄ᵢ) has unit variance; `weights` are these
wᵢ. Loadings are cor(xᵢ, y_j).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from typing import Final

import numpy as np
from numpy.typing import NDArray

Floats = NDArray[np.float64]

TOL: Final = 1e-10
MAX_ITER: Final = 500


class Scheme(StrEnum):
    """The inner weighting scheme."""

    CENTROID = "centroid"
    FACTORIAL = "factorial"
    PATH = "path"


class EstimationError(ValueError):
    """The data cannot be estimated on this model (a block without variance, no convergence)."""


@dataclass(frozen=True, slots=True)
class PathModel:
    """Constructs as blocks of item columns, and the directed paths between constructs.

    Attributes:
        blocks: For each construct, the indices of its items' columns.
        paths: (from, to) pairs of construct indices; the graph must be acyclic, and every
            construct must lie on a path (its inner estimate needs a neighbour).
    """

    blocks: tuple[tuple[int, ...], ...]
    paths: tuple[tuple[int, int], ...]

    def __post_init__(self) -> None:
        n = len(self.blocks)
        if any(not b for b in self.blocks):
            raise EstimationError("every construct needs at least one item")
        for a, b in self.paths:
            if not (0 <= a < n and 0 <= b < n) or a == b:
                raise EstimationError(f"bad path {a} -> {b}")
        if {c for p in self.paths for c in p} != set(range(n)):
            raise EstimationError("every construct must lie on a path")
        if not _acyclic(n, self.paths):
            raise EstimationError("the paths must not form a cycle")

    def predecessors(self, j: int) -> list[int]:
        """Constructs with a path into j, in path order."""
        return [a for a, b in self.paths if b == j]

    def successors(self, j: int) -> list[int]:
        """Constructs j has a path into."""
        return [b for a, b in self.paths if a == j]

    def endogenous(self) -> list[int]:
        """Constructs with at least one predecessor."""
        return sorted({b for _, b in self.paths})


def _acyclic(n: int, paths: tuple[tuple[int, int], ...]) -> bool:
    """Kahn's algorithm: every node can be taken once its predecessors are."""
    indegree = [0] * n
    for _, b in paths:
        indegree[b] += 1
    ready = [j for j in range(n) if indegree[j] == 0]
    taken = 0
    while ready:
        j = ready.pop()
        taken += 1
        for a, b in paths:
            if a == j:
                indegree[b] -= 1
                if indegree[b] == 0:
                    ready.append(b)
    return taken == n


@dataclass(frozen=True, slots=True)
class Estimate:
    """A fitted path model.

    Attributes:
        weights: Outer weights per construct (on centred, unscaled items).
        scores: n x J latent scores, each of unit variance.
        loadings: Per construct, cor(item, score).
        paths: (from, to) -> path coefficient.
        r_squared: Endogenous construct -> R².
        means: Item means (p).
        iterations: Iterations to convergence.
    """

    weights: tuple[Floats, ...]
    scores: Floats
    loadings: tuple[Floats, ...]
    paths: dict[tuple[int, int], float]
    r_squared: dict[int, float]
    means: Floats
    iterations: int


@dataclass(frozen=True, slots=True)
class _Structure:
    """The model as matrices: which item loads on which construct, who is adjacent to whom."""

    mask: Floats  # p x J, 1 where item i belongs to construct j
    adjacent: Floats  # J x J, 1 where i and j share a path (either direction)
    follows: Floats  # J x J, 1 where i follows j (j -> i)
    preds: tuple[tuple[int, ...], ...]


@lru_cache(maxsize=64)
def _structure(model: PathModel, p: int) -> _Structure:
    k = len(model.blocks)
    mask = np.zeros((p, k))
    for j, block in enumerate(model.blocks):
        mask[list(block), j] = 1.0
    adjacent, follows = np.zeros((k, k)), np.zeros((k, k))
    for a, b in model.paths:
        adjacent[a, b] = adjacent[b, a] = 1.0
        follows[b, a] = 1.0
    preds = tuple(tuple(model.predecessors(j)) for j in range(k))
    return _Structure(mask, adjacent, follows, preds)


def _standardised(weights: Floats, cov: Floats) -> Floats:
    """Columns scaled so that each construct's score has unit variance (wᵀ S w = 1)."""
    var = np.einsum("ij,ik,kj->j", weights, cov, weights)
    if not np.all(np.isfinite(var)) or np.any(var <= 1e-24):
        raise EstimationError("a construct's score has no variance")
    out: Floats = weights / np.sqrt(var)
    return out


def _regression(corr: Floats, preds: tuple[int, ...], j: int) -> Floats:
    """OLS coefficients of score j on the scores `preds`, from their correlations."""
    try:
        beta = np.linalg.solve(corr[np.ix_(preds, preds)], corr[list(preds), j])
    except np.linalg.LinAlgError as exc:
        raise EstimationError("predecessor scores are collinear") from exc
    return np.asarray(beta, dtype=np.float64)


def _inner(st: _Structure, corr: Floats, scheme: Scheme) -> Floats:
    """Inner weights E (J x J): z_j = Σ_i E[i, j] y_i."""
    if scheme is Scheme.CENTROID:
        out: Floats = np.sign(corr) * st.adjacent
        return out
    if scheme is Scheme.FACTORIAL:
        out = corr * st.adjacent
    else:
        out = corr * st.follows  # successors: their correlation
        for j, preds in enumerate(st.preds):
            if preds:
                out[list(preds), j] = _regression(corr, preds, j)
    return out


def estimate(
    items: Floats,
    model: PathModel,
    *,
    scheme: Scheme = Scheme.CENTROID,
    start: Sequence[Floats] | None = None,
    tol: float = TOL,
    max_iter: int = MAX_ITER,
) -> Estimate:
    """Fit the path model to complete item data (n x p, no NaN).

    Every step is written on the item covariance matrix S = XᵀX / n, so an iteration costs
    O(p² J) whatever n: scores' correlations are WᵀSW, and Mode A's Xⱼᵀzⱼ / n is (S W E)ⱼ,
    W being the p x J block-diagonal weight matrix.

    Args:
        items: Item scores, one row per respondent.
        model: The blocks and paths.
        scheme: Inner weighting scheme.
        start: Initial outer weights per block (e.g. a previous fit's); default all ones.
        tol: Convergence threshold on the largest change of a weight.
        max_iter: Iterations before giving up.

    Raises:
        EstimationError: NaN in the data, a block with no variance, no convergence.
    """
    x = np.asarray(items, dtype=np.float64)
    if x.ndim != 2 or not np.all(np.isfinite(x)):
        raise EstimationError("items must be a finite n x p matrix")
    n, p = x.shape
    if n < 3:
        raise EstimationError("too few rows")
    if any(c >= p for b in model.blocks for c in b):
        raise EstimationError("a block names a column the data does not have")
    st = _structure(model, p)
    means: Floats = np.mean(x, axis=0, dtype=np.float64)
    xc = x - means
    cov = xc.T @ xc / n
    w = st.mask.copy()
    if start is not None:
        for j, (block, given) in enumerate(zip(model.blocks, start, strict=True)):
            w[list(block), j] = given
    w = _standardised(w, cov)
    iterations = 0
    while True:
        iterations += 1
        inner = _inner(st, w.T @ cov @ w, scheme)
        new = _standardised(st.mask * (cov @ w @ inner), cov)
        change = float(np.max(np.abs(new - w)))
        w = new
        if change < tol:
            break
        if iterations >= max_iter:
            raise EstimationError(f"no convergence in {max_iter} iterations")
    corr = w.T @ cov @ w
    paths: dict[tuple[int, int], float] = {}
    r_squared: dict[int, float] = {}
    for j in model.endogenous():
        preds = st.preds[j]
        beta = _regression(corr, preds, j)
        r_squared[j] = float(beta @ corr[list(preds), j])
        paths.update({(i, j): float(b) for i, b in zip(preds, beta, strict=True)})
    sd = np.sqrt(np.diag(cov))
    with np.errstate(invalid="ignore", divide="ignore"):
        item_corr = np.where(sd[:, None] > 0, (cov @ w) / sd[:, None], 0.0)
    weights = tuple(np.array(w[list(b), j]) for j, b in enumerate(model.blocks))
    loadings = tuple(np.array(item_corr[list(b), j]) for j, b in enumerate(model.blocks))
    return Estimate(weights, xc @ w, loadings, paths, r_squared, means, iterations)


def index_weights(weights: Floats) -> Floats:
    """Outer weights rescaled to sum to one (w̃), to apply to unstandardised items.

    Raises:
        EstimationError: The weights do not sum to a positive number (no index can be formed).
    """
    total = float(np.sum(weights))
    if not total > 1e-12:
        raise EstimationError("the index construct's weights do not sum to a positive number")
    out: Floats = weights / total
    return out


def to_0_100(score_1_10: float) -> float:
    """A score on the items' 1-10 scale mapped to 0-100: (x - 1) / 9 x 100."""
    return (score_1_10 - 1.0) / 9.0 * 100.0


def resampled_weights(
    items: Floats,
    model: PathModel,
    counts: NDArray[np.int64],
    *,
    scheme: Scheme = Scheme.CENTROID,
    tol: float = TOL,
    max_iter: int = MAX_ITER,
) -> tuple[Floats, Floats, NDArray[np.bool_]]:
    """Outer weights of many resamples at once (the bootstrap), the same algorithm as
    `estimate` run on B stacked covariance matrices.

    Resample b repeats row r `counts[b, r]` times. Its covariance is
    Xcᵀ diag(c_b) Xc / n - d_b d_bᵀ with d_b = c_b Xc / n (Xc centred on the full sample, for
    accuracy), so no resampled matrix is ever built.

    Args:
        items: n x p complete item data.
        model: The blocks and paths.
        counts: B x n draws, each row summing to n.
        scheme: Inner weighting scheme.
        tol: Convergence threshold.
        max_iter: Iterations before a resample is given up.

    Returns:
        (weights B x p x J block-diagonal, item means B x p, ok B: False where a resample had a
        block without variance, collinear predecessors or did not converge).
    """
    x = np.asarray(items, dtype=np.float64)
    n, p = x.shape
    st = _structure(model, p)
    full_mean = x.mean(axis=0)
    xc = x - full_mean
    c = counts.astype(np.float64)
    shift = c @ xc / n
    covs = np.stack([(xc.T * cb) @ xc / n for cb in c]) - shift[:, :, None] * shift[:, None, :]
    ok = np.ones(len(c), dtype=np.bool_)

    def standardised(w: Floats) -> Floats:
        var = np.einsum("bij,bik,bkj->bj", w, covs, w)
        bad = ~np.isfinite(var) | (var <= 1e-24)
        ok[np.any(bad, axis=1)] = False
        out: Floats = w / np.sqrt(np.where(bad, 1.0, var))[:, None, :]
        return out

    w = standardised(np.broadcast_to(st.mask, (len(c), *st.mask.shape)).copy())
    done = np.zeros(len(c), dtype=np.bool_)
    for _ in range(max_iter):
        corr = np.matmul(w.transpose(0, 2, 1), np.matmul(covs, w))
        inner = _inner_batch(st, corr, scheme, ok)
        new = standardised(st.mask * np.matmul(np.matmul(covs, w), inner))
        change = np.max(np.abs(new - w), axis=(1, 2))
        w = np.where(done[:, None, None], w, new)
        done |= change < tol
        if np.all(done | ~ok):
            break
    ok &= done
    return w, full_mean + shift, ok


def _inner_batch(st: _Structure, corr: Floats, scheme: Scheme, ok: NDArray[np.bool_]) -> Floats:
    if scheme is Scheme.CENTROID:
        out: Floats = np.sign(corr) * st.adjacent
        return out
    if scheme is Scheme.FACTORIAL:
        out = corr * st.adjacent
    else:
        out = corr * st.follows
        for j, preds in enumerate(st.preds):
            if preds:
                idx = list(preds)
                a = corr[:, idx][:, :, idx]
                singular = np.abs(np.linalg.det(a)) < 1e-12
                ok[singular] = False
                a[singular] = np.eye(len(idx))
                out[:, idx, j] = np.linalg.solve(a, corr[:, idx, j][:, :, None])[:, :, 0]
    return out
