"""The nonparametric bootstrap: resampled rows and the percentile interval of a statistic.

Pure numpy: it imports no I/O library and reads no clock; randomness comes from a seeded
generator, so the same answers give the same interval.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray


def percentile_interval(
    statistic: Callable[[NDArray[np.intp]], float | None],
    n: int,
    *,
    resamples: int,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float] | None:
    """The percentile bootstrap interval of `statistic` over `n` rows.

    Args:
        statistic: Row indices (n of them, drawn with replacement) -> the statistic, or None
            when it cannot be computed on that resample.
        n: Rows in the sample.
        resamples: How many resamples (0: no interval).
        seed: Seed of the generator.
        level: Coverage of the interval.

    Returns:
        (lower, upper) at the (1 - level) / 2 and (1 + level) / 2 quantiles of the resampled
        statistics; None when there are no resamples or fewer than half could be computed.
    """
    if resamples <= 0 or n <= 0:
        return None
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(resamples):
        value = statistic(rng.integers(0, n, size=n))
        if value is not None:
            values.append(value)
    if len(values) * 2 < resamples:
        return None
    lo, hi = np.quantile(np.array(values), [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)
