"""Evaluation: what the fleet index finds for one order, as the package passes it around.

This module owns the package-internal values of one order's evaluation: `_Context` (the index's
arrays restricted to the engineers who could serve it), `_Option` (one way to serve it: an
engineer, a pickup warehouse or the van, road km and ETA), `_Evaluation` (the fastest options,
the next best warehouses of the chosen engineers, the rejections counted by reason, the
engineers outranked) and `_Usage` (engineers taken and warehouse units drawn by earlier orders of
a batch). `dispatch.fleet_index` fills them, `dispatch.matching` turns options into explained
candidates and `dispatch.assignment` chooses among them across a batch.

They are bookkeeping, not an API: nothing outside `dispatch` may use them. This module must
never compute, rank or explain anything, and never import `dispatch.fleet_index`,
`dispatch.matching`, `dispatch.assignment` (they build on it) or `telematics`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray

from dispatch.ranking import Rejection, RejectReason

_IntArray = NDArray[np.int64]
_FloatArray = NDArray[np.float64]
_BoolArray = NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class _Option:
    """One way to serve one order: an engineer and a pickup warehouse (-1: the van)."""

    order: int
    engineer: int
    warehouse: int
    total_km: float
    direct_km: float
    eta_min: float


@dataclass(slots=True)
class _Context:
    """The arrays of one evaluation, restricted to engineers who could serve the order."""

    engineers: _IntArray
    direct_km: _FloatArray
    holds: _BoolArray
    speeds_kmh: _FloatArray
    warehouses: _IntArray
    warehouse_site_km: _FloatArray
    now_s: float

    def subset(self, keep: _BoolArray) -> _Context:
        """The same evaluation over the engineers `keep` selects."""
        return replace(
            self,
            engineers=self.engineers[keep],
            direct_km=self.direct_km[keep],
            holds=self.holds[keep],
            speeds_kmh=self.speeds_kmh[keep],
        )


@dataclass(slots=True)
class _Evaluation:
    """Top options of one order and what was rejected."""

    best: list[_Option]
    alternatives: dict[int, list[_Option]]
    counts: dict[RejectReason, int]
    examples: list[Rejection]
    outranked: int
    note: str
    late_in_search: int = 0


class _Usage:
    """Engineers taken and warehouse units drawn by earlier orders of a batch."""

    __slots__ = ("drawn", "taken")

    def __init__(self, engineers: int) -> None:
        self.taken: _BoolArray = np.zeros(engineers, dtype=np.bool_)
        self.drawn: dict[str, _IntArray] = {}
