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

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from diagnosis.usage_limits import UsageLimits
from telematics.summaries.usage_base import (
    COLUMNS,
    SLOT_MS,
    Acc,
    Batch,
    FloatArray,
    IntArray,
    MeterAnomaly,
    Refuel,
    Slots,
    Tail,
    TailColumns,
    Usage,
    runs,
    series,
    split,
)
from telematics.summaries.usage_distance import distance, haversine_m
from telematics.summaries.usage_fuel import fuel

__all__ = [
    "COLUMNS",
    "SLOT_MS",
    "Batch",
    "ColumnUsage",
    "MeterAnomaly",
    "Refuel",
    "Slots",
    "Tail",
    "TailColumns",
    "Usage",
    "column_contributions",
    "contributions",
    "haversine_m",
]


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
    found = column_contributions(batch, TailColumns.of(tails), limits, max_gap_ms)
    return Usage(found.slots, found.anomalies, found.refuels, found.tails.tails(found.machines))


@dataclass(frozen=True, slots=True)
class ColumnUsage:
    """What a batch adds, with the new tails as columns (no per-machine objects).

    Attributes:
        slots: The slot contributions.
        anomalies: Meter anomalies.
        refuels: Refuels.
        tails: Every machine's tail after the batch, indexed like the batch's machines.
        machines: The machine indices the batch had readings of (whose tails moved), ascending.
    """

    slots: Slots
    anomalies: list[MeterAnomaly]
    refuels: list[Refuel]
    tails: TailColumns
    machines: IntArray


def column_contributions(
    batch: Batch,
    old: TailColumns,
    limits: Sequence[UsageLimits],
    max_gap_ms: int,
) -> ColumnUsage:
    """`contributions` with tails in and out as columns (`old` indexed by machine index)."""
    if not 0 < max_gap_ms <= SLOT_MS:
        raise ValueError("max_gap_ms must be within 1..SLOT_MS")
    acc = Acc()
    idle_load = np.asarray([u.idle_load_pct for u in limits], np.float64)
    idle_rpm = np.asarray([u.idle_rpm_max for u in limits], np.float64)
    tol_h = np.asarray([u.meter_tolerance_h for u in limits], np.float64)
    new = old.copy()  # the new tails, written column by column below
    _intervals(acc, batch, old, idle_load, idle_rpm, max_gap_ms)
    anomalies = _engine_hours(acc, batch, old, new, tol_h, max_gap_ms)
    refuels = fuel(acc, batch, old, new, limits, max_gap_ms)
    distance(acc, batch, old, new, limits, max_gap_ms)
    machines = np.zeros(0, np.int64)
    if len(batch):
        is_last = np.ones(len(batch), np.bool_)
        is_last[:-1] = batch.machine_idx[1:] != batch.machine_idx[:-1]
        last = np.flatnonzero(is_last)
        machines = batch.machine_idx[last]
        new["ts_ms"][machines] = batch.ts_ms[last]
        new["rpm"][machines] = batch.rpm[last]
        new["load_pct"][machines] = batch.load_pct[last]
    return ColumnUsage(acc.slots(), anomalies, refuels, new, machines)


def _intervals(
    acc: Acc, batch: Batch, tails: TailColumns, idle_load: FloatArray,
    idle_rpm: FloatArray, max_gap_ms: int,
) -> None:  # fmt: skip
    """Known, working and idle seconds, and running times, of each reading's interval."""
    if not len(batch):
        return
    starts, _ = runs(batch.machine_idx)
    run_m = batch.machine_idx[starts]
    known = tails["ts_ms"][run_m] >= 0
    # Each machine's tail goes in front of its run (the batch is sorted by machine, time).
    where, tm = starts[known], run_m[known]
    machine = np.insert(batch.machine_idx, where, tm)
    ts = np.insert(batch.ts_ms, where, tails["ts_ms"][tm])
    rpm = np.insert(batch.rpm, where, tails["rpm"][tm])
    load = np.insert(batch.load_pct, where, tails["load_pct"][tm])
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
    acc: Acc, batch: Batch, tails: TailColumns, new: TailColumns, tol_h: FloatArray,
    max_gap_ms: int,
) -> list[MeterAnomaly]:  # fmt: skip
    """Counter increases, split over slots; impossible steps flagged instead of summed.

    Writes the hours fields of the machines' new tails into `new`.
    """
    machine, ts, value, _ = series(
        batch.machine_idx, batch.ts_ms, batch.hours, tails, "hours_ts_ms", "hours"
    )
    anomalies: list[MeterAnomaly] = []
    if len(ts) == 0:
        return anomalies
    is_last = np.ones(len(ts), np.bool_)
    is_last[:-1] = machine[1:] != machine[:-1]
    li = np.flatnonzero(is_last)
    new["hours_ts_ms"][machine[li]] = ts[li]
    new["hours"][machine[li]] = value[li]
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
    split(acc, m[good], t0[good], t1[good], COLUMNS.index("engine_h"), delta[good], max_gap_ms)
    s1 = t1[bad] // SLOT_MS * SLOT_MS
    acc.add(m[bad], s1, COLUMNS.index("meter_anomalies"), np.ones(int(bad.sum())))
    return anomalies
