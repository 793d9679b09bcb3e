"""Distance from positions (docs/customers.md, "Distance"). Pure numpy, no I/O.

Haversine from an anchor to the first position at least `min_move_m` from it, which becomes the
anchor: GPS jitter never adds up. Machines whose positions all stay within that of their anchor
cost no loop.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from diagnosis.usage_limits import UsageLimits
from telematics.summaries.usage_base import (
    COLUMNS,
    Acc,
    Batch,
    FloatArray,
    TailColumns,
    runs,
    split,
)

_EARTH_M = 6_371_008.8


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


def distance(
    acc: Acc, batch: Batch, tails: TailColumns, new: TailColumns,
    limits: Sequence[UsageLimits], max_gap_ms: int,
) -> None:  # fmt: skip
    """Distance between anchors at least `min_move_m` apart (GPS jitter never adds up).

    Writes the position fields of the machines' new tails into `new`.
    """
    has = ~(np.isnan(batch.lat) | np.isnan(batch.lon))
    idx, ts = batch.machine_idx[has], batch.ts_ms[has]
    lat, lon = batch.lat[has], batch.lon[has]
    if len(ts) == 0:
        return
    starts, lengths = runs(idx)
    run_m = idx[starts]
    a_lat, a_lon = lat[starts].copy(), lon[starts].copy()
    a_ts = ts[starts].copy()
    tail_ts = tails["pos_ts_ms"][run_m]
    known = tail_ts >= 0
    a_lat[known] = tails["anchor_lat"][run_m[known]]
    a_lon[known] = tails["anchor_lon"][run_m[known]]
    a_ts[known] = tail_ts[known]
    run_ml = run_m.tolist()
    min_move = np.asarray([limits[m].min_move_m for m in run_ml], np.float64)
    dist = haversine_m(np.repeat(a_lat, lengths), np.repeat(a_lon, lengths), lat, lon)
    away = np.maximum.reduceat(dist, starts) >= min_move
    ends = starts + lengths - 1
    # Machines that stayed put keep their anchors; the moving ones are walked below.
    new["pos_ts_ms"][run_m] = ts[ends]
    new["anchor_lat"][run_m] = a_lat
    new["anchor_lon"][run_m] = a_lon
    t0s: list[int] = []
    t1s: list[int] = []
    ms: list[int] = []
    moved: list[float] = []
    lat_l, lon_l, ts_l = lat.tolist(), lon.tolist(), ts.tolist()
    for k in np.flatnonzero(away).tolist():
        # Moving: the anchor rule reading by reading (it depends on where the last was).
        m, lo, hi = run_ml[k], int(starts[k]), int(ends[k])
        anchor_lat, anchor_lon = float(a_lat[k]), float(a_lon[k])
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
        new["anchor_lat"][m] = anchor_lat
        new["anchor_lon"][m] = anchor_lon
    if moved:
        col = COLUMNS.index("distance_m")
        split(
            acc, np.asarray(ms, np.int64), np.asarray(t0s, np.int64), np.asarray(t1s, np.int64),
            col, np.asarray(moved, np.float64), max_gap_ms,
        )  # fmt: skip
