"""Migrations and partition upkeep against the real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import asyncpg
import pytest

from telematics.base.errors import MigrationError
from telematics.base.migrate import Migration, migrate, packaged_migrations
from telematics.store.partitions import partition_name, upkeep
from tests.conftest import unique


async def test_migrations_apply_once(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        assert await migrate(conn) == []  # the session fixture applied them already
        versions = await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")
    assert [r["version"] for r in versions] == [m.version for m in packaged_migrations()]


async def test_an_edited_applied_migration_is_refused(pool: asyncpg.Pool) -> None:
    first = packaged_migrations()[0]
    async with pool.acquire() as conn:
        with pytest.raises(MigrationError, match="changed"):
            await migrate(conn, [Migration(first.version, first.sql + "\n-- edited")])


async def test_a_failing_migration_leaves_no_trace(pool: asyncpg.Pool) -> None:
    table = unique("t").replace("-", "_")
    broken = Migration(f"999_{table}", f"CREATE TABLE {table} (x int); SELECT 1/0;")
    async with pool.acquire() as conn:
        with pytest.raises(MigrationError):
            await migrate(conn, [broken])
        assert await conn.fetchval("SELECT to_regclass($1)", table) is None
        assert not await conn.fetchval(
            "SELECT count(*) FROM schema_migrations WHERE version = $1", broken.version
        )


async def test_upkeep_keeps_exactly_the_retention_window_plus_days_ahead(
    pool: asyncpg.Pool,
) -> None:
    today = datetime.now(UTC).date()
    day = today + timedelta(days=2)  # as if the service ran upkeep two days from now
    async with pool.acquire() as conn:
        report = await upkeep(conn, today=day, retention_days=30, ahead_days=3)
        assert partition_name("readings", day + timedelta(days=3)) in report.created
        assert partition_name("readings", today - timedelta(days=30)) in report.dropped
        days = sorted(
            datetime.strptime(r["relname"][-8:], "%Y%m%d").replace(tzinfo=UTC).date()
            for r in await conn.fetch(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "JOIN pg_class p ON p.oid = i.inhparent "
                "WHERE p.relname = 'readings' AND c.relname <> 'readings_default'"
            )
        )
        # one day of grace past retention, every day up to three ahead, no gap
        assert days[0] == day - timedelta(days=31)
        assert days[-1] == day + timedelta(days=3)
        assert len(days) == (days[-1] - days[0]).days + 1
        again = await upkeep(conn, today=day, retention_days=30, ahead_days=3)
        assert again.created == again.dropped == ()
        await upkeep(conn, today=today, retention_days=30, ahead_days=3)  # restore for others


async def test_rows_in_the_default_partition_move_into_their_new_day(pool: asyncpg.Pool) -> None:
    machine = unique("EX")
    far = datetime.now(UTC).date() + timedelta(days=20)
    ts = datetime.combine(far, datetime.min.time(), tzinfo=UTC) + timedelta(hours=3)
    async with pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO readings (machine_id, ts, battery_v) VALUES ($1, $2, 27)", machine, ts
        )
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM readings_default WHERE machine_id = $1", machine
            )
            == 1
        )
        report = await upkeep(conn, today=far, retention_days=1, ahead_days=0)
        assert report.moved_from_default >= 1
        assert (
            await conn.fetchval(
                f"SELECT count(*) FROM {partition_name('readings', far)} WHERE machine_id = $1",
                machine,
            )
            == 1
        )
        assert (
            await conn.fetchval("SELECT count(*) FROM readings WHERE machine_id = $1", machine) == 1
        )
        # leave the shared schema as the other tests expect it
        await upkeep(conn, today=datetime.now(UTC).date(), retention_days=30, ahead_days=3)


def test_partition_names_sort_by_day() -> None:
    assert partition_name("readings", date(2026, 1, 2)) < partition_name(
        "readings", date(2026, 1, 10)
    )
