"""The PLS-PM estimator against a second formulation written here, and against known truth.

The second formulation is Wold's original procedure, written with explicit Python loops over
plain lists: blocks are updated one after the other (each inner estimate already uses the blocks
updated before it in the same sweep), weights are kept at unit Euclidean norm during the
iterations and standardised only at the end, and correlations are computed from sums. It shares
no code with `telematics.quality.plspm`; both must reach the same fixed point.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from telematics.quality.bootstrap import draw_counts
from telematics.quality.plspm import (
    EstimationError,
    PathModel,
    Scheme,
    estimate,
    index_weights,
    resampled_weights,
    to_0_100,
)

# Four constructs: 0 -> 1, 0 -> 2, 1 -> 2, 2 -> 3 (an ACSI-like chain).
PATHS = ((0, 1), (0, 2), (1, 2), (2, 3))
BLOCKS = ((0, 1, 2), (3, 4, 5, 6), (7, 8, 9), (10, 11))
TRUE = {(0, 1): 0.6, (0, 2): 0.3, (1, 2): 0.5, (2, 3): 0.7}


def generate(n: int, seed: int, noise: float) -> np.ndarray:
    """Items from a known structural model: standardised latents, loadings 0.8-1.0."""
    rng = np.random.default_rng(seed)
    xi = rng.standard_normal(n)
    eta1 = TRUE[(0, 1)] * xi + math.sqrt(1 - TRUE[(0, 1)] ** 2) * rng.standard_normal(n)
    mix = TRUE[(0, 2)] * xi + TRUE[(1, 2)] * eta1
    var_mix = TRUE[(0, 2)] ** 2 + TRUE[(1, 2)] ** 2 + 2 * TRUE[(0, 2)] * TRUE[(1, 2)] * TRUE[(0, 1)]
    eta2 = mix + math.sqrt(1 - var_mix) * rng.standard_normal(n)
    eta3 = TRUE[(2, 3)] * eta2 + math.sqrt(1 - TRUE[(2, 3)] ** 2) * rng.standard_normal(n)
    latents = [xi, eta1, eta2, eta3]
    columns = []
    for j, block in enumerate(BLOCKS):
        for k, _ in enumerate(block):
            loading = 1.0 - 0.05 * k
            columns.append(6.0 + 1.5 * (loading * latents[j] + noise * rng.standard_normal(n)))
    return np.column_stack(columns)


def wold(data: list[list[float]], scheme: str) -> list[list[float]]:  # noqa: C901
    """Outer weights (unit-variance scores on centred items) by Wold's sequential procedure."""
    n, p = len(data), len(data[0])
    means = [sum(row[c] for row in data) / n for c in range(p)]
    x = [[row[c] - means[c] for c in range(p)] for row in data]

    def score(j: int, w: list[float]) -> list[float]:
        return [sum(x[r][c] * wk for c, wk in zip(BLOCKS[j], w, strict=True)) for r in range(n)]

    def standardised(y: list[float]) -> list[float]:
        sd = math.sqrt(sum(v * v for v in y) / n)
        return [v / sd for v in y]

    def cor(a: list[float], b: list[float]) -> float:
        return sum(u * v for u, v in zip(a, b, strict=True)) / math.sqrt(
            sum(u * u for u in a) * sum(v * v for v in b)
        )

    def regression(y: list[float], xs: list[list[float]]) -> list[float]:
        # Normal equations solved by Gauss-Jordan elimination.
        k = len(xs)
        a = [[sum(xs[i][r] * xs[m][r] for r in range(n)) for m in range(k)] for i in range(k)]
        b = [sum(xs[i][r] * y[r] for r in range(n)) for i in range(k)]
        for col in range(k):
            pivot = a[col][col]
            for m in range(k):
                a[col][m] /= pivot
            b[col] /= pivot
            for row in range(k):
                if row != col:
                    f = a[row][col]
                    for m in range(k):
                        a[row][m] -= f * a[col][m]
                    b[row] -= f * b[col]
        return b

    weights = [[1.0 / math.sqrt(len(b))] * len(b) for b in BLOCKS]
    ys = [standardised(score(j, weights[j])) for j in range(len(BLOCKS))]
    for _ in range(1000):
        biggest = 0.0
        for j in range(len(BLOCKS)):
            preds = [a for a, b in PATHS if b == j]
            succs = [b for a, b in PATHS if a == j]
            z = [0.0] * n
            coefficients = dict(zip(preds, regression(ys[j], [ys[i] for i in preds]), strict=True))
            for i in preds + succs:
                r = cor(ys[j], ys[i])
                if scheme == "centroid":
                    e = 1.0 if r > 0 else -1.0
                elif scheme == "path" and i in preds:
                    e = coefficients[i]
                else:
                    e = r
                z = [zr + e * yr for zr, yr in zip(z, ys[i], strict=True)]
            w = [sum(x[r][c] * z[r] for r in range(n)) for c in BLOCKS[j]]
            norm = math.sqrt(sum(v * v for v in w))
            w = [v / norm for v in w]
            biggest = max(biggest, *(abs(a - b) for a, b in zip(w, weights[j], strict=True)))
            weights[j] = w
            ys[j] = standardised(score(j, w))
        if biggest < 1e-13:
            break
    # Standardise: scale each block's weights so that its score has unit variance.
    out = []
    for j, w in enumerate(weights):
        y = score(j, w)
        sd = math.sqrt(sum(v * v for v in y) / n)
        out.append([v / sd for v in w])
    return out


MODEL = PathModel(BLOCKS, PATHS)


@pytest.mark.parametrize("scheme", ["centroid", "factorial", "path"])
def test_the_estimator_agrees_with_wolds_procedure(scheme: str) -> None:
    data = generate(150, seed=7, noise=0.8)
    fit = estimate(data, MODEL, scheme=Scheme(scheme))
    expected = wold(data.tolist(), scheme)
    for got, want in zip(fit.weights, expected, strict=True):
        assert np.max(np.abs(got - np.array(want))) < 1e-6
    # Scores are unit-variance and Σ wᵢ(xᵢ - x̄ᵢ).
    assert np.allclose(fit.scores.var(axis=0), 1.0, atol=1e-9)
    centred = data - data.mean(axis=0)
    assert np.allclose(fit.scores[:, 3], centred[:, list(BLOCKS[3])] @ fit.weights[3])


def test_the_estimator_recovers_known_path_coefficients() -> None:
    data = generate(20_000, seed=11, noise=0.25)
    fit = estimate(data, MODEL)
    for path, coefficient in TRUE.items():
        assert fit.paths[path] == pytest.approx(coefficient, abs=0.03), path
    # With reliable items, R² of the last construct is near its true value 0.49.
    assert fit.r_squared[3] == pytest.approx(TRUE[(2, 3)] ** 2, abs=0.04)
    assert fit.iterations < 100


@pytest.mark.parametrize("scheme", ["centroid", "factorial", "path"])
def test_resamples_fitted_at_once_equal_each_fitted_alone(scheme: str) -> None:
    data = generate(120, seed=5, noise=0.9)
    counts = draw_counts(len(data), 25, seed=3)
    weights, means, ok = resampled_weights(data, MODEL, counts, scheme=Scheme(scheme))
    assert ok.all()
    for b, c in enumerate(counts):
        sample = np.repeat(data, c, axis=0)
        alone = estimate(sample, MODEL, scheme=Scheme(scheme))
        assert np.allclose(means[b], sample.mean(axis=0), atol=1e-12)
        for j, block in enumerate(BLOCKS):
            assert np.max(np.abs(weights[b, list(block), j] - alone.weights[j])) < 1e-8


def test_a_resample_without_variance_is_marked_not_ok() -> None:
    data = generate(40, seed=2, noise=0.5)
    counts = np.zeros((2, 40), dtype=np.int64)
    counts[0, 7] = 40  # one row forty times: no variance at all
    counts[1] = 1
    _, _, ok = resampled_weights(data, MODEL, counts)
    assert ok.tolist() == [False, True]


def test_a_wrong_model_is_refused() -> None:
    data = generate(50, seed=1, noise=0.5)
    with pytest.raises(EstimationError):
        PathModel(BLOCKS, ((0, 1), (1, 2)))  # construct 3 lies on no path
    with pytest.raises(EstimationError):
        PathModel(((0,), (1,)), ((0, 1), (1, 0)))  # a cycle
    flat = data.copy()
    flat[:, list(BLOCKS[1])] = 5.0  # a block without variance
    with pytest.raises(EstimationError):
        estimate(flat, MODEL)
    with pytest.raises(EstimationError):
        estimate(np.full_like(data, np.nan), MODEL)


def test_index_weights_sum_to_one_and_map_to_0_100() -> None:
    w = index_weights(np.array([0.2, 0.3, 0.5]) * 4)
    assert w.sum() == pytest.approx(1.0)
    assert to_0_100(1.0) == 0.0
    assert to_0_100(10.0) == 100.0
    assert to_0_100(5.5) == pytest.approx(50.0)
    with pytest.raises(EstimationError):
        index_weights(np.array([0.5, -0.5]))
