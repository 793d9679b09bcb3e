"""Fuel used and refuels from fuel levels (docs/customers.md, "Fuel"). Pure numpy, no I/O.

Consumption is the fall of an anchor, the lowest level since the last refuel; a level that
climbs `refuel_min_pct` above it starts a refuel, which ends once the level falls more than the
noise below its peak or stops rising for `REFUEL_SETTLE_MS` (the anchor is then the peak).
Machines with no refuel activity in a batch take a vectorised path; the few others a loop with
the same rule.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from diagnosis.usage_limits import UsageLimits
from telematics.summaries.usage_base import (
    COLUMNS,
    NAN,
    REFUEL_SETTLE_MS,
    SLOT_MS,
    Acc,
    Batch,
    Fields,
    FloatArray,
    IntArray,
    Refuel,
    Tail,
    TailColumns,
    runs,
    series,
    split,
)


def fuel(
    acc: Acc, batch: Batch, old: TailColumns, new: TailColumns,
    limits: Sequence[UsageLimits], max_gap_ms: int,
) -> list[Refuel]:  # fmt: skip
    """Consumption (falls of the anchor) and refuels (rises past `refuel_min_pct`).

    `old` holds the tails before the batch; the fuel fields of the machines' new tails are
    written into `new`.
    """
    machine, ts, level, is_tail = series(
        batch.machine_idx, batch.ts_ms, batch.fuel_pct, old, "fuel_ts_ms", "fuel_pct"
    )
    refuels: list[Refuel] = []
    n = len(ts)
    if n == 0:
        return refuels
    used = np.zeros(n, np.float64)
    starts, lengths = runs(machine)
    run_m = machine[starts]
    # The anchor each run starts from: the tail's (its first element is the tail's level),
    # else the machine's first level.
    seeds = level[starts].copy()
    first_is_tail = is_tail[starts] == 1
    tail_anchor = old["fuel_anchor_pct"][run_m]
    has_anchor = first_is_tail & ~np.isnan(tail_anchor)
    seeds[has_anchor] = tail_anchor[has_anchor]
    rising = first_is_tail & (old["refuel_from_ms"][run_m] >= 0)
    run_ml = run_m.tolist()
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
    m_plain = run_m[k_plain]
    new["fuel_ts_ms"][m_plain] = ts[e_plain]
    new["fuel_pct"][m_plain] = level[e_plain]
    new["fuel_anchor_pct"][m_plain] = run_min[e_plain]
    new["refuel_from_ms"][m_plain] = -1
    lo = low[k_plain]
    new["fuel_low_ms"][m_plain] = np.where(lo >= 0, lo, old["fuel_low_ms"][m_plain])
    for k in np.flatnonzero(special).tolist():
        rows = np.arange(starts[k], starts[k] + lengths[k])
        m = int(run_m[k])
        with_tail = bool(first_is_tail[k])
        tail = old.row(m) if with_tail else None
        state = _fuel_loop(m, rows, ts, level, used, tail, limits[m], refuels, with_tail)
        for name, value in state.items():
            new[name][m] = value
    same = machine[1:] == machine[:-1]
    m2, t0, t1, u = machine[1:][same], ts[:-1][same], ts[1:][same], used[1:][same]
    nz = u != 0
    split(acc, m2[nz], t0[nz], t1[nz], COLUMNS.index("fuel_used_pct"), u[nz], max_gap_ms)
    if refuels:
        acc.add(
            np.asarray([r.machine_idx for r in refuels], np.int64),
            np.asarray([r.ts_ms // SLOT_MS * SLOT_MS for r in refuels], np.int64),
            COLUMNS.index("refuel_pct"),
            np.asarray([r.added_pct for r in refuels], np.float64),
        )
    return refuels


def _fuel_loop(
    m: int, rows: IntArray, ts: IntArray, level: FloatArray, used: FloatArray,
    tail: Tail | None, limit: UsageLimits, refuels: list[Refuel], starts_with_tail: bool,
) -> Fields:  # fmt: skip
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
