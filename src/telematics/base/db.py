"""Database pool: creation, per-connection set-up and translation of connection errors.

Every connection carries the temporary staging tables the ingest path COPYs into, created once
when the pool opens the connection rather than on each batch.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar, cast

import asyncpg

from telematics.base.errors import StoreUnavailableError
from telematics.base.sqlerrors import client_fault

log = logging.getLogger(__name__)

T = TypeVar("T")

# Errors that mean "the database is not there right now", as opposed to a bug in our SQL.
# Matched by class (which asyncpg derives from SQLSTATE), never by message text.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.SerializationError,
    asyncpg.DeadlockDetectedError,
)

_STAGING_DDL = """
CREATE TEMP TABLE IF NOT EXISTS readings_stage (
    machine_id text, ts_ms bigint,
    engine_speed_rpm float8, oil_pressure_kpa float8, coolant_temp_c float8,
    hydraulic_oil_temp_c float8, fuel_level_pct float8, battery_v float8, engine_hours float8,
    lat float8, lon float8, load_pct float8,
    dtc text, extra text
) ON COMMIT DELETE ROWS
"""


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.execute(_STAGING_DDL)


async def create_pool(
    dsn: str, *, min_size: int = 1, max_size: int = 4, timeout_s: float = 30.0
) -> asyncpg.Pool:
    """Open a connection pool.

    Raises:
        StoreUnavailableError: The database could not be reached within `timeout_s`.
    """
    try:
        pool = await asyncpg.create_pool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            timeout=timeout_s,
            command_timeout=timeout_s,
            init=_init_connection,
        )
    except TRANSIENT_ERRORS as exc:
        raise StoreUnavailableError(f"cannot connect to the database: {exc}") from exc
    return pool


@asynccontextmanager
async def acquire(pool: asyncpg.Pool, timeout_s: float = 30.0) -> AsyncIterator[asyncpg.Connection]:
    """Borrow a connection, translating connection failures into `StoreUnavailableError`.

    Errors caused by the values of a statement (out of range, NUL in text, a foreign key
    naming nothing, a check broken) become the errors of `sqlerrors` instead.
    """
    try:
        proxy = await pool.acquire(timeout=timeout_s)
    except TRANSIENT_ERRORS as exc:
        raise StoreUnavailableError(f"database unavailable: {exc}") from exc
    try:
        # The pool hands out a proxy that forwards every Connection method.
        yield cast("asyncpg.Connection", proxy)
    except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        # Values the database cannot hold are the sender's fault, not an outage (sqlerrors).
        fault = client_fault(exc)
        if fault is not None:
            raise fault from exc
        if isinstance(exc, TRANSIENT_ERRORS):
            raise StoreUnavailableError(f"database unavailable: {exc}") from exc
        raise
    except TRANSIENT_ERRORS as exc:
        raise StoreUnavailableError(f"database unavailable: {exc}") from exc
    finally:
        await pool.release(proxy)


async def with_retry(
    operation: Callable[[], Awaitable[T]],
    *,
    what: str,
    stop: asyncio.Event | None = None,
    initial_delay_s: float = 0.2,
    max_delay_s: float = 5.0,
) -> T:
    """Run `operation` until it succeeds, backing off while the database is unavailable.

    Only `StoreUnavailableError` is retried; any other error is a bug and propagates.

    Raises:
        StoreUnavailableError: `stop` was set while the database was still unavailable.
    """
    delay_s = initial_delay_s
    while True:
        try:
            return await operation()
        except StoreUnavailableError as exc:
            if stop is not None and stop.is_set():
                raise
            log.warning("%s failed, retrying in %.1f s: %s", what, delay_s, exc)
            await asyncio.sleep(delay_s)
            delay_s = min(delay_s * 2, max_delay_s)
