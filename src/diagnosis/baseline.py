"""Per-machine healthy baselines: each machine's centre per signal, and its oil-pressure slope.

This module owns how a window is made relative to its own machine (`Baselines`: fitted from
healthy rows, then `residuals`), so the anomaly detector of `diagnosis.model` learns how far a
healthy machine strays from itself rather than how much machines differ. It must never score,
know about regimes or thresholds, import scikit-learn, or do I/O: rows and machine ids in,
arrays out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from diagnosis.windows import MODEL_SIGNALS

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

_SPEED_COL: Final = MODEL_SIGNALS.index("engine_speed_rpm")
_OIL_COL: Final = MODEL_SIGNALS.index("oil_pressure_kpa")
_SLOPE_PRIOR_ROWS: Final = 20.0  # pseudo-rows of the pooled oil slope in each machine's own


@dataclass(frozen=True, slots=True)
class Baselines:
    """Every machine's healthy centre in one regime, and its oil-pressure-over-speed slope.

    Between machines of one model, healthy settings differ far more than one machine moves about
    its own: on the simulated fleet idle speed spreads 35-40 rpm between machines and 1.5 rpm
    within one, oil pressure in part load 47 kPa against 2 kPa, charging voltage 0.24 V against
    0.01-0.04 V. Rows minus their machine's centre (residuals) let the detector learn the tight
    within-machine spread, so an unusual but healthy machine is not an anomaly and a 25 % oil
    pressure rise is not hidden inside the fleet's spread.

    Oil pressure follows engine speed, with a slope that differs by machine (the pump and relief
    setting: 0.14-0.23 kPa/rpm at part load here). Its residual is taken after the machine's own
    slope times its speed residual, each machine's slope being its least-squares slope shrunk
    towards the regime's pooled one by `_SLOPE_PRIOR_ROWS` pseudo-rows, so a machine whose
    windows barely vary in speed (idle) gets the pooled slope, not a noisy one of its own.

    Attributes:
        machine_ids: Machines with a baseline, sorted.
        center: Per machine, the median of each signal, shape (machines, len(MODEL_SIGNALS)).
        oil_slope: Per machine, kPa of oil pressure per rpm of engine speed about its centre.
        n_rows: Per machine, the training rows its baseline was taken from.
    """

    machine_ids: tuple[str, ...]
    center: FloatArray
    oil_slope: FloatArray
    n_rows: IntArray
    _at: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_at", {m: i for i, m in enumerate(self.machine_ids)})

    @staticmethod
    def fit(x: FloatArray, machine_ids: NDArray[np.str_], min_rows: int) -> Baselines:
        """Baselines of the machines with at least `min_rows` of the rows `x` (finite)."""
        names, code, counts = np.unique(machine_ids, return_inverse=True, return_counts=True)
        order = np.argsort(code, kind="stable")
        bounds = np.concatenate([[0], np.cumsum(counts)])
        center = np.empty((len(names), x.shape[1]))
        for j in range(len(names)):  # machines, not rows
            center[j] = np.median(x[order[bounds[j] : bounds[j + 1]]], axis=0)
        d_rpm = x[:, _SPEED_COL] - center[code, _SPEED_COL]
        d_oil = x[:, _OIL_COL] - center[code, _OIL_COL]
        sxx = np.bincount(code, d_rpm * d_rpm, len(names))
        sxy = np.bincount(code, d_rpm * d_oil, len(names))
        is_kept = counts >= min_rows
        kept_rows = is_kept[code]
        pooled = float(sxy[is_kept].sum() / max(sxx[is_kept].sum(), 1e-12))
        prior = _SLOPE_PRIOR_ROWS * float(np.mean(d_rpm[kept_rows] ** 2)) if kept_rows.any() else 0
        slope = (sxy + prior * pooled) / np.maximum(sxx + prior, 1e-12)
        return Baselines(
            tuple(str(n) for n in names[is_kept]),
            center[is_kept],
            slope[is_kept],
            counts[is_kept].astype(np.int64),
        )

    def index_of(self, machine_ids: Sequence[str]) -> IntArray:
        """Per machine id, its row in `center`, or -1 for a machine without a baseline."""
        at = self._at
        return np.array([at.get(m, -1) for m in machine_ids], dtype=np.int64)

    def oil_line(self, idx: IntArray) -> FloatArray:
        """Healthy oil pressure over engine speed of machines `idx` (all with a baseline), as
        a line: shape (len(idx), 2), intercept (kPa) and slope (kPa/rpm).
        """
        slope = self.oil_slope[idx]
        intercept = self.center[idx, _OIL_COL] - slope * self.center[idx, _SPEED_COL]
        line: FloatArray = np.stack([intercept, slope], axis=1)
        return line

    def residuals(self, x: FloatArray, idx: IntArray) -> FloatArray:
        """Rows `x` of machines `idx` (all with a baseline) minus their machines' baselines."""
        res: FloatArray = x - self.center[idx]
        res[:, _OIL_COL] -= self.oil_slope[idx] * res[:, _SPEED_COL]
        return res

    def state(self) -> dict[str, Any]:
        """The baselines as plain containers and numpy arrays, for pickling."""
        return {
            "machine_ids": list(self.machine_ids),
            "center": self.center,
            "oil_slope": self.oil_slope,
            "n_rows": self.n_rows,
        }

    @staticmethod
    def from_state(state: Mapping[str, Any]) -> Baselines:
        """Baselines from `state` output; raises KeyError, TypeError or ValueError if damaged."""
        b = Baselines(
            tuple(str(m) for m in state["machine_ids"]),
            np.asarray(state["center"], dtype=np.float64),
            np.asarray(state["oil_slope"], dtype=np.float64),
            np.asarray(state["n_rows"], dtype=np.int64),
        )
        n = len(b.machine_ids)
        if b.center.shape != (n, len(MODEL_SIGNALS)) or b.oil_slope.shape != (n,):
            raise ValueError("baseline arrays do not match")
        if b.n_rows.shape != (n,):
            raise ValueError("baseline arrays do not match")
        return b
