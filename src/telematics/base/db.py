"""Database pool: creation, per-connection set-up and translation of connection errors.

Every connection carries the temporary staging tables the ingest path COPYs into, created once
when the pool opens the connection rather than on each batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar, cast

import asyncpg

from telematics.base.errors import CommandTimeoutError, StoreUnavailableError
from telematics.base.sqlerrors import client_fault

log = logging.getLogger(__name__)

T = TypeVar("T")

# Errors while connecting that mean "the database is not there right now": retried.
# Matched by class (which asyncpg derives from SQLSTATE), never by message text.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
)


class Failure(enum.Enum):
    """What an error on a database operation says about retrying it."""

    TRANSIENT = "transient"
    """The database is away, busy, restarting or read-only: the same work will succeed later."""
    TOO_LARGE = "too_large"
    """The work ran past the command timeout or a server limit: smaller pieces may pass."""
    PERMANENT = "permanent"
    """The database refuses this work (data, constraint, a bug): retrying cannot help."""


# SQLSTATE classes: 08 connection exception, 40 transaction rollback (serialization failure,
# deadlock), 53 insufficient resources (disk full, out of memory, too many connections),
# 57 operator intervention (shutdown, cannot connect now), 58 system error (I/O).
_TRANSIENT_CLASSES = frozenset({"08", "40", "53", "57", "58"})
# 25006 read-only transaction: a replica promoted away from us, or a primary demoted after
# failover; a new connection reaches the new primary. 55P03 lock not available.
_TRANSIENT_STATES = frozenset({"25006", "55P03"})
# 57014 query canceled (statement_timeout); class 54 program limit exceeded.
_TOO_LARGE_STATES = frozenset({"57014"})
_TOO_LARGE_CLASSES = frozenset({"54"})
READ_ONLY_SQLSTATE = "25006"


def classify(exc: BaseException, *, connection_closed: bool = False) -> Failure:
    """Classify an error raised by a database operation, by SQLSTATE class and error type.

    Args:
        exc: The error.
        connection_closed: Whether the connection the operation ran on is closed now. A client
            error (asyncpg's InterfaceError) on a closed connection is the connection's loss;
            on an open one it is a problem with the work itself.
    """
    if isinstance(exc, asyncpg.PostgresError):
        state = exc.sqlstate or ""
        if state in _TOO_LARGE_STATES or state[:2] in _TOO_LARGE_CLASSES:
            return Failure.TOO_LARGE
        if state[:2] in _TRANSIENT_CLASSES or state in _TRANSIENT_STATES:
            return Failure.TRANSIENT
        return Failure.TRANSIENT if connection_closed else Failure.PERMANENT
    if isinstance(exc, TimeoutError):  # asyncpg's command_timeout (before OSError: a subclass)
        return Failure.TOO_LARGE
    if isinstance(exc, OSError) or connection_closed:
        return Failure.TRANSIENT
    return Failure.PERMANENT


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
    dsn: str,
    *,
    min_size: int = 1,
    max_size: int = 4,
    timeout_s: float = 30.0,
    staging: bool = True,
) -> asyncpg.Pool:
    """Open a connection pool.

    `staging=False` for a read replica: a hot standby refuses even temporary tables.

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
            init=_init_connection if staging else None,
        )
    except TRANSIENT_ERRORS as exc:
        raise StoreUnavailableError(f"cannot connect to the database: {exc}") from exc
    return pool


@asynccontextmanager
async def acquire(pool: asyncpg.Pool, timeout_s: float = 30.0) -> AsyncIterator[asyncpg.Connection]:
    """Borrow a connection; errors of the work done on it are translated by `classify`.

    Errors caused by the values of a statement (out of range, NUL in text, a foreign key
    naming nothing, a check broken) become the errors of `sqlerrors`.

    Raises:
        StoreUnavailableError: No connection could be had, or the work failed transiently.
        CommandTimeoutError: The work ran past the command timeout or a server limit.
    """
    try:
        proxy = await pool.acquire(timeout=timeout_s)
    except TRANSIENT_ERRORS as exc:
        raise StoreUnavailableError(f"database unavailable: {exc}") from exc
    # The pool hands out a proxy that forwards every Connection method.
    conn = cast("asyncpg.Connection", proxy)
    try:
        yield conn
    except Exception as exc:
        failure = classify(exc, connection_closed=_is_closed(conn))
        if failure is Failure.TOO_LARGE:
            raise CommandTimeoutError(f"{type(exc).__name__}: {exc}") from exc
        if failure is Failure.TRANSIENT:
            if getattr(exc, "sqlstate", None) == READ_ONLY_SQLSTATE:
                with contextlib.suppress(asyncpg.InterfaceError):
                    conn.terminate()  # the pool reconnects, to wherever the primary is now
            raise StoreUnavailableError(f"database unavailable: {exc}") from exc
        if isinstance(exc, asyncpg.PostgresError | asyncpg.InterfaceError):
            # Values the database cannot hold are the sender's fault, not an outage.
            fault = client_fault(exc)
            if fault is not None:
                raise fault from exc
        raise
    finally:
        await _release(pool, proxy)


def _is_closed(conn: asyncpg.Connection) -> bool:
    try:
        return conn.is_closed()
    except asyncpg.InterfaceError:
        return True  # the pool already took back a connection it saw die


async def _release(pool: asyncpg.Pool, proxy: object) -> None:
    # Returning a connection resets it; if that fails the connection is broken, and the work
    # done on it stands (committed or not, that is settled): drop it, never fail the caller.
    try:
        await pool.release(proxy)  # type: ignore[arg-type]
    except Exception as exc:  # noqa: BLE001 - whatever broke it, the connection is done for
        log.warning("dropping a connection that failed to return to the pool: %r", exc)
        with contextlib.suppress(Exception):
            cast("asyncpg.Connection", proxy).terminate()


async def with_retry(
    operation: Callable[[], Awaitable[T]],
    *,
    what: str,
    stop: asyncio.Event | None = None,
    initial_delay_s: float = 0.2,
    max_delay_s: float = 5.0,
    on_retry: Callable[[], None] | None = None,
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
            if on_retry is not None:
                on_retry()
            if stop is None:
                await asyncio.sleep(delay_s)
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=delay_s)
            delay_s = min(delay_s * 2, max_delay_s)
