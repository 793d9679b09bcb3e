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


def _unit_variance(x_j: Floats, w: Floats) -> Floats:
    y = x_j @ w
    sd = float(np.sqrt(np.mean(y * y)))
    if not np.isfinite(sd) or sd <= 1e-12:
        raise EstimationError("a construct's score has no variance")
    scaled: Floats = w / sd
    return scaled


def _ols(y: Floats, xs: Floats) -> Floats:
    beta = np.linalg.lstsq(xs, y, rcond=None)[0]
    return np.asarray(beta, dtype=np.float64)


def _inner(model: PathModel, scores: Floats, scheme: Scheme) -> Floats:
    n, k = scores.shape
    corr = scores.T @ scores / n
    e = np.zeros((k, k))
    for j in range(k):
        preds, succs = model.predecessors(j), model.successors(j)
        for i in set(preds) | set(succs):
            if scheme is Scheme.CENTROID:
                e[i, j] = np.sign(corr[i, j])
            elif scheme is Scheme.FACTORIAL or i in succs:
                e[i, j] = corr[i, j]
        if scheme is Scheme.PATH and preds:
            e[preds, j] = _ols(scores[:, j], scores[:, preds])
    inner: Floats = scores @ e
    return inner


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
    n = x.shape[0]
    if n < 3:
        raise EstimationError("too few rows")
    means: Floats = np.mean(x, axis=0, dtype=np.float64)
    xc = x - means
    blocks = [xc[:, list(b)] for b in model.blocks]
    if start is None:
        weights = [_unit_variance(b, np.ones(b.shape[1])) for b in blocks]
    else:
        weights = [
            _unit_variance(b, np.asarray(w, dtype=np.float64))
            for b, w in zip(blocks, start, strict=True)
        ]
    iterations = 0
    while True:
        iterations += 1
        scores = np.column_stack([b @ w for b, w in zip(blocks, weights, strict=True)])
        inner = _inner(model, scores, scheme)
        new = [_unit_variance(b, b.T @ inner[:, j] / n) for j, b in enumerate(blocks)]
        change = max(float(np.max(np.abs(a - b))) for a, b in zip(new, weights, strict=True))
        weights = new
        if change < tol:
            break
        if iterations >= max_iter:
            raise EstimationError(f"no convergence in {max_iter} iterations")
    scores = np.column_stack([b @ w for b, w in zip(blocks, weights, strict=True)])
    paths: dict[tuple[int, int], float] = {}
    r_squared: dict[int, float] = {}
    for j in model.endogenous():
        preds = model.predecessors(j)
        beta = _ols(scores[:, j], scores[:, preds])
        residual = scores[:, j] - scores[:, preds] @ beta
        r_squared[j] = float(1.0 - np.mean(residual * residual))
        paths.update({(i, j): float(b) for i, b in zip(preds, beta, strict=True)})
    loadings = tuple(_correlations(b, scores[:, j]) for j, b in enumerate(blocks))
    return Estimate(tuple(weights), scores, loadings, paths, r_squared, means, iterations)


def _correlations(block: Floats, score: Floats) -> Floats:
    sd = np.sqrt(np.mean(block * block, axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        out: Floats = np.where(sd > 0, (block.T @ score) / len(score) / sd, 0.0)
    return out


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
