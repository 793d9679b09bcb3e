"""Partition upkeep under live ingestion: it never races an insert, and retention holds for the
default partition too."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, time, timedelta

import asyncpg

from telematics.store import partitions
from tests.conftest import unique

INSERT = "INSERT INTO readings (machine_id, ts, load_pct) VALUES ($1, $2, 1) ON CONFLICT DO NOTHING"


def _at(day: date, ms: int) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC) + timedelta(milliseconds=ms)


async def _drop_day(conn: asyncpg.Connection, day: date) -> None:
    name = partitions.partition_name("readings", day)
    await conn.execute(f"ALTER TABLE readings DETACH PARTITION {name}")
    await conn.execute(f"DROP TABLE {name}")


async def test_upkeep_creates_a_day_while_rows_for_it_keep_arriving(pool: asyncpg.Pool) -> None:
    today = datetime.now(UTC).date()
    day = today + timedelta(days=2)  # inside the window upkeep keeps, and no test's "now"
    machine = unique("PU")
    stop = asyncio.Event()
    inserted = [0]

    async def insert_continuously(offset: int) -> None:
        async with pool.acquire() as conn:
            while not stop.is_set():
                await conn.execute(INSERT, machine, _at(day, offset + 2 * inserted[0]))
                inserted[0] += 1

    inserters = [asyncio.create_task(insert_continuously(k)) for k in range(2)]
    try:
        for _ in range(12):
            async with pool.acquire() as conn:
                await _drop_day(conn, day)
                await asyncio.sleep(0.05)  # rows for the day now land in the default partition
                report = await partitions.upkeep(conn, today=today, retention_days=30, ahead_days=3)
                assert partitions.partition_name("readings", day) in report.created
                left = await conn.fetchval(
                    "SELECT count(*) FROM readings_default WHERE machine_id = $1", machine
                )
                assert left == 0  # every row of the day moved into the day's partition
    finally:
        stop.set()
        await asyncio.gather(*inserters)
    assert inserted[0] > 0


async def test_rows_past_retention_leave_the_default_partition_too(pool: asyncpg.Pool) -> None:
    today = datetime.now(UTC).date()
    machine = unique("PU")
    old, kept = today - timedelta(days=90), today + timedelta(days=40)  # no partition for either
    await pool.execute(INSERT, machine, _at(old, 0))
    await pool.execute(INSERT, machine, _at(kept, 0))
    async with pool.acquire() as conn:
        await partitions.upkeep(conn, today=today, retention_days=30, ahead_days=3)
    rows = await pool.fetch(
        "SELECT ts FROM readings_default WHERE machine_id = $1 ORDER BY ts", machine
    )
    assert [row["ts"] for row in rows] == [_at(kept, 0)]
