"""The maintenance job: evaluates every machine's plan items now and then, keeping the fleet's
status table (`maintenance_status`, which the due list reads) and the status changes
(`maintenance_alerts`) current.

Machines are taken a page at a time, each page in a transaction of its own. Several copies may
run at once: their writes are idempotent (see `status_store`), so a second copy costs work, not
correctness. Started by the composition root with the jobs pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime

import asyncpg

from telematics.base.config import Settings
from telematics.base.db import acquire, with_retry
from telematics.base.errors import StoreUnavailableError
from telematics.maintenance import status_store
from telematics.maintenance.evaluation import Tuning, plan_book, refresh

log = logging.getLogger(__name__)

PAGE = 200


async def run_once(
    pool: asyncpg.Pool, settings: Settings, *, now: datetime | None = None, page: int = PAGE
) -> int:
    """Evaluate every machine once; returns how many alerts are new."""
    at = now or datetime.now(UTC)
    tuning = Tuning.of(settings)
    async with acquire(pool) as conn:
        book = await plan_book(conn)
    after, new = "", 0
    while True:
        async with acquire(pool) as conn, conn.transaction():
            machines = await status_store.machines_after(conn, after, page)
            if not machines:
                return new
            new += await refresh(conn, machines, book, tuning, at)
        after = machines[-1].machine_id


async def run(pool: asyncpg.Pool, settings: Settings, stop: asyncio.Event) -> None:
    """Evaluate the fleet every `maintenance_check_interval_s` until `stop`."""
    interval_s = settings.maintenance_check_interval_s
    while not stop.is_set():
        try:
            new = await with_retry(
                lambda: run_once(pool, settings), what="maintenance job", stop=stop
            )
            if new:
                log.info("maintenance: %d plan items reached a new status", new)
        except StoreUnavailableError:
            return  # stopping with the database away
        except Exception:  # a supervisor: one failed round must not stop the service
            log.exception("maintenance job failed; trying again in %.0f s", interval_s)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval_s)
