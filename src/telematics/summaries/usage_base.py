"""The values the work-summary arithmetic works on: slots, tails, batches, events. Pure numpy.

Owns the shapes shared by `usage` (intervals and engine hours), `usage_fuel` and
`usage_distance`, and the accumulator that groups contributions by (machine, 15-minute UTC
slot). No I/O library.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any, NamedTuple, get_type_hints

import numpy as np
import orjson
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

SLOT_MS = 15 * 60 * 1000
"""Slot length: every UTC offset in use is a multiple of 15 minutes, so local hours, days, weeks
and months are exact unions of slots."""
REFUEL_SETTLE_MS = 120_000
"""A refuel whose level has not risen for this long is over, even without a fall."""
_EARTH_M = 6_371_008.8
_KEY_WIDTH = np.int64(1) << np.int64(40)
NAN = float("nan")

Fields = dict[str, Any]
"""Fields of a new `Tail`, by name."""

COLUMNS = (
    "known_s",
    "working_s",
    "idle_s",
    "engine_h",
    "fuel_used_pct",
    "refuel_pct",
    "distance_m",
    "meter_anomalies",
)
"""The additive columns of a slot, in the order of `Slots.values` rows."""


class Tail(NamedTuple):
    """What the readings of a machine so far leave for the next ones.

    A named tuple, not a frozen dataclass: a batch makes a new tail for every machine in it,
    and a frozen dataclass's field-by-field `__init__` cost more than the rest of the tails'
    handling.

    Attributes:
        ts_ms: Time of the newest reading.
        rpm: Its engine speed (NaN if it had none): the state of the interval it starts.
        load_pct: Its load (NaN if none).
        hours_ts_ms: Time of the newest reading with engine hours (-1: none yet).
        hours: That counter value.
        fuel_ts_ms: Time of the newest reading with a fuel level (-1: none yet).
        fuel_pct: That level.
        fuel_anchor_pct: The consumption anchor (lowest level since the last refuel).
        fuel_low_ms: The newest reading within noise of the anchor: where a rise would begin.
        refuel_from_ms: While a refuel is under way, where its rise began; -1 otherwise.
        refuel_base_pct: The anchor when it began.
        refuel_peak_pct: Its highest level so far.
        refuel_peak_ms: When that was read.
        pos_ts_ms: Time of the newest reading with a position (-1: none yet).
        anchor_lat: Latitude of the last position counted for distance.
        anchor_lon: Its longitude.
    """

    ts_ms: int
    rpm: float = NAN
    load_pct: float = NAN
    hours_ts_ms: int = -1
    hours: float = NAN
    fuel_ts_ms: int = -1
    fuel_pct: float = NAN
    fuel_anchor_pct: float = NAN
    fuel_low_ms: int = -1
    refuel_from_ms: int = -1
    refuel_base_pct: float = NAN
    refuel_peak_pct: float = NAN
    refuel_peak_ms: int = -1
    pos_ts_ms: int = -1
    anchor_lat: float = NAN
    anchor_lon: float = NAN


TAIL_FIELDS: tuple[str, ...] = Tail._fields
"""The fields of a `Tail`, in order."""
TAIL_INT_FIELDS = frozenset(n for n, kind in get_type_hints(Tail).items() if kind is int)
"""The integer fields of a `Tail` (times); the others are floats."""
_NO_TAIL = Tail(ts_ms=-1)


class TailColumns:
    """Tails as columns (struct of arrays): one array per `Tail` field, indexed by machine.

    A machine without a tail has the defaults of `Tail(ts_ms=-1)` (every time -1). The
    arithmetic reads the tails of a batch's machines and writes their new ones through these
    columns, so that no step costs Python per machine.
    """

    __slots__ = ("cols",)

    def __init__(self, cols: dict[str, NDArray[Any]]) -> None:
        """Wrap columns, by field name (see `of`)."""
        self.cols = cols

    @classmethod
    def of(cls, tails: Sequence[Tail | None]) -> TailColumns:
        """The columns of per-machine tails (None: no tail)."""
        n, width = len(tails), len(TAIL_FIELDS)
        # One flat pass (np.asarray of a list of tuples is several times slower); epoch ms
        # are exact in float64 (< 2**53).
        flat = chain.from_iterable(_NO_TAIL if t is None else t for t in tails)
        table = np.fromiter(flat, np.float64, count=n * width).reshape(n, width)
        return cls(
            {
                name: table[:, j].astype(np.int64 if name in TAIL_INT_FIELDS else np.float64)
                for j, name in enumerate(TAIL_FIELDS)
            }
        )

    @classmethod
    def empty(cls, n: int) -> TailColumns:
        """`n` machines without a tail."""
        return cls(
            {
                name: np.full(n, default, np.int64 if name in TAIL_INT_FIELDS else np.float64)
                for name, default in zip(TAIL_FIELDS, _NO_TAIL, strict=True)
            }
        )

    def __getitem__(self, name: str) -> NDArray[Any]:
        return self.cols[name]

    def __len__(self) -> int:
        return len(self.cols["ts_ms"])

    def take(self, idx: IntArray) -> TailColumns:
        """The tails at those indices, as new columns."""
        return TailColumns({name: col[idx] for name, col in self.cols.items()})

    def put(self, idx: IntArray, other: TailColumns) -> None:
        """Set the tails at those indices to `other`'s (in order)."""
        for name, col in self.cols.items():
            col[idx] = other.cols[name]

    def grown(self, n: int) -> TailColumns:
        """These columns followed by machines without a tail, `n` in all."""
        more = TailColumns.empty(n - len(self))
        return TailColumns(
            {name: np.concatenate([col, more.cols[name]]) for name, col in self.cols.items()}
        )

    def row(self, i: int) -> Tail:
        """One machine's tail, as an object."""
        return Tail(*(self.cols[name][i].item() for name in TAIL_FIELDS))

    def json(self) -> list[str]:
        """Each tail as JSON (NaN as null), in order: what `summary_tails.state` holds."""
        # orjson writes NaN as null; field by field from Python values (no Tail objects).
        columns = [self.cols[name].tolist() for name in TAIL_FIELDS]
        return [orjson.dumps(dict(zip(TAIL_FIELDS, values, strict=True))).decode()
                for values in zip(*columns, strict=True)]  # fmt: skip

    def copy(self) -> TailColumns:
        """An independent copy."""
        return TailColumns({name: col.copy() for name, col in self.cols.items()})

    def tails(self, machines: IntArray) -> dict[int, Tail]:
        """The tails of those machines, as objects, by machine index."""
        columns = [self.cols[name][machines].tolist() for name in TAIL_FIELDS]
        return dict(zip(machines.tolist(), map(Tail, *columns), strict=True))


@dataclass(frozen=True, slots=True)
class Batch:
    """Readings of several machines, sorted by (machine, time), one array per signal.

    Attributes:
        machine_idx: Per reading, its machine's index (into the caller's list); non-decreasing.
        ts_ms: Per reading, epoch milliseconds; increasing within a machine.
        rpm: Engine speed, NaN where absent.
        load_pct: Engine load, NaN where absent.
        fuel_pct: Fuel level, NaN where absent.
        hours: Engine-hours counter, NaN where absent.
        lat: Latitude, NaN where absent.
        lon: Longitude, NaN where absent.
    """

    machine_idx: IntArray
    ts_ms: IntArray
    rpm: FloatArray
    load_pct: FloatArray
    fuel_pct: FloatArray
    hours: FloatArray
    lat: FloatArray
    lon: FloatArray

    def __len__(self) -> int:
        return len(self.ts_ms)


@dataclass(frozen=True, slots=True)
class MeterAnomaly:
    """An engine-hours step that cannot be true: flagged, not summed."""

    machine_idx: int
    ts_ms: int
    previous_h: float
    value_h: float
    reason: str  # "backwards" or "too_fast"


@dataclass(frozen=True, slots=True)
class Refuel:
    """A rise of the fuel level beyond noise: its start and how many points it added."""

    machine_idx: int
    ts_ms: int
    added_pct: float


@dataclass(frozen=True, slots=True)
class Slots:
    """Contributions per (machine, slot), sorted by both.

    Attributes:
        machine_idx: Per row, the machine.
        slot_ms: Per row, the slot's start (epoch ms, a multiple of `SLOT_MS`).
        values: Shape (len(COLUMNS), rows).
        first_start_ms: Per row, the earliest running time in the slot (-1: never running).
        last_stop_ms: Per row, the latest running time in the slot (-1: never running).
    """

    machine_idx: IntArray
    slot_ms: IntArray
    values: FloatArray
    first_start_ms: IntArray
    last_stop_ms: IntArray

    def __len__(self) -> int:
        return len(self.slot_ms)

    def column(self, name: str) -> FloatArray:
        """One additive column, by name."""
        row: FloatArray = self.values[COLUMNS.index(name)]
        return row

    def within(self, lo_ms: int, hi_ms: int) -> Slots:
        """Only the rows with lo_ms <= slot < hi_ms."""
        keep = (self.slot_ms >= lo_ms) & (self.slot_ms < hi_ms)
        return Slots(
            self.machine_idx[keep],
            self.slot_ms[keep],
            self.values[:, keep],
            self.first_start_ms[keep],
            self.last_stop_ms[keep],
        )


@dataclass(frozen=True, slots=True)
class Usage:
    """What a batch adds: slot contributions, events, and each machine's new tail."""

    slots: Slots
    anomalies: list[MeterAnomaly]
    refuels: list[Refuel]
    tails: dict[int, Tail]


class Acc:
    """Contributions as flat lists of (row key, column, value) before grouping."""

    def __init__(self) -> None:
        self.machine: list[IntArray] = []
        self.slot: list[IntArray] = []
        self.col: list[IntArray] = []
        self.value: list[FloatArray] = []
        self.run_machine: list[IntArray] = []
        self.run_slot: list[IntArray] = []
        self.run_lo: list[IntArray] = []
        self.run_hi: list[IntArray] = []

    def add(self, machine: IntArray, slot: IntArray, col: int, value: FloatArray) -> None:
        """Add `value` to column `col` of each (machine, slot)."""
        self.machine.append(machine)
        self.slot.append(slot)
        self.col.append(np.full(len(slot), col, np.int64))
        self.value.append(value)

    def running(self, machine: IntArray, slot: IntArray, lo: IntArray, hi: IntArray) -> None:
        """Record running from `lo` to `hi` within each (machine, slot)."""
        self.run_machine.append(machine)
        self.run_slot.append(slot)
        self.run_lo.append(lo)
        self.run_hi.append(hi)

    def slots(self) -> Slots:
        """Everything added, grouped per (machine, slot)."""
        cat = np.concatenate
        empty_i = np.zeros(0, np.int64)
        machine = cat([*self.machine, *self.run_machine, empty_i])
        slot = cat([*self.slot, *self.run_slot, empty_i])
        row_machine, row_slot, inverse = group(machine, slot)
        rows = len(row_slot)
        width = len(COLUMNS)
        first = np.full(rows, np.iinfo(np.int64).max, np.int64)
        last = np.full(rows, -1, np.int64)
        n_add = sum(len(s) for s in self.slot)
        if n_add:
            # One bincount over (row, column) cells: each cell sums its values in the order
            # they were added, as one bincount per column did.
            col, value = cat(self.col), cat(self.value)
            cells = np.bincount(inverse[:n_add] * width + col, weights=value,
                                minlength=rows * width)  # fmt: skip
            values: FloatArray = np.ascontiguousarray(cells.reshape(rows, width).T)
        else:
            values = np.zeros((width, rows), np.float64)
        if self.run_machine:
            where = inverse[n_add:]
            np.minimum.at(first, where, cat(self.run_lo))
            np.maximum.at(last, where, cat(self.run_hi))
        first[first == np.iinfo(np.int64).max] = -1
        return Slots(row_machine, row_slot, values, first, last)


_DENSE_CELLS = 1 << 16
"""Below this many (machine, slot) cells, or a few per element, grouping indexes a dense grid."""


def group(machine: IntArray, slot_ms: IntArray) -> tuple[IntArray, IntArray, IntArray]:
    """Distinct (machine, slot) pairs, sorted, and each element's row among them.

    Returns (row machine, row slot start, inverse). A batch spans a few slots, so the pairs
    usually index a dense machines x slots grid (a bincount, no sort); a wide span (a replay of
    days) sorts one integer key per element instead. Both give the same rows in the same order.
    """
    if not len(slot_ms):
        empty = np.zeros(0, np.int64)
        return empty, empty, empty
    index = slot_ms // SLOT_MS
    lo = int(index.min())
    span = int(index.max()) - lo + 1
    cells = (int(machine.max()) + 1) * span
    if cells <= max(_DENSE_CELLS, 4 * len(index)):
        dense = machine * span + (index - lo)
        present = np.zeros(cells, np.bool_)
        present[dense] = True
        row_cell = np.flatnonzero(present)
        row_of = np.zeros(cells, np.int64)
        row_of[row_cell] = np.arange(len(row_cell), dtype=np.int64)
        return row_cell // span, (row_cell % span + lo) * SLOT_MS, row_of[dense]
    # One integer key per (machine, slot): slots since 1970 fit well under 2**40.
    keys, inverse = np.unique(machine * _KEY_WIDTH + index, return_inverse=True)
    return keys // _KEY_WIDTH, keys % _KEY_WIDTH * SLOT_MS, inverse.reshape(-1)


def runs(machine_idx: IntArray) -> tuple[IntArray, IntArray]:
    """Start index and length of each machine's run of elements."""
    n = len(machine_idx)
    is_first = np.ones(n, np.bool_)
    is_first[1:] = machine_idx[1:] != machine_idx[:-1]
    starts = np.flatnonzero(is_first)
    lengths = np.diff(np.append(starts, n))
    return starts, lengths


def split(
    acc: Acc, machine: IntArray, t0: IntArray, t1: IntArray, col: int, value: FloatArray,
    max_gap_ms: int,
) -> None:  # fmt: skip
    """Add `value` of each pair (t0, t1]: split at a slot boundary, or all at t1 past a gap."""
    s0 = t0 // SLOT_MS * SLOT_MS
    s1 = t1 // SLOT_MS * SLOT_MS
    span = np.maximum(t1 - t0, 1)
    crosses = (s1 > s0) & (t1 - t0 <= max_gap_ms)
    before = np.where(crosses, (s1 - t0) / span, 0.0)
    acc.add(machine, s1, col, value * (1.0 - before))
    if bool(crosses.any()):
        acc.add(machine[crosses], s0[crosses], col, (value * before)[crosses])


def series(
    batch_idx: IntArray, batch_ts: IntArray, batch_v: FloatArray,
    tails: TailColumns, prev_ts: str, prev_v: str,
) -> tuple[IntArray, IntArray, FloatArray, IntArray]:  # fmt: skip
    """One signal's readings that carry it, each machine's tail value first (where known).

    Returns (machine, ts, value, is_tail as 0/1), sorted by (machine, ts).
    """
    has = ~np.isnan(batch_v)
    idx, ts, value = batch_idx[has], batch_ts[has], batch_v[has]
    if not len(idx):
        return idx, ts, value, np.zeros(0, np.int64)
    starts, _ = runs(idx)
    run_m = idx[starts]
    when = tails[prev_ts][run_m]
    known = when >= 0
    # Each machine's tail goes in front of its run (the batch is sorted by machine, time).
    where = starts[known]
    machine = np.insert(idx, where, idx[where])
    ts = np.insert(ts, where, when[known])
    value = np.insert(value, where, tails[prev_v][run_m[known]])
    is_tail = np.insert(np.zeros(len(idx), np.int64), where, 1)
    return machine, ts, value, is_tail
