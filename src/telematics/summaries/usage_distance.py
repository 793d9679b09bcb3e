"""Distance from positions (docs/customers.md, "Distance"). Pure numpy, no I/O.

Haversine from an anchor to the first position at least `min_move_m` from it, which becomes the
anchor: GPS jitter never adds up. Machines whose positions all stay within that of their anchor
cost no loop.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from diagnosis.usage_limits import UsageLimits
from telematics.summaries.usage_base import (
    COLUMNS,
    Acc,
    Batch,
    FloatArray,
    IntArray,
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
    new["pos_ts_ms"][run_m] = ts[ends]
    moving = np.flatnonzero(away)
    # Machines that stayed put keep their anchors; the moving ones are walked (`_walk` moves
    # their anchors in a_lat, a_lon).
    k_moves, j_moves, d_moves = _walk(moving, starts, ends, a_lat, a_lon, lat, lon, min_move)
    order = np.lexsort((j_moves, k_moves))  # run by run, reading by reading, as a loop would
    k_moves, j_moves, d_moves = k_moves[order], j_moves[order], d_moves[order]
    # The interval a move ends is from the reading before it (the anchor's own time for a
    # run's first reading) to the reading that moved.
    t0 = np.where(j_moves > starts[k_moves], ts[np.maximum(j_moves - 1, 0)], a_ts[k_moves])
    new["anchor_lat"][run_m] = a_lat
    new["anchor_lon"][run_m] = a_lon
    if len(d_moves):
        col = COLUMNS.index("distance_m")
        split(acc, run_m[k_moves], t0, ts[j_moves], col, d_moves, max_gap_ms)


def _walk(
    runs_k: IntArray, starts: IntArray, ends: IntArray, a_lat: FloatArray, a_lon: FloatArray,
    lat: FloatArray, lon: FloatArray, min_move: FloatArray,
) -> tuple[IntArray, IntArray, FloatArray]:  # fmt: skip
    """The anchor rule for every moving run at once: (run, reading, metres) of each move.

    Each round finds, in every run still walking, the first reading at least `min_move` from
    its anchor, which becomes the anchor; a run stops when no later reading is that far.
    `a_lat`/`a_lon` (per run) end as the runs' last anchors. Rounds: the most moves of a run.
    """
    pos = starts[runs_k].copy()
    end = ends[runs_k]
    moves_k: list[IntArray] = []
    moves_j: list[IntArray] = []
    moves_d: list[FloatArray] = []
    while len(runs_k):
        lens = end - pos + 1
        offset = np.cumsum(lens) - lens
        walker = np.repeat(np.arange(len(runs_k)), lens)
        j = np.arange(int(lens.sum()), dtype=np.int64) - offset[walker] + pos[walker]
        k = runs_k[walker]
        d = haversine_m(a_lat[k], a_lon[k], lat[j], lon[j])
        hit = np.flatnonzero(d >= min_move[k])
        if not len(hit):
            break
        is_first = np.ones(len(hit), np.bool_)
        is_first[1:] = walker[hit[1:]] != walker[hit[:-1]]
        hit = hit[is_first]
        jk, kk = j[hit], k[hit]
        moves_k.append(kk)
        moves_j.append(jk)
        moves_d.append(d[hit])
        a_lat[kk], a_lon[kk] = lat[jk], lon[jk]
        go_on = jk < end[walker[hit]]
        runs_k, pos, end = kk[go_on], jk[go_on] + 1, end[walker[hit]][go_on]
    if not moves_k:
        empty = np.zeros(0, np.int64)
        return empty, empty, np.zeros(0, np.float64)
    return np.concatenate(moves_k), np.concatenate(moves_j), np.concatenate(moves_d)
