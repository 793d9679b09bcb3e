"""Readings in, per-(machine, 15-minute UTC slot) work contributions out: pure numpy, no I/O.

This module owns every formula of the work summaries (docs/customers.md): it imports no I/O
library and knows nothing of the store. `contributions` takes a batch of readings (sorted by
machine, then time) and, per machine, the `Tail` left by the readings before them; it answers
what those readings add to each slot, the meter anomalies and refuels they reveal, and the new
tails. Feeding a stream in any cut into batches gives the same figures as feeding it whole
(tests/telematics/test_usage.py holds it to that).

* A reading's state (off, idle, working) holds from its time to the next reading's, when that
  gap is at most `max_gap_ms` (<= one slot, so an interval crosses at most one slot boundary,
  where it is split exactly); a longer gap is unknown time. No engine speed: unknown too.
* Engine hours, fuel and distance are deltas between consecutive readings that carry the
  signal; a delta is split at the slot boundary in proportion to the time on each side, or,
  across a gap longer than `max_gap_ms`, lands in the later reading's slot.
* Fuel: consumption is the fall of an anchor, the lowest level since the last refuel; a level
  that climbs `refuel_min_pct` above it starts a refuel, which ends at its peak (the anchor is
  then the peak). Machines with no refuel activity in the batch take a vectorised path; the few
  others a per-reading loop, with the same rule.
* Distance: haversine from an anchor to the first position at least `min_move_m` from it, which
  becomes the anchor. Machines whose positions all stay within that of their anchor cost no loop.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from diagnosis.usage_limits import UsageLimits

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

_Fields = dict[str, Any]
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


@dataclass(frozen=True, slots=True)
class Tail:
    """What the readings of a machine so far leave for the next ones.

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


_TAIL_FIELDS = tuple(Tail.__dataclass_fields__)
_EMPTY_TAIL: dict[str, Any] = {f: getattr(Tail(ts_ms=-1), f) for f in _TAIL_FIELDS}


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


class _Acc:
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
        self.machine.append(machine)
        self.slot.append(slot)
        self.col.append(np.full(len(slot), col, np.int64))
        self.value.append(value)

    def running(self, machine: IntArray, slot: IntArray, lo: IntArray, hi: IntArray) -> None:
        self.run_machine.append(machine)
        self.run_slot.append(slot)
        self.run_lo.append(lo)
        self.run_hi.append(hi)

    def slots(self) -> Slots:
        cat = np.concatenate
        empty_i = np.zeros(0, np.int64)
        machine = cat([*self.machine, *self.run_machine, empty_i])
        slot = cat([*self.slot, *self.run_slot, empty_i])
        # One integer key per (machine, slot): slots since 1970 fit well under 2**40.
        flat = machine * _KEY_WIDTH + slot // SLOT_MS
        keys, inverse = np.unique(flat, return_inverse=True)
        inverse = inverse.reshape(-1)
        rows = len(keys)
        values = np.zeros((len(COLUMNS), rows), np.float64)
        first = np.full(rows, np.iinfo(np.int64).max, np.int64)
        last = np.full(rows, -1, np.int64)
        n_add = sum(len(s) for s in self.slot)
        if n_add:
            col, value, where = cat(self.col), cat(self.value), inverse[:n_add]
            for c in np.unique(col):
                pick = col == c
                values[c] = np.bincount(where[pick], weights=value[pick], minlength=rows)
        if self.run_machine:
            where = inverse[n_add:]
            np.minimum.at(first, where, cat(self.run_lo))
            np.maximum.at(last, where, cat(self.run_hi))
        first[first == np.iinfo(np.int64).max] = -1
        return Slots(keys // _KEY_WIDTH, keys % _KEY_WIDTH * SLOT_MS, values, first, last)


def _runs(machine_idx: IntArray) -> tuple[IntArray, IntArray]:
    """Start index and length of each machine's run of elements."""
    n = len(machine_idx)
    is_first = np.ones(n, np.bool_)
    is_first[1:] = machine_idx[1:] != machine_idx[:-1]
    starts = np.flatnonzero(is_first)
    lengths = np.diff(np.append(starts, n))
    return starts, lengths


def _split(
    acc: _Acc, machine: IntArray, t0: IntArray, t1: IntArray, col: int, value: FloatArray,
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


def _series(
    batch_idx: IntArray, batch_ts: IntArray, batch_v: FloatArray,
    tails: Sequence[Tail | None], prev_ts: str, prev_v: str,
) -> tuple[IntArray, IntArray, FloatArray, IntArray]:  # fmt: skip
    """One signal's readings that carry it, each machine's tail value first (where known).

    Returns (machine, ts, value, is_tail as 0/1), sorted by (machine, ts).
    """
    has = ~np.isnan(batch_v)
    t_idx, t_ts, t_v = [], [], []
    for m in np.unique(batch_idx[has]).tolist():
        tail = tails[m]
        if tail is not None:
            at = getattr(tail, prev_ts)
            if at >= 0:
                t_idx.append(m)
                t_ts.append(at)
                t_v.append(getattr(tail, prev_v))
    machine = np.concatenate([np.asarray(t_idx, np.int64), batch_idx[has]])
    ts = np.concatenate([np.asarray(t_ts, np.int64), batch_ts[has]])
    value = np.concatenate([np.asarray(t_v, np.float64), batch_v[has]])
    is_tail = np.concatenate([np.ones(len(t_idx), np.int64), np.zeros(int(has.sum()), np.int64)])
    order = np.lexsort((ts, machine))
    return machine[order], ts[order], value[order], is_tail[order]


def contributions(
    batch: Batch,
    tails: Sequence[Tail | None],
    limits: Sequence[UsageLimits],
    max_gap_ms: int,
) -> Usage:
    """What `batch` adds to the slots of its machines, given what came before it.

    Args:
        batch: Readings newer than each machine's tail, sorted by (machine, time).
        tails: Per machine index, its tail, or None for a machine with no readings before.
        limits: Per machine index, its thresholds.
        max_gap_ms: Longest gap between readings counted as known time (at most `SLOT_MS`).

    Returns:
        The slot contributions, the events, and a new tail for every machine of the batch.
    """
    if not 0 < max_gap_ms <= SLOT_MS:
        raise ValueError("max_gap_ms must be within 1..SLOT_MS")
    acc = _Acc()
    idle_load = np.asarray([u.idle_load_pct for u in limits], np.float64)
    idle_rpm = np.asarray([u.idle_rpm_max for u in limits], np.float64)
    tol_h = np.asarray([u.meter_tolerance_h for u in limits], np.float64)
    _intervals(acc, batch, tails, idle_load, idle_rpm, max_gap_ms)
    anomalies, hours_tail = _engine_hours(acc, batch, tails, tol_h, max_gap_ms)
    refuels, fuel_tail = _fuel(acc, batch, tails, limits, max_gap_ms)
    pos_tail = _distance(acc, batch, tails, limits, max_gap_ms)
    new_tails: dict[int, Tail] = {}
    if len(batch):
        is_last = np.ones(len(batch), np.bool_)
        is_last[:-1] = batch.machine_idx[1:] != batch.machine_idx[:-1]
        last = np.flatnonzero(is_last)
        for m, ts, rpm, load in zip(
            batch.machine_idx[last].tolist(),
            batch.ts_ms[last].tolist(),
            batch.rpm[last].tolist(),
            batch.load_pct[last].tolist(),
            strict=True,
        ):
            old = tails[m]
            fields = (
                _EMPTY_TAIL.copy() if old is None else {f: getattr(old, f) for f in _TAIL_FIELDS}
            )
            fields.update(ts_ms=ts, rpm=rpm, load_pct=load)
            fields.update(hours_tail.get(m, ()))
            fields.update(fuel_tail.get(m, ()))
            fields.update(pos_tail.get(m, ()))
            new_tails[m] = Tail(**fields)
    return Usage(acc.slots(), anomalies, refuels, new_tails)


def _intervals(
    acc: _Acc, batch: Batch, tails: Sequence[Tail | None], idle_load: FloatArray,
    idle_rpm: FloatArray, max_gap_ms: int,
) -> None:  # fmt: skip
    """Known, working and idle seconds, and running times, of each reading's interval."""
    t_rows = [(m, t) for m, t in enumerate(tails) if t is not None and t.ts_ms >= 0]
    present = set(np.unique(batch.machine_idx).tolist())
    t_rows = [(m, t) for m, t in t_rows if m in present]
    machine = np.concatenate([np.asarray([m for m, _ in t_rows], np.int64), batch.machine_idx])
    ts = np.concatenate([np.asarray([t.ts_ms for _, t in t_rows], np.int64), batch.ts_ms])
    rpm = np.concatenate([np.asarray([t.rpm for _, t in t_rows], np.float64), batch.rpm])
    load = np.concatenate([np.asarray([t.load_pct for _, t in t_rows], np.float64), batch.load_pct])
    order = np.lexsort((ts, machine))
    machine, ts, rpm, load = machine[order], ts[order], rpm[order], load[order]
    if len(ts) < 2:
        return
    same = machine[1:] == machine[:-1]
    t0, t1 = ts[:-1], ts[1:]
    ok = same & (t1 - t0 <= max_gap_ms) & ~np.isnan(rpm[:-1])
    m, t0, t1, r, ld = machine[:-1][ok], t0[ok], t1[ok], rpm[:-1][ok], load[:-1][ok]
    running = r > 0
    with np.errstate(invalid="ignore"):
        working = running & np.where(np.isnan(ld), r > idle_rpm[m], ld >= idle_load[m])
    idle = running & ~working
    s0 = t0 // SLOT_MS * SLOT_MS
    boundary = s0 + SLOT_MS
    end0 = np.minimum(t1, boundary)
    crosses = t1 > boundary
    for part_m, part_s, lo, hi, run, work, idl in (
        (m, s0, t0, end0, running, working, idle),
        (m[crosses], boundary[crosses], boundary[crosses], t1[crosses], running[crosses],
         working[crosses], idle[crosses]),
    ):  # fmt: skip
        dur_s = (hi - lo) / 1000.0
        acc.add(part_m, part_s, COLUMNS.index("known_s"), dur_s)
        acc.add(part_m[work], part_s[work], COLUMNS.index("working_s"), dur_s[work])
        acc.add(part_m[idl], part_s[idl], COLUMNS.index("idle_s"), dur_s[idl])
        acc.running(part_m[run], part_s[run], lo[run], hi[run])


def _engine_hours(
    acc: _Acc, batch: Batch, tails: Sequence[Tail | None], tol_h: FloatArray, max_gap_ms: int
) -> tuple[list[MeterAnomaly], dict[int, _Fields]]:
    """Counter increases, split over slots; impossible steps flagged instead of summed."""
    machine, ts, value, _ = _series(
        batch.machine_idx, batch.ts_ms, batch.hours, tails, "hours_ts_ms", "hours"
    )
    last: dict[int, _Fields] = {}
    anomalies: list[MeterAnomaly] = []
    if len(ts) == 0:
        return anomalies, last
    is_last = np.ones(len(ts), np.bool_)
    is_last[:-1] = machine[1:] != machine[:-1]
    li = np.flatnonzero(is_last)
    last = {
        m: {"hours_ts_ms": t, "hours": v}
        for m, t, v in zip(machine[li].tolist(), ts[li].tolist(), value[li].tolist(), strict=True)
    }
    same = machine[1:] == machine[:-1]
    m, t0, t1 = machine[1:][same], ts[:-1][same], ts[1:][same]
    delta = (value[1:] - value[:-1])[same]
    wall_h = (t1 - t0) / 3_600_000.0
    backwards = delta < -tol_h[m]
    too_fast = delta > wall_h + tol_h[m]
    bad = backwards | too_fast
    prev = value[:-1][same]
    for i in np.flatnonzero(bad):
        reason = "backwards" if backwards[i] else "too_fast"
        anomalies.append(
            MeterAnomaly(int(m[i]), int(t1[i]), float(prev[i]), float(prev[i] + delta[i]), reason)
        )
    good = ~bad
    _split(acc, m[good], t0[good], t1[good], COLUMNS.index("engine_h"), delta[good], max_gap_ms)
    s1 = t1[bad] // SLOT_MS * SLOT_MS
    acc.add(m[bad], s1, COLUMNS.index("meter_anomalies"), np.ones(int(bad.sum())))
    return anomalies, last


def _fuel(
    acc: _Acc, batch: Batch, tails: Sequence[Tail | None], limits: Sequence[UsageLimits],
    max_gap_ms: int,
) -> tuple[list[Refuel], dict[int, _Fields]]:  # fmt: skip
    """Consumption (falls of the anchor) and refuels (rises past `refuel_min_pct`)."""
    machine, ts, level, is_tail = _series(
        batch.machine_idx, batch.ts_ms, batch.fuel_pct, tails, "fuel_ts_ms", "fuel_pct"
    )
    refuels: list[Refuel] = []
    state: dict[int, _Fields] = {}
    n = len(ts)
    if n == 0:
        return refuels, state
    used = np.zeros(n, np.float64)
    starts, lengths = _runs(machine)
    run_m = machine[starts]
    # The anchor each run starts from: the tail's (its first element is the tail's level),
    # else the machine's first level.
    seeds = level[starts].copy()
    rising = np.zeros(len(starts), np.bool_)
    run_ml = run_m.tolist()
    for k, (m, first_is_tail) in enumerate(zip(run_ml, is_tail[starts].tolist(), strict=True)):
        tail = tails[m]
        if tail is not None and first_is_tail:
            if not math.isnan(tail.fuel_anchor_pct):
                seeds[k] = tail.fuel_anchor_pct
            rising[k] = tail.refuel_from_ms >= 0
    seed = np.repeat(seeds, lengths)
    # Runs are shifted apart so that one running minimum serves all (levels are 0..100).
    shift = np.repeat(-1000.0 * np.arange(len(starts)), lengths)
    run_min = np.minimum.accumulate(np.minimum(level, seed) + shift) - shift
    min_rise = np.asarray([limits[m].refuel_min_pct for m in run_ml], np.float64)
    rise = np.maximum.reduceat(level - run_min, starts) >= min_rise
    special = rising | rise
    prev_min = np.empty(n, np.float64)
    prev_min[1:] = run_min[:-1]
    prev_min[starts] = seeds
    plain = ~np.repeat(special, lengths)
    used[plain] = (prev_min - run_min)[plain]
    ends = starts + lengths - 1
    noise = np.repeat([limits[m].fuel_noise_pct for m in run_ml], lengths)
    low = np.maximum.reduceat(np.where(level <= run_min + noise, ts, -1), starts)
    k_plain = np.flatnonzero(~special)
    e_plain = ends[k_plain]
    for m, t, x, anchor, lo in zip(
        run_m[k_plain].tolist(), ts[e_plain].tolist(), level[e_plain].tolist(),
        run_min[e_plain].tolist(), low[k_plain].tolist(), strict=True,
    ):  # fmt: skip
        tail = tails[m]
        state[m] = {
            "fuel_ts_ms": t, "fuel_pct": x, "fuel_anchor_pct": anchor, "refuel_from_ms": -1,
            "fuel_low_ms": lo if lo >= 0 or tail is None else tail.fuel_low_ms,
        }  # fmt: skip
    for k in np.flatnonzero(special).tolist():
        rows = np.arange(starts[k], starts[k] + lengths[k])
        m = int(run_m[k])
        first_is_tail = bool(is_tail[starts[k]])
        state[m] = _fuel_loop(m, rows, ts, level, used, tails[m], limits[m], refuels, first_is_tail)
    same = machine[1:] == machine[:-1]
    m2, t0, t1, u = machine[1:][same], ts[:-1][same], ts[1:][same], used[1:][same]
    nz = u != 0
    _split(acc, m2[nz], t0[nz], t1[nz], COLUMNS.index("fuel_used_pct"), u[nz], max_gap_ms)
    if refuels:
        acc.add(
            np.asarray([r.machine_idx for r in refuels], np.int64),
            np.asarray([r.ts_ms // SLOT_MS * SLOT_MS for r in refuels], np.int64),
            COLUMNS.index("refuel_pct"),
            np.asarray([r.added_pct for r in refuels], np.float64),
        )
    return refuels, state


def _fuel_loop(
    m: int, rows: IntArray, ts: IntArray, level: FloatArray, used: FloatArray,
    tail: Tail | None, limit: UsageLimits, refuels: list[Refuel], starts_with_tail: bool,
) -> _Fields:  # fmt: skip
    """The fuel rule reading by reading, for a machine with refuel activity in the batch."""
    anchor = float(level[rows[0]])
    from_ms, base, peak, peak_ms = -1, NAN, NAN, -1
    low_ms = int(ts[rows[0]])
    if starts_with_tail and tail is not None:
        anchor = tail.fuel_anchor_pct if not math.isnan(tail.fuel_anchor_pct) else anchor
        from_ms, base = tail.refuel_from_ms, tail.refuel_base_pct
        peak, peak_ms = tail.refuel_peak_pct, tail.refuel_peak_ms
        low_ms = tail.fuel_low_ms if tail.fuel_low_ms >= 0 else low_ms
    for j in rows[1:] if starts_with_tail else rows:
        x, t = float(level[j]), int(ts[j])
        if from_ms >= 0:
            if x > peak:
                peak, peak_ms = x, t
            elif x < peak - limit.fuel_noise_pct or t - peak_ms >= REFUEL_SETTLE_MS:
                refuels.append(Refuel(m, from_ms, peak - base))
                anchor, from_ms = peak, -1
        if from_ms < 0:
            if x < anchor:
                used[j] = anchor - x
                anchor = x
            if x <= anchor + limit.fuel_noise_pct:
                low_ms = t
            elif x - anchor >= limit.refuel_min_pct:
                from_ms, base, peak, peak_ms = low_ms, anchor, x, t
    last = rows[-1]
    return {
        "fuel_ts_ms": int(ts[last]), "fuel_pct": float(level[last]), "fuel_anchor_pct": anchor,
        "fuel_low_ms": low_ms,
        "refuel_from_ms": from_ms, "refuel_base_pct": base, "refuel_peak_pct": peak,
        "refuel_peak_ms": peak_ms,
    }  # fmt: skip


def haversine_m(
    lat0: FloatArray, lon0: FloatArray, lat1: FloatArray, lon1: FloatArray
) -> FloatArray:
    """Great-circle distance in metres, element by element."""
    p0, p1 = np.radians(lat0), np.radians(lat1)
    dp, dl = p1 - p0, np.radians(lon1) - np.radians(lon0)
    a = np.sin(dp / 2) ** 2 + np.cos(p0) * np.cos(p1) * np.sin(dl / 2) ** 2
    d: FloatArray = 2 * _EARTH_M * np.arcsin(np.sqrt(np.minimum(a, 1.0)))
    return d


def _haversine(lat0: float, lon0: float, lat1: float, lon1: float) -> float:
    p0, p1 = math.radians(lat0), math.radians(lat1)
    dp, dl = p1 - p0, math.radians(lon1 - lon0)
    a = math.sin(dp / 2) ** 2 + math.cos(p0) * math.cos(p1) * math.sin(dl / 2) ** 2
    return 2 * _EARTH_M * math.asin(math.sqrt(min(a, 1.0)))


def _distance(
    acc: _Acc, batch: Batch, tails: Sequence[Tail | None], limits: Sequence[UsageLimits],
    max_gap_ms: int,
) -> dict[int, _Fields]:  # fmt: skip
    """Distance between anchors at least `min_move_m` apart (GPS jitter never adds up)."""
    has = ~(np.isnan(batch.lat) | np.isnan(batch.lon))
    idx, ts = batch.machine_idx[has], batch.ts_ms[has]
    lat, lon = batch.lat[has], batch.lon[has]
    state: dict[int, _Fields] = {}
    if len(ts) == 0:
        return state
    starts, lengths = _runs(idx)
    run_m = idx[starts]
    a_lat, a_lon = lat[starts].copy(), lon[starts].copy()
    a_ts = ts[starts].copy()
    run_ml = run_m.tolist()
    for k, m in enumerate(run_ml):
        tail = tails[m]
        if tail is not None and tail.pos_ts_ms >= 0:
            a_lat[k], a_lon[k], a_ts[k] = tail.anchor_lat, tail.anchor_lon, tail.pos_ts_ms
    min_move = np.asarray([limits[m].min_move_m for m in run_ml], np.float64)
    dist = haversine_m(np.repeat(a_lat, lengths), np.repeat(a_lon, lengths), lat, lon)
    away = np.maximum.reduceat(dist, starts) >= min_move
    col = COLUMNS.index("distance_m")
    t0s: list[int] = []
    t1s: list[int] = []
    ms: list[int] = []
    moved: list[float] = []
    ends = (starts + lengths - 1).tolist()
    lat_l, lon_l, ts_l = lat.tolist(), lon.tolist(), ts.tolist()
    for k, (m, lo, hi, is_away) in enumerate(
        zip(run_ml, starts.tolist(), ends, away.tolist(), strict=True)
    ):
        anchor_lat, anchor_lon = float(a_lat[k]), float(a_lon[k])
        if is_away:
            # Moving: the anchor rule reading by reading (it depends on where the last was).
            prev_ts, limit = int(a_ts[k]), float(min_move[k])
            for j in range(lo, hi + 1):
                d = _haversine(anchor_lat, anchor_lon, lat_l[j], lon_l[j])
                if d >= limit:
                    t0s.append(prev_ts)
                    t1s.append(ts_l[j])
                    ms.append(m)
                    moved.append(d)
                    anchor_lat, anchor_lon = lat_l[j], lon_l[j]
                prev_ts = ts_l[j]
        state[m] = {"pos_ts_ms": ts_l[hi], "anchor_lat": anchor_lat, "anchor_lon": anchor_lon}
    if moved:
        _split(
            acc, np.asarray(ms, np.int64), np.asarray(t0s, np.int64), np.asarray(t1s, np.int64),
            col, np.asarray(moved, np.float64), max_gap_ms,
        )  # fmt: skip
    return state
