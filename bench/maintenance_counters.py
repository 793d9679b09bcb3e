"""Maintenance counter benchmark: the engine-hours counter per machine and UTC day.

Run by hand (not in CI): `.venv/bin/python -m bench.maintenance_counters` (bench/README.md).

A fresh database with the service's daily partitions for 30 days of retention holds
`--machines` machines with a reading every `--every-s` seconds over 29 days. Measured, each
several times, best run kept, on one connection:

* probe    - the product (`maintenance.counters.counters`): one backward index probe per machine
  and UTC day for the day's last engine hours;
* scan     - the baseline: one `DISTINCT ON (machine_id, day)` pass over the window's readings
  (what a plain query does), JIT off as for the probe;
* job      - `maintenance.job.run_once` over the fleet (plans, completions, counters, status rows
  and alerts).

Printed: milliseconds of each and the scan / probe ratio. Then the same with a reading every
`--every-s x 10` s, to show the probe does not grow with the reading rate while the scan does.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import asyncpg

from bench.harness import bench_database
from telematics.base.config import Settings
from telematics.base.db import acquire, create_pool
from telematics.maintenance import counters, job
from telematics.store import partitions

DAYS = 29

_SCAN = """
SELECT DISTINCT ON (machine_id, day) machine_id, day, engine_hours
FROM (SELECT machine_id, ts, (ts AT TIME ZONE 'UTC')::date AS day, engine_hours
      FROM readings
      WHERE machine_id = ANY($1::text[]) AND ts >= $2 AND engine_hours IS NOT NULL) r
ORDER BY machine_id, day, ts DESC
"""


async def fill(pool: asyncpg.Pool, machines: int, every_s: int, tag: str) -> list[str]:
    """Machines with a reading every `every_s` over `DAYS` days, engine hours climbing."""
    ids = [f"{tag}-{i:04d}" for i in range(machines)]
    now = datetime.now(UTC)
    start = now - timedelta(days=DAYS)
    steps = DAYS * 86_400 // every_s
    async with acquire(pool) as conn:
        await conn.executemany(
            "INSERT INTO machines (machine_id, model, customer_id, site_lat, site_lon) "
            "VALUES ($1, 'SY215C', 'BENCH', 30, 120)",
            [(m,) for m in ids],
        )
        for m in ids:
            records = [
                (m, start + timedelta(seconds=k * every_s), k * every_s / 3600 * 0.3)
                for k in range(steps)
            ]
            await conn.copy_records_to_table(
                "readings", records=records, columns=["machine_id", "ts", "engine_hours"]
            )
        await conn.execute("ANALYZE readings")
    return ids


async def best_ms(runs: int, operation: Callable[[], Awaitable[object]]) -> float:
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        await operation()
        best = min(best, (time.perf_counter() - t0) * 1000)
    return best


async def measure(pool: asyncpg.Pool, settings: Settings, machines: int, every_s: int) -> None:
    ids = await fill(pool, machines, every_s, f"B{every_s}")
    today = datetime.now(UTC).date()
    first = today - timedelta(days=DAYS)
    since = datetime.now(UTC) - timedelta(days=DAYS)
    async with acquire(pool) as conn:
        probe = await best_ms(3, lambda: counters.counters(conn, ids, first, today))
        await conn.execute("SET jit = off")  # the baseline at its best too
        scan = await best_ms(3, lambda: conn.fetch(_SCAN, ids, since))
    whole = await best_ms(2, lambda: job.run_once(pool, settings))
    rows = machines * DAYS * 86_400 // every_s
    print(
        f"{machines} machines, a reading every {every_s} s ({rows:,} readings): "
        f"probe {probe:.0f} ms, scan {scan:.0f} ms (scan/probe {scan / probe:.1f}x), "
        f"job over the fleet {whole:.0f} ms"
    )
    async with acquire(pool) as conn:
        await conn.execute("DELETE FROM maintenance_status")
        await conn.execute("DELETE FROM maintenance_alerts")
        await conn.execute("DELETE FROM readings")
        await conn.execute("DELETE FROM machines")


async def main_async(args: argparse.Namespace) -> None:
    async with bench_database("bench_counters") as dsn:
        pool = await create_pool(dsn, max_size=2)
        try:
            async with acquire(pool) as conn:
                await partitions.upkeep(
                    conn, today=datetime.now(UTC).date(), retention_days=30, ahead_days=3
                )
            settings = Settings()
            await measure(pool, settings, args.machines, args.every_s)
            await measure(pool, settings, args.machines, args.every_s * 10)
        finally:
            await pool.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--machines", type=int, default=50)
    parser.add_argument("--every-s", type=int, default=60)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
