"""Daily partitions of the time-series tables, when TimescaleDB is not there to do it.

Without TimescaleDB, `readings` and `engineer_positions` are range-partitioned by day. This module
creates each day's partition ahead of time and drops those past retention. A row that arrives
before its partition exists lands in the default partition and is moved into the day's partition
when that one is created, so nothing is lost to a late upkeep run; rows past retention leave the
default partition as they leave the dropped ones. With TimescaleDB, chunks,
compression and retention are the extension's job and this module only sets the retention policy.

Upkeep is serialised across processes by a transaction-level advisory lock.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import asyncpg

log = logging.getLogger(__name__)

PARTITIONED_TABLES = ("readings", "engineer_positions")
_UPKEEP_LOCK_KEY = 0x7E1E_0002


@dataclass(frozen=True, slots=True)
class UpkeepReport:
    """What one upkeep run changed."""

    created: tuple[str, ...]
    dropped: tuple[str, ...]
    moved_from_default: int
    expired_in_default: int = 0


def partition_name(table: str, day: date) -> str:
    """Name of `table`'s partition for `day`, e.g. `readings_p20261126`."""
    return f"{table}_p{day:%Y%m%d}"


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


async def uses_timescale(conn: asyncpg.Connection) -> bool:
    """Whether the TimescaleDB extension is installed in this database."""
    return bool(
        await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = $1)", "timescaledb"
        )
    )


async def _existing_days(conn: asyncpg.Connection, table: str) -> dict[date, str]:
    rows = await conn.fetch(
        """SELECT c.relname FROM pg_inherits i
           JOIN pg_class c ON c.oid = i.inhrelid
           JOIN pg_class p ON p.oid = i.inhparent
           WHERE p.relname = $1 AND c.relname ~ '_p[0-9]{8}$'""",
        table,
    )
    days: dict[date, str] = {}
    for row in rows:
        name: str = row["relname"]
        days[datetime.strptime(name[-8:], "%Y%m%d").replace(tzinfo=UTC).date()] = name
    return days


async def _create_partition(conn: asyncpg.Connection, table: str, day: date) -> int:
    """Create one day's partition; returns how many rows it took over from the default."""
    name = partition_name(table, day)
    start, end = _day_start(day), _day_start(day + timedelta(days=1))
    default = f"{table}_default"
    waiting = await conn.fetchval(
        f"SELECT EXISTS (SELECT 1 FROM {default} WHERE ts >= $1 AND ts < $2)", start, end
    )
    bounds = f"FROM ('{start.isoformat()}') TO ('{end.isoformat()}')"
    if not waiting:
        await conn.execute(f"CREATE TABLE {name} PARTITION OF {table} FOR VALUES {bounds}")
        return 0
    # Rows for this day sit in the default partition: PostgreSQL would refuse the new partition,
    # so build it detached, move the rows in, then attach it.
    await conn.execute(f"CREATE TABLE {name} (LIKE {table} INCLUDING DEFAULTS INCLUDING INDEXES)")
    status = await conn.execute(
        f"""WITH moved AS (DELETE FROM {default} WHERE ts >= $1 AND ts < $2 RETURNING *)
            INSERT INTO {name} SELECT * FROM moved""",
        start,
        end,
    )
    await conn.execute(f"ALTER TABLE {table} ATTACH PARTITION {name} FOR VALUES {bounds}")
    return _row_count(status)


def _row_count(status: str) -> int:
    return int(status.rsplit(" ", 1)[-1])


async def upkeep(
    conn: asyncpg.Connection, *, today: date, retention_days: int, ahead_days: int
) -> UpkeepReport:
    """Create missing daily partitions from retention start to `ahead_days` ahead; drop old ones."""
    created: list[str] = []
    dropped: list[str] = []
    moved = expired = 0
    first_day = today - timedelta(days=retention_days)
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _UPKEEP_LOCK_KEY)
        for table in PARTITIONED_TABLES:
            # Inserts wait while this table's partitions change: one landing in the default
            # partition between our look and CREATE or ATTACH would make PostgreSQL refuse the
            # new partition. SHARE ROW EXCLUSIVE blocks writers, not readers; taken on the
            # parent first, the order every insert takes its locks in, so no deadlock.
            await conn.execute(f"LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE")
            existing = await _existing_days(conn, table)
            for offset in range((today + timedelta(days=ahead_days) - first_day).days + 1):
                day = first_day + timedelta(days=offset)
                if day not in existing:
                    moved += await _create_partition(conn, table, day)
                    created.append(partition_name(table, day))
            cutoff = first_day - timedelta(days=1)  # one day of grace past retention
            for day, name in sorted(existing.items()):
                if day < cutoff:
                    await conn.execute(f"DROP TABLE {name}")
                    dropped.append(name)
            expired += _row_count(
                await conn.execute(f"DELETE FROM {table}_default WHERE ts < $1", _day_start(cutoff))
            )
    if created or dropped or expired:
        log.info(
            "partitions: %d created, %d dropped, %d rows moved from default, %d expired in it",
            len(created),
            len(dropped),
            moved,
            expired,
        )
    return UpkeepReport(tuple(created), tuple(dropped), moved, expired)


async def set_timescale_retention(conn: asyncpg.Connection, retention_days: int) -> None:
    """Point TimescaleDB's retention policy at the configured retention."""
    for table in PARTITIONED_TABLES:
        await conn.execute("SELECT remove_retention_policy($1, if_exists => true)", table)
        await conn.execute(
            "SELECT add_retention_policy($1, $2::interval)", table, f"{retention_days + 1} days"
        )
