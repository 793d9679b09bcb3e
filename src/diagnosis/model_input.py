"""What the anomaly model takes in: float matrices, machine ids one per row, and regimes.

This module owns the checks every entry point of the anomaly model makes on its arguments (a
2-D float64 matrix with the expected columns, rows without NaN or infinity, one machine id per
row) and `regime_index`, which routes each `MODEL_SIGNALS` row to its operating regime's
baselines, detector and threshold. It must never import scikit-learn, fit or score anything, or
do I/O: arrays in, checked arrays out, or a `ShapeError` / `MachineIdsError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import numpy as np
from numpy.typing import ArrayLike, NDArray

from diagnosis.model_errors import MachineIdsError, ShapeError
from diagnosis.windows import MODEL_SIGNALS, regime_of

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

_SPEED_COL: Final = MODEL_SIGNALS.index("engine_speed_rpm")
_LOAD_COL: Final = MODEL_SIGNALS.index("load_pct")
_COOLANT_COL: Final = MODEL_SIGNALS.index("coolant_temp_c")


def as_matrix(x: ArrayLike, columns: int | None) -> FloatArray:
    """`x` as a float64 matrix, checked against the expected column count.

    Raises:
        ShapeError: `x` is not 2-D, or has not `columns` columns (any count when None).
    """
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2 or (columns is not None and arr.shape[1] != columns):
        raise ShapeError(columns, arr.shape)
    return arr


def finite_rows(x: FloatArray) -> BoolArray:
    """Rows without NaN or infinity: the only ones a forest can take."""
    return np.asarray(np.isfinite(x).all(axis=1), dtype=np.bool_)


def machine_array(machine_ids: Sequence[str], rows: int) -> NDArray[np.str_]:
    """Machine ids as a numpy string array, one per row.

    Raises:
        MachineIdsError: Not one machine id per row.
    """
    ids = np.asarray(machine_ids, dtype=np.str_)
    if ids.shape != (rows,):
        raise MachineIdsError(rows, ids.shape)
    return ids


def regime_index(x: ArrayLike) -> IntArray:
    """The operating regime of each `MODEL_SIGNALS` row (`diagnosis.windows.regime_of`).

    Args:
        x: Matrix with the columns of `MODEL_SIGNALS`.

    Returns:
        Per row, its position in `REGIMES`, or `NOT_SCORED` (-1) when the engine is off
        (below `RUNNING_MIN_RPM`), still warming up (coolant below `WARM_MIN_COOLANT_C`), or
        speed, load or coolant temperature is missing.

    Raises:
        ShapeError: `x` does not have the columns of `MODEL_SIGNALS`.
    """
    arr = as_matrix(x, len(MODEL_SIGNALS))
    return regime_of(arr[:, _SPEED_COL], arr[:, _LOAD_COL], arr[:, _COOLANT_COL])
