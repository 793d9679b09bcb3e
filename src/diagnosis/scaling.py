"""Robust standardisation of a float matrix: per column, the median and the IQR as sigma.

This module owns how the anomaly detector puts its columns on one scale before the forest sees
them (`RobustScale`: fitted from training rows, then `z`), which is also the figure behind its
`explain` z-scores. It must never know what a column means, import scikit-learn, or do I/O:
arrays in, arrays out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]

_IQR_TO_SIGMA: Final = 1.349  # the IQR of a normal distribution, in standard deviations
_SCALE_RTOL: Final = 1e-9  # a spread below this (relative to the centre) counts as none


@dataclass(frozen=True, slots=True)
class RobustScale:
    """Per-column centre and spread: median and IQR (as sigma), else std, else 1."""

    center: FloatArray
    scale: FloatArray

    @staticmethod
    def fit(x: FloatArray) -> RobustScale:
        """The centre and spread of every column of the finite matrix `x`."""
        q25, median, q75 = np.percentile(x, [25.0, 50.0, 75.0], axis=0)
        tol = _SCALE_RTOL * np.maximum(1.0, np.abs(median))
        # A column with a zero IQR (a flag, a quantised signal) still has a spread worth using.
        scale = np.where((q75 - q25) > tol, (q75 - q25) / _IQR_TO_SIGMA, x.std(axis=0))
        scale = np.where(scale > tol, scale, 1.0)
        return RobustScale(np.asarray(median, dtype=np.float64), scale.astype(np.float64))

    def z(self, x: FloatArray) -> FloatArray:
        """`(x - center) / scale` per column; NaN stays NaN."""
        z: FloatArray = (x - self.center) / self.scale
        return z
