"""The columnar batch the engine works on, and what it knows of each machine.

This module owns the shape of diagnosis input. A `Frame` holds readings as arrays: int64 epoch
milliseconds, one float64 row per signal of `diagnosis.signals.SIGNALS` (NaN where absent), and
the active J1939 fault codes flattened into parallel arrays. Readings of one machine are in time
order and contiguous (`Frame.build` sorts), which is what lets rules run as vector operations with
per-machine segments.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from diagnosis.signals import SIGNAL_INDEX, SIGNALS

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class MachineInfo:
    """What diagnosis needs to know of a machine besides its readings.

    Attributes:
        machine_id: The machine.
        model: Model designation (`SY215C`, `PC200-8`); with the class, selects thresholds
            (`RuleBook.for_machine`) and the anomaly model (its own, else its class's).
        site_lat: Latitude of the site the machine belongs on, if one is registered.
        site_lon: Longitude of that site.
        site_radius_m: Radius of the site, if registered.
        machine_class: Machine class (`excavator`, `pump_truck`, `crane`, ...); empty if unknown.
    """

    machine_id: str
    model: str
    site_lat: float | None = None
    site_lon: float | None = None
    site_radius_m: float | None = None
    machine_class: str = ""


@dataclass(frozen=True, slots=True)
class Frame:
    """Readings of several machines as columns, sorted by (machine, time).

    Attributes:
        machine_ids: The distinct machines of the frame.
        machine_idx: Per reading, the index of its machine in `machine_ids`; non-decreasing.
        ts_ms: Per reading, epoch milliseconds; increasing within a machine.
        values: Shape (len(SIGNALS), n): one row per signal, NaN where the reading lacks it.
        dtc_row: Per active fault code, the index of the reading that carried it.
        dtc_spn: Per active fault code, its SPN.
        dtc_fmi: Per active fault code, its FMI.
        dtc_oc: Per active fault code, its occurrence count.
    """

    machine_ids: tuple[str, ...]
    machine_idx: IntArray
    ts_ms: IntArray
    values: FloatArray
    dtc_row: IntArray
    dtc_spn: IntArray
    dtc_fmi: IntArray
    dtc_oc: IntArray

    def __len__(self) -> int:
        return len(self.ts_ms)

    def take(self, keep: BoolArray) -> Frame:
        """The readings where `keep` holds, and only the machines that still have some."""
        has = np.zeros(len(self.machine_ids), np.bool_)
        has[self.machine_idx[keep]] = True
        new_idx = np.cumsum(has) - 1
        rows = np.cumsum(keep) - 1
        kept_codes = keep[self.dtc_row]
        return Frame(
            machine_ids=tuple(m for m, h in zip(self.machine_ids, has, strict=True) if h),
            machine_idx=new_idx[self.machine_idx[keep]],
            ts_ms=self.ts_ms[keep],
            values=self.values[:, keep],
            dtc_row=rows[self.dtc_row[kept_codes]],
            dtc_spn=self.dtc_spn[kept_codes],
            dtc_fmi=self.dtc_fmi[kept_codes],
            dtc_oc=self.dtc_oc[kept_codes],
        )

    def signal(self, name: str) -> FloatArray:
        """One signal's row, by wire name."""
        row: FloatArray = self.values[SIGNAL_INDEX[name]]
        return row

    @staticmethod
    def build(
        machine_ids: Sequence[str],
        ts_ms: Sequence[int] | IntArray,
        values: Sequence[Sequence[float]] | FloatArray,
        dtcs: Sequence[Sequence[tuple[int, int, int]] | None] | None = None,
    ) -> Frame:
        """A frame from per-reading columns in any order.

        Args:
            machine_ids: Per reading, its machine.
            ts_ms: Per reading, epoch milliseconds.
            values: One sequence per signal in `SIGNALS` order, each with one value per reading.
            dtcs: Per reading, its active fault codes as (spn, fmi, oc), or None for none.

        Returns:
            The frame, sorted by (machine, time).
        """
        n = len(machine_ids)
        names, inverse = np.unique(np.asarray(machine_ids, dtype=object), return_inverse=True)
        idx = inverse.astype(np.int64).reshape(n)
        ts = np.asarray(ts_ms, dtype=np.int64).reshape(n)
        vals = np.asarray(values, dtype=np.float64).reshape(len(SIGNALS), n)
        order = np.lexsort((ts, idx))
        rank = np.empty(n, dtype=np.int64)
        rank[order] = np.arange(n, dtype=np.int64)
        rows: list[int] = []
        codes: list[tuple[int, int, int]] = []
        for i, active in enumerate(dtcs or ()):
            for code in active or ():
                rows.append(int(rank[i]))
                codes.append(code)
        dtc_row = np.asarray(rows, dtype=np.int64)
        code_arr = np.asarray(codes, dtype=np.int64).reshape(len(codes), 3)
        dtc_order = np.argsort(dtc_row, kind="stable")
        return Frame(
            machine_ids=tuple(str(m) for m in names),
            machine_idx=idx[order],
            ts_ms=ts[order],
            values=vals[:, order],
            dtc_row=dtc_row[dtc_order],
            dtc_spn=code_arr[dtc_order, 0],
            dtc_fmi=code_arr[dtc_order, 1],
            dtc_oc=code_arr[dtc_order, 2],
        )
