"""Alarm store benchmark: a batch's updates of its active episodes, in one statement or one by one.

Run by hand (not in CI): `.venv/bin/python -m bench.alarm_updates` (see bench/README.md).

Every batch the diagnoser stores carries one UPDATED event for each episode still active among its
machines (`diagnosis.events`): a fleet with chronic J1939 codes updates hundreds of open episodes
a second. Over a fresh database on TELEMATICS_BENCH_DATABASE_URL, `--episodes` machines each get
an open episode, then `--rounds` batches of one UPDATED event per episode are applied, each batch
in its own transaction as the diagnoser does: `store.alarms.apply_events` (the batch's updates in
one statement) against the baseline of the same events applied one at a time (`apply_events` on
each event alone, one statement each; before the batched statement each update took two).
Tables are analysed after seeding. Runs alternate, best of three each; the figure is the ratio of
the times.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import asyncpg

from bench.harness import bench_database
from diagnosis.events import AlarmEvent, Severity, Transition, dtc_code
from telematics.base.db import acquire, create_pool
from telematics.store import alarms as alarm_store

T0_MS = 1_795_000_000_000
FAULT = dtc_code(100, 1)


def _describe(_: str) -> tuple[Severity, str]:
    return Severity.MAJOR, "Engine oil pressure: below normal"


async def _open_episodes(pool: asyncpg.Pool, tag: str, count: int) -> list[str]:
    ids = [f"{tag}-{i:06d}" for i in range(count)]
    await pool.executemany(
        "INSERT INTO machines (machine_id, model, customer_id) VALUES ($1, 'excavator', 'C1')",
        [(m,) for m in ids],
    )
    async with acquire(pool) as conn, conn.transaction():
        raised = [AlarmEvent(m, FAULT, Transition.RAISED, T0_MS, count=1) for m in ids]
        await alarm_store.apply_events(conn, raised, _describe)
    # As autovacuum keeps a live table analysed: fresh tables' empty statistics made the plan a
    # matter of luck (a generic plan 2.5x slower, until ANALYZE).
    await pool.execute("ANALYZE alarms")
    await pool.execute("ANALYZE incidents")
    return ids


def _batch(machines: list[str], round_: int) -> list[AlarmEvent]:
    ts = T0_MS + (round_ + 1) * 1000
    return [
        AlarmEvent(m, FAULT, Transition.UPDATED, ts, count=10, occurrences=round_ + 2)
        for m in machines
    ]


async def _apply(pool: asyncpg.Pool, machines: list[str], rounds: int, *, alone: bool) -> float:
    start = time.perf_counter()
    async with acquire(pool) as conn:
        for r in range(rounds):
            events = _batch(machines, r)
            async with conn.transaction():
                if alone:
                    for e in events:
                        await alarm_store.apply_events(conn, [e], _describe)
                else:
                    await alarm_store.apply_events(conn, events, _describe)
    return time.perf_counter() - start


async def main_async(args: argparse.Namespace) -> None:
    async with bench_database("bench_alarm_updates") as dsn:
        pool = await create_pool(dsn, min_size=1, max_size=2)
        try:
            together, alone = [], []
            for run in range(3):
                machines = await _open_episodes(pool, f"A{run}", args.episodes)
                alone.append(await _apply(pool, machines, args.rounds, alone=True))
                machines = await _open_episodes(pool, f"T{run}", args.episodes)
                together.append(await _apply(pool, machines, args.rounds, alone=False))
                readings = await pool.fetchval(
                    "SELECT min(readings) FROM alarms WHERE machine_id LIKE $1", f"T{run}-%"
                )
                assert readings == 1 + 10 * args.rounds, readings
        finally:
            await pool.close()
    updates = args.episodes * args.rounds
    a, b = min(together), min(alone)
    print(
        f"{args.episodes:,} open episodes, {args.rounds} batches: {updates / a:,.0f} updates/s "
        f"in one statement a batch, {updates / b:,.0f} one at a time; "
        f"ratio {a / b:.3f}x the time ({b / a:.1f}x faster)"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--episodes", type=int, default=1000, help="open episodes, one per machine")
    p.add_argument("--rounds", type=int, default=10, help="batches applied")
    asyncio.run(main_async(p.parse_args()))


if __name__ == "__main__":
    main()
