"""The nonparametric bootstrap: resamples as counts, and the percentile interval.

Pure numpy: it imports no I/O library and reads no clock; randomness comes from a seeded
generator, so the same answers give the same interval.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray


def draw_counts(n: int, resamples: int, seed: int = 0) -> NDArray[np.int64]:
    """`resamples` resamples of n rows drawn with replacement, as counts (resamples x n):
    row r of the sample appears `counts[b, r]` times in resample b.
    """
    rng = np.random.default_rng(seed)
    out = np.zeros((resamples, n), dtype=np.int64)
    for b in range(resamples):
        out[b] = np.bincount(rng.integers(0, n, size=n), minlength=n)
    return out


def percentile_interval(
    values: NDArray[np.float64], resamples: int, level: float = 0.95
) -> tuple[float, float] | None:
    """The percentile interval of the statistic's resampled `values` (those that could be
    computed): the (1 - level) / 2 and (1 + level) / 2 quantiles, linear interpolation.

    Returns:
        None when there were no resamples or fewer than half of them could be computed.
    """
    if resamples <= 0 or len(values) * 2 < resamples:
        return None
    lo, hi = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)
