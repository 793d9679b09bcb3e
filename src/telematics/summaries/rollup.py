"""The rollup: each committed batch, as the diagnoser hands it on, into the summary tables.

The diagnoser calls `Rollup.consume` after the engine for every batch, live and catch-up, in
commit order. Per machine, readings newer than its tail are increments: their slot and day
contributions and the tail's move go in ONE transaction, and the tail moves only if the stored
one is what this process expected (`UPDATE ... WHERE ts = expected`), so another worker or a
re-run after a crash finds a mismatch, re-reads the tail and takes the other path. Readings at
or before the tail (late, buffered, replayed, re-diagnosed) make their machine's affected slots
be recomputed from the stored readings, synchronously in the same transaction
(docs/customers.md, "Late readings"). Tails in memory are a cache, forgotten on any failure.

A failure here never stops diagnosis: a database that is away is retried by the diagnoser;
anything else is logged and the batch's machines forgotten.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Sequence

import asyncpg
import numpy as np
from numpy.typing import NDArray

from diagnosis.frame import Frame
from diagnosis.rules import RuleBook
from diagnosis.usage_limits import UsageLimits
from telematics.base.db import acquire
from telematics.base.errors import StoreUnavailableError
from telematics.summaries import store
from telematics.summaries.store import StoredReadings, TailMovedError, slot_of
from telematics.summaries.usage import (
    COLUMNS,
    SLOT_MS,
    Batch,
    ColumnUsage,
    Slots,
    Tail,
    TailColumns,
    column_contributions,
    contributions,
)
from telematics.summaries.usage_base import IntArray, group

log = logging.getLogger(__name__)

_RECOMPUTE_CHUNK_MS = 96 * SLOT_MS


def seed_tail(reading: StoredReadings) -> Tail:
    """A tail standing for a stored reading (the last one before a batch or a range).

    Its fuel and position anchors are the reading's own values: what the formulas carried
    into it is not kept, so a recompute may count at most one noise amplitude differently.
    """
    ts = reading.ts_ms[0]

    def at(value: float) -> int:
        return -1 if math.isnan(value) else ts

    return Tail(
        ts_ms=ts,
        rpm=reading.rpm[0],
        load_pct=reading.load_pct[0],
        hours_ts_ms=at(reading.hours[0]),
        hours=reading.hours[0],
        fuel_ts_ms=at(reading.fuel_pct[0]),
        fuel_pct=reading.fuel_pct[0],
        fuel_anchor_pct=reading.fuel_pct[0],
        fuel_low_ms=at(reading.fuel_pct[0]),
        pos_ts_ms=at(reading.lat[0] + reading.lon[0]),
        anchor_lat=reading.lat[0],
        anchor_lon=reading.lon[0],
    )


def batch_of(readings: StoredReadings) -> Batch:
    """One machine's stored readings as a batch (machine index 0)."""

    def arr(values: list[float]) -> np.ndarray:
        return np.asarray(values, np.float64)

    return Batch(
        machine_idx=np.zeros(len(readings), np.int64),
        ts_ms=np.asarray(readings.ts_ms, np.int64),
        rpm=arr(readings.rpm),
        load_pct=arr(readings.load_pct),
        fuel_pct=arr(readings.fuel_pct),
        hours=arr(readings.hours),
        lat=arr(readings.lat),
        lon=arr(readings.lon),
    )


def _joined(a: StoredReadings, b: StoredReadings) -> StoredReadings:
    return StoredReadings(
        ts_ms=a.ts_ms + b.ts_ms,
        rpm=a.rpm + b.rpm,
        load_pct=a.load_pct + b.load_pct,
        fuel_pct=a.fuel_pct + b.fuel_pct,
        hours=a.hours + b.hours,
        lat=a.lat + b.lat,
        lon=a.lon + b.lon,
    )


def merge_slots(parts: Sequence[tuple[list[str], Slots]]) -> tuple[list[str], Slots]:
    """Slot contributions of several batches as one, summed per (machine, slot)."""
    names: dict[str, int] = {}
    machine, slot, values, first, last = [], [], [], [], []
    for ids, slots in parts:
        index = np.asarray([names.setdefault(m, len(names)) for m in ids], np.int64)
        machine.append(index[slots.machine_idx] if len(ids) else slots.machine_idx)
        slot.append(slots.slot_ms)
        values.append(slots.values)
        first.append(slots.first_start_ms)
        last.append(slots.last_stop_ms)
    ids = list(names)
    if not parts:
        empty = np.zeros(0, np.int64)
        return ids, Slots(empty, empty, np.zeros((len(COLUMNS), 0), np.float64), empty, empty)
    rows_machine, rows_slot, inverse = group(np.concatenate(machine), np.concatenate(slot))
    rows = len(rows_slot)
    v_all = np.concatenate(values, axis=1)
    summed = np.stack([np.bincount(inverse, weights=v, minlength=rows) for v in v_all]).astype(
        np.float64
    )
    f_all = np.concatenate(first).astype(np.int64)
    f_all = np.where(f_all < 0, np.iinfo(np.int64).max, f_all)
    lo = np.full(rows, np.iinfo(np.int64).max, np.int64)
    np.minimum.at(lo, inverse, f_all)
    lo[lo == np.iinfo(np.int64).max] = -1
    hi = np.full(rows, -1, np.int64)
    np.maximum.at(hi, inverse, np.concatenate(last).astype(np.int64))
    return ids, Slots(rows_machine, rows_slot, summed, lo, hi)


class Rollup:
    """Keeps `summary_slots`, `summary_days` and `summary_customer_days` as batches commit.

    An after-batch consumer.

    `consume` computes a batch's increments in memory; `flush` writes what the batches since
    the last flush added in one transaction. The diagnoser asks for a flush before it marks
    batches done (about once a second) but with `due_only`, so it happens every
    `flush_interval_s` or once `flush_readings` are buffered, whichever comes first: a flush
    writes a few rows per machine whatever the number of its readings, so fewer flushes cost
    less per reading. Batches are marked done only once flushed, so a crash loses nothing:
    those batches are fed again on restart. Late readings flush first, then recompute at once.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        rules: RuleBook,
        max_gap_s: int = 300,
        flush_interval_s: float = 10.0,
        flush_readings: int = 300_000,
    ) -> None:
        """Create the consumer.

        Args:
            pool: The jobs pool.
            rules: The rule book: `usage` thresholds per machine class and model.
            max_gap_s: Longest gap between readings counted as known time (<= 900).
            flush_interval_s: A `due_only` flush writes at most this often...
            flush_readings: ... unless this many readings are buffered (they are kept in
                memory until then, for a re-apply after `TailMovedError`).
        """
        if not 0 < max_gap_s <= SLOT_MS // 1000:
            raise ValueError("max_gap_s must be within 1..900")
        if flush_interval_s < 0 or flush_readings < 1:
            raise ValueError("flush_interval_s must be >= 0 and flush_readings >= 1")
        self._flush_interval_s = flush_interval_s
        self._flush_readings = flush_readings
        self._last_flush = time.monotonic()
        self._pool = pool
        self._rules = rules
        self._max_gap_ms = max_gap_s * 1000
        # The tail cache, as columns (one row per machine seen, `_row` maps ids to rows): no
        # per-machine objects on the batch path, only at a flush's JSON.
        self._row: dict[str, int] = {}
        self._ids: list[str] = []
        self._limits: list[UsageLimits | None] = []
        """Per row, the machine's thresholds (None: not registered, or not asked yet)."""
        self._tails = TailColumns.empty(0)
        """Per row, the machine's tail including what is buffered (ts_ms -1: none)."""
        self._cached = np.zeros(0, np.bool_)
        """Per row, whether `_tails` holds it (else the store's is read)."""
        self._moving = np.zeros(0, np.bool_)
        """Per row, whether it has buffered increments."""
        self._start_ts = np.zeros(0, np.int64)
        """Per moving row, the time of the stored tail its increments start from (-1: none)."""
        self._parts: list[tuple[list[str], ColumnUsage]] = []
        self._frames: list[Frame] = []
        self.recomputed = 0
        """Machine ranges recomputed so far (late readings, re-runs)."""
        self.recompute_chunk_ms = _RECOMPUTE_CHUNK_MS
        """A recompute reads the store this many slots' worth at a time (a day)."""

    def forget(self, machine_ids: Iterable[str]) -> None:
        """Drop cached tails of machines with nothing buffered, so the store's are read again."""
        rows = np.asarray([self._row[m] for m in machine_ids if m in self._row], np.int64)
        self._cached[rows[~self._moving[rows]]] = False

    def _rows_of(self, ids: Sequence[str]) -> IntArray:
        """Each machine's row in the cache, new rows for machines not seen before."""
        fresh = [m for m in dict.fromkeys(ids) if m not in self._row]
        if fresh:
            first = len(self._ids)
            self._row.update((m, first + k) for k, m in enumerate(fresh))
            self._ids += fresh
            self._limits += [None] * len(fresh)
            n = len(self._ids)
            self._tails = self._tails.grown(n)
            grow = n - len(self._cached)
            self._cached = np.concatenate([self._cached, np.zeros(grow, np.bool_)])
            self._moving = np.concatenate([self._moving, np.zeros(grow, np.bool_)])
            self._start_ts = np.concatenate([self._start_ts, np.full(grow, -1, np.int64)])
        return np.asarray([self._row[m] for m in ids], np.int64)

    async def consume(self, frame: Frame) -> None:
        """Take one committed batch. Never raises but `StoreUnavailableError` (retried)."""
        if not len(frame):
            return
        try:
            async with acquire(self._pool) as conn:
                await self._apply(conn, frame)
        except StoreUnavailableError:
            self.forget(frame.machine_ids)
            raise
        except Exception:  # a supervisor: summaries must never stop diagnosis or ingestion
            log.exception("summary rollup of a batch failed; its machines will be re-read")
            self.forget(frame.machine_ids)

    async def flush(self, *, due_only: bool = False) -> bool:
        """Write what the batches taken since the last flush added, in one transaction.

        Args:
            due_only: Only if a flush is due (`flush_interval_s` since the last one, or
                `flush_readings` buffered); else nothing is written.

        Returns:
            Whether every batch taken so far is stored (False: the flush was not due).

        Raises:
            StoreUnavailableError: The database is away; everything stays buffered.
        """
        if not self._moving.any():
            self._last_flush = time.monotonic()
            return True
        if due_only and not self.flush_due():
            return False
        try:
            async with acquire(self._pool) as conn:
                await self._flush(conn)
        except StoreUnavailableError:
            raise
        except Exception:  # a supervisor: summaries must never stop diagnosis or ingestion
            moving = int(self._moving.sum())
            log.exception("summary flush failed; %d machines' increments dropped", moving)
            self._cached[:] = False
            self._clear()
        return True

    def flush_due(self) -> bool:
        """Whether a `due_only` flush would write now."""
        return (
            sum(len(frame) for frame in self._frames) >= self._flush_readings
            or time.monotonic() - self._last_flush >= self._flush_interval_s
        )

    async def _flush(self, conn: asyncpg.Connection) -> None:
        rows = np.flatnonzero(self._moving)
        if not len(rows):
            return
        ids, slots = merge_slots([(i, u.slots) for i, u in self._parts])
        try:
            async with conn.transaction():
                await store.add_slots(conn, ids, slots)
                for part_ids, usage in self._parts:
                    await store.add_events(conn, part_ids, usage.anomalies, usage.refuels)
                await store.move_tails(
                    conn, [self._ids[r] for r in rows], self._start_ts[rows], self._tails.take(rows)
                )
        except TailMovedError as exc:
            # Another writer moved these machines' tails (or a re-run after a crash): the
            # buffered batches are applied again from the store's tails, and flushed.
            log.info("summary tails moved (%s); re-applying from the store's", exc)
            frames = list(self._frames)
            self._cached[rows] = False  # every buffered tail: none of them was stored
            self._clear()
            for frame in frames:
                await self._apply(conn, frame)
            await self._flush(conn)
            return
        self._clear()

    def _clear(self) -> None:
        self._moving[:] = False
        self._parts.clear()
        self._frames.clear()
        self._last_flush = time.monotonic()

    async def _apply(self, conn: asyncpg.Connection, frame: Frame) -> None:
        ids = list(frame.machine_ids)
        rows = self._rows_of(ids)
        rows_l = rows.tolist()
        await self._load(conn, ids, rows)
        default = self._rules.default.usage
        row_limits = [self._limits[r] for r in rows_l]
        limits = [u if u is not None else default for u in row_limits]
        known = np.asarray([u is not None for u in row_limits], np.bool_)
        expected_ts = self._tails["ts_ms"][rows]
        rows_known = known[frame.machine_idx]
        is_late = rows_known & (frame.ts_ms <= expected_ts[frame.machine_idx])
        fresh = rows_known & ~is_late
        if bool(is_late.any()):
            await self._late(conn, frame, is_late, expected_ts, limits)
        if not bool(fresh.any()):
            return
        seeds = self._tails.take(rows)
        new = np.flatnonzero((expected_ts < 0) & known).tolist()
        if new:
            first_ts = [int(frame.ts_ms[frame.machine_idx == i].min()) for i in new]
            before = await store.last_before(conn, [ids[i] for i in new], first_ts)
            for i in new:
                if ids[i] in before:
                    seeds.put(np.asarray([i]), TailColumns.of([seed_tail(before[ids[i]])]))
        batch = Batch(
            machine_idx=frame.machine_idx[fresh],
            ts_ms=frame.ts_ms[fresh],
            rpm=frame.signal("engine_speed_rpm")[fresh],
            load_pct=frame.signal("load_pct")[fresh],
            fuel_pct=frame.signal("fuel_level_pct")[fresh],
            hours=frame.signal("engine_hours")[fresh],
            lat=frame.signal("lat")[fresh],
            lon=frame.signal("lon")[fresh],
        )
        usage = column_contributions(batch, seeds, limits, self._max_gap_ms)
        self._parts.append((ids, usage))
        # Kept for a re-apply after TailMovedError; the whole frame when all of it was fresh.
        self._frames.append(frame if bool(fresh.all()) else frame.take(fresh))
        moved = rows[usage.machines]
        starting = moved[~self._moving[moved]]
        self._start_ts[starting] = self._tails["ts_ms"][starting]  # the stored tail's time
        self._moving[moved] = True
        self._tails.put(moved, usage.tails.take(usage.machines))

    async def _load(self, conn: asyncpg.Connection, ids: list[str], rows: IntArray) -> None:
        """Thresholds of machines not asked yet, and tails not cached, from the store."""
        unknown = [m for m, r in zip(ids, rows.tolist(), strict=True) if self._limits[r] is None]
        if unknown:
            for facts in await store.machine_facts(conn, unknown):
                thresholds = self._rules.for_machine(facts.model, facts.machine_class)
                self._limits[self._row[facts.machine_id]] = thresholds.usage
        missing = rows[~self._cached[rows]]
        if len(missing):
            stored = await store.load_tails(conn, [self._ids[r] for r in missing.tolist()])
            self._tails.put(missing, TailColumns.empty(len(missing)))
            if stored:
                found = np.asarray([self._row[m] for m in stored], np.int64)
                self._tails.put(found, TailColumns.of(list(stored.values())))
            self._cached[missing] = True

    async def _late(
        self,
        conn: asyncpg.Connection,
        frame: Frame,
        is_late: NDArray[np.bool_],
        tail_ts: IntArray,
        limits: list[UsageLimits],
    ) -> None:
        """Recompute what the late readings of a batch change (flushing first), in one go."""
        await self._flush(conn)  # the store must hold everything before a recompute
        ids = frame.machine_ids
        async with conn.transaction():
            ranges: list[tuple[str, int, int]] = []
            for i in np.unique(frame.machine_idx[is_late]).tolist():
                late_ts = frame.ts_ms[is_late & (frame.machine_idx == i)]
                upto = int(tail_ts[i])
                assert upto >= 0  # late means at or before a tail
                lo, hi = int(late_ts.min()), int(late_ts.max())
                span = await self.recompute(conn, ids[i], lo, hi, upto, limits[i])
                ranges.append((ids[i], span[0], span[1] - 1))
            # Once for the batch: a re-run of a whole batch is late for every machine in it.
            await store.rebuild_customer_days(conn, ranges)

    async def recompute(
        self,
        conn: asyncpg.Connection,
        machine_id: str,
        first_ms: int,
        last_ms: int,
        upto_ms: int,
        limits: UsageLimits,
    ) -> tuple[int, int]:
        """Recompute the slots that readings in [first_ms, last_ms] change, from the store.

        Only pairs of readings whose later one is at or before `upto_ms` (the tail) count:
        what comes after it is the increments' business. Returns the slot range [lo, hi); the
        machine's day rows there are rebuilt, its customer's are left to the caller
        (`store.rebuild_customer_days` over that range).
        """
        self.recomputed += 1
        before = await store.reading_next_to(conn, machine_id, first_ms, before=True, limit_ms=None)
        lo = slot_of(before.ts_ms[0]) if len(before) else slot_of(first_ms)
        after = await store.reading_next_to(
            conn, machine_id, last_ms, before=False, limit_ms=upto_ms
        )
        last_slot = slot_of(last_ms) + SLOT_MS
        if len(after):
            last_slot = max(last_slot, slot_of(after.ts_ms[0]))
        hi = min(last_slot, slot_of(upto_ms)) + SLOT_MS
        # A day of slots at a time: a replay of weeks of readings must not be read whole.
        step = self.recompute_chunk_ms
        for chunk_lo in range(lo, hi, step):
            await self._recompute_range(
                conn, machine_id, chunk_lo, min(chunk_lo + step, hi), upto_ms, limits
            )
        return lo, hi

    async def _recompute_range(
        self,
        conn: asyncpg.Connection,
        machine_id: str,
        lo: int,
        hi: int,
        upto_ms: int,
        limits: UsageLimits,
    ) -> None:
        """Replace the slots [lo, hi) with what the stored readings give (pairs up to upto)."""
        inside = await store.readings(conn, machine_id, lo, min(hi - 1, upto_ms))
        context = await store.reading_next_to(conn, machine_id, lo, before=True, limit_ms=None)
        beyond = await store.reading_next_to(
            conn, machine_id, hi - 1, before=False, limit_ms=upto_ms
        )
        seed = seed_tail(context) if len(context) else None
        usage = contributions(batch_of(_joined(inside, beyond)), [seed], [limits], self._max_gap_ms)
        await store.replace_range(
            conn,
            machine_id,
            lo,
            hi,
            usage.slots.within(lo, hi),
            [a for a in usage.anomalies if lo <= a.ts_ms < hi],
            [r for r in usage.refuels if lo <= r.ts_ms < hi],
        )
