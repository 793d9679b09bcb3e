"""The anomaly model's errors: `ModelError` and the subclasses that carry its figures.

This module owns the exceptions of `diagnosis.model` and of the modules it is split into
(`model_input`, `model_format`, `scoring`), so each of them can raise them without importing
the others. It must never hold logic, import scikit-learn, or do I/O.

    ModelError           (a `DiagnosisError`)
    ├── NotEnoughDataError   too few usable rows to fit
    ├── NotFittedError       used before `fit`
    ├── ShapeError           not a 2-D matrix with the model's columns
    ├── MachineIdsError      machine ids not one per row
    └── ModelFormatError     a stored model this code cannot load, with the reason
"""

from __future__ import annotations

from diagnosis.errors import DiagnosisError


class ModelError(DiagnosisError):
    """Base of every error of the anomaly model."""


class NotEnoughDataError(ModelError):
    """Too few usable rows to fit.

    Attributes:
        rows: Usable rows given (finite and, for a `RegimeModel`, with the engine running).
        needed: Rows the fit needs.
    """

    def __init__(self, rows: int, needed: int) -> None:
        super().__init__(f"{rows} usable rows, at least {needed} needed")
        self.rows = rows
        self.needed = needed


class NotFittedError(ModelError):
    """A model was used before `fit`."""

    def __init__(self, what: str) -> None:
        super().__init__(f"{what} is not fitted")
        self.what = what


class ShapeError(ModelError):
    """Input is not a 2-D matrix with the columns the model was fitted on.

    Attributes:
        expected: Columns expected, or None when any count would do.
        shape: Shape of the input.
    """

    def __init__(self, expected: int | None, shape: tuple[int, ...]) -> None:
        cols = "any number of" if expected is None else str(expected)
        super().__init__(f"expected a 2-D matrix with {cols} columns, got shape {shape}")
        self.expected = expected
        self.shape = shape


class MachineIdsError(ModelError):
    """Machine ids do not come one per row.

    Attributes:
        rows: Rows given.
        shape: Shape of the machine ids given.
    """

    def __init__(self, rows: int, shape: tuple[int, ...]) -> None:
        super().__init__(f"expected one machine id for each of {rows} rows, got shape {shape}")
        self.rows = rows
        self.shape = shape


class ModelFormatError(ModelError):
    """A serialised model cannot be loaded by this code.

    Attributes:
        reason: What is wrong: `magic`, `truncated`, `format_version`, `sklearn_version`,
            `signals`, `checksum`, `header` or `body`.
        found: The value found in the blob, when there is one.
        expected: The value this code needs, when there is one.
    """

    def __init__(self, reason: str, found: str | None = None, expected: str | None = None) -> None:
        detail = f": found {found!r}, expected {expected!r}" if found or expected else ""
        super().__init__(f"incompatible anomaly model ({reason}){detail}")
        self.reason = reason
        self.found = found
        self.expected = expected
