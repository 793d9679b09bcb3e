"""The customer satisfaction index of one period: survey answers in, the PLS-PM fit out.

Pure numpy: it imports no I/O library. Answers are partial (an item left out is NaN in the
matrix); a missing answer is replaced by its item's mean over the period's answers (mean
imputation), and an item nobody answered in the period is left out of its construct. The index
is the index construct's outer weights rescaled to sum to one (w̃) applied to the items'
unstandardised means, mapped from the 1-10 scale to 0-100: (Σ w̃ᵢ x̄ᵢ - 1) / 9 x 100. Each
construct's score is the same mapping with its own weights. The 95% interval is the percentile
bootstrap of the index over resampled answers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from telematics.quality.bootstrap import draw_counts, percentile_interval
from telematics.quality.instrument import Instrument
from telematics.quality.plspm import (
    Estimate,
    EstimationError,
    PathModel,
    Scheme,
    estimate,
    index_weights,
    resampled_weights,
    to_0_100,
)

Floats = NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class PeriodIndex:
    """The fit of one period.

    Attributes:
        n: Answers (surveys) in the period.
        index: The satisfaction index, 0-100.
        ci_95: Its bootstrap 95% interval, None without resamples.
        constructs: Construct -> score 0-100 (None when its weights do not sum positive).
        paths: (from, to, coefficient).
        weights: Item -> outer weight.
        index_weights: Item of the index construct -> w̃.
        r_squared: Endogenous construct -> R².
        iterations: Iterations of the full-sample fit.
    """

    n: int
    index: float
    ci_95: tuple[float, float] | None
    constructs: dict[str, float | None]
    paths: list[tuple[str, str, float]]
    weights: dict[str, float]
    index_weights: dict[str, float]
    r_squared: dict[str, float]
    iterations: int


def answer_matrix(answers: Sequence[Mapping[str, int]], items: Sequence[str]) -> Floats:
    """Answers as an n x p matrix in `items` order, NaN where an item was not answered."""
    column = {item: k for k, item in enumerate(items)}
    out = np.full((len(answers), len(items)), np.nan)
    for r, answer in enumerate(answers):
        for item, score in answer.items():
            k = column.get(item)
            if k is not None:
                out[r, k] = score
    return out


@dataclass(frozen=True, slots=True)
class _Prepared:
    data: Floats
    model: PathModel
    items: list[str]
    blocks: list[list[str]]


def _prepare(matrix: Floats, instrument: Instrument) -> _Prepared:
    answered = ~np.all(np.isnan(matrix), axis=0)
    kept: list[int] = []
    blocks: list[list[str]] = []
    index_cols: list[tuple[int, ...]] = []
    start = 0
    for c in instrument.constructs:
        cols = [start + k for k in range(len(c.items)) if answered[start + k]]
        start += len(c.items)
        if not cols:
            raise EstimationError(f"no answers to any item of {c.name}")
        index_cols.append(tuple(range(len(kept), len(kept) + len(cols))))
        kept += cols
        blocks.append([instrument.items[k] for k in cols])
    data = matrix[:, kept]
    means = np.nanmean(data, axis=0)
    data = np.where(np.isnan(data), means, data)
    at = {name: k for k, name in enumerate(instrument.construct_names())}
    model = PathModel(tuple(index_cols), tuple((at[a], at[b]) for a, b in instrument.paths))
    return _Prepared(data, model, [instrument.items[k] for k in kept], blocks)


def _score(fit: Estimate, data: Floats, model: PathModel, j: int) -> float:
    w = index_weights(fit.weights[j])
    return to_0_100(float(w @ data[:, list(model.blocks[j])].mean(axis=0)))


def _interval(
    prep: _Prepared, j_index: int, scheme: Scheme, resamples: int, seed: int
) -> tuple[float, float] | None:
    """The bootstrap interval of the index: every resample fitted at once."""
    if resamples <= 0:
        return None
    counts = draw_counts(len(prep.data), resamples, seed)
    w, means, ok = resampled_weights(prep.data, prep.model, counts, scheme=scheme)
    block = list(prep.model.blocks[j_index])
    wb = w[:, block, j_index]
    sums = wb.sum(axis=1)
    good = ok & (sums > 1e-12)
    scores = (wb[good] * means[good][:, block]).sum(axis=1) / sums[good]
    return percentile_interval((scores - 1.0) / 9.0 * 100.0, resamples)  # as `to_0_100`


def period_index(
    matrix: Floats,
    instrument: Instrument,
    *,
    scheme: Scheme = Scheme.CENTROID,
    resamples: int = 200,
    seed: int = 0,
) -> PeriodIndex:
    """Fit one period's answers (n x p in `instrument.items` order, NaN for unanswered).

    Raises:
        EstimationError: The period's answers cannot be fitted (a construct nobody answered,
            no variance, the index construct's weights not summing positive).
    """
    prep = _prepare(matrix, instrument)
    names = instrument.construct_names()
    j_index = names.index(instrument.index)
    fit = estimate(prep.data, prep.model, scheme=scheme)
    index = _score(fit, prep.data, prep.model, j_index)

    ci = _interval(prep, j_index, scheme, resamples, seed)
    constructs: dict[str, float | None] = {}
    for j, name in enumerate(names):
        try:
            constructs[name] = _score(fit, prep.data, prep.model, j)
        except EstimationError:
            constructs[name] = None
    weights = {
        item: float(w)
        for j, block in enumerate(prep.blocks)
        for item, w in zip(block, fit.weights[j], strict=True)
    }
    tilde = index_weights(fit.weights[j_index])
    return PeriodIndex(
        n=len(prep.data),
        index=index,
        ci_95=ci,
        constructs=constructs,
        paths=[(names[a], names[b], c) for (a, b), c in fit.paths.items()],
        weights=weights,
        index_weights={i: float(w) for i, w in zip(prep.blocks[j_index], tilde, strict=True)},
        r_squared={names[j]: r2 for j, r2 in fit.r_squared.items()},
        iterations=fit.iterations,
    )
