"""The machines that reported shortly before a start, restored in the background of diagnosis.

After a restart the engine knows no machine. One that reports again is restored by its own batch
(`Diagnoser.diagnose`); one that never does (it lost power while running) must be restored too,
or its silence is never noticed. `RecentMachines` finds those that reported within the history
window and restores them a chunk at a time, which `Diagnoser.run` does only while no batch
waits: after the restart of a large fleet (220,000 machines took 200 s here) the live stream is
diagnosed at once instead of after the whole restore.

Every chunk is restored as of the moment the machines were found (their readings up to then,
within the history window): one that reported since was restored by its own batch, so the
restore does not drift with the time it takes while live traffic holds it back. A chunk the
database could not serve stays queued and is tried again after `RETRY_S`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime, timedelta

import asyncpg

from diagnosis.engine import Engine
from telematics.base.db import acquire
from telematics.base.errors import StoreUnavailableError
from telematics.base.metrics import Metrics
from telematics.services import late
from telematics.store import readings as readings_store

log = logging.getLogger(__name__)

RETRY_S = 5.0
"""How long a chunk waits after the database failed it."""


class RecentMachines:
    """The recently active machines still to restore, and the restore of the next chunk."""

    def __init__(self, pool: asyncpg.Pool, engine: Engine, metrics: Metrics, chunk: int) -> None:
        """Restore `chunk` machines at a time into `engine`."""
        if chunk < 1:
            raise ValueError(f"restore chunk must be at least 1, not {chunk}")
        self._pool, self._engine, self._metrics, self._chunk = pool, engine, metrics, chunk
        self._left: list[str] = []
        self._history_s = 0.0
        self._found_ms = 0
        self._started = 0.0
        self._retry_at = 0.0
        self.done = asyncio.Event()
        """Set once every machine found is restored, or cannot be (the database was away)."""

    @property
    def left(self) -> int:
        """Machines found and not restored yet."""
        return len(self._left)

    def due(self) -> bool:
        """Whether a chunk is waiting and may be tried now (not just after a failure)."""
        return bool(self._left) and time.monotonic() >= self._retry_at

    async def find(self, history_s: float) -> None:
        """Find the machines that reported within `history_s` that the engine does not know."""
        self._history_s, self._started = history_s, time.monotonic()
        self._found_ms = time.time_ns() // 1_000_000 + 1
        since = datetime.now(UTC) - timedelta(seconds=history_s)
        try:
            async with acquire(self._pool) as conn:
                recent = await readings_store.reported_since(conn, since)
        except StoreUnavailableError:
            log.warning("restoring recently active machines: the database is away; skipped")
            recent = []
        self._left = self._engine.unknown(recent)
        self._settle()

    async def restore_some(self) -> None:
        """Restore the next chunk of them still unknown (a batch that came meanwhile restored
        its own machines), as of when they were found.
        """
        chunk = self._engine.unknown(self._left[: self._chunk])
        try:
            if chunk:
                async with acquire(self._pool) as conn:
                    await late.restore(conn, self._engine, chunk, self._found_ms, self._history_s)
        except StoreUnavailableError:
            self._retry_at = time.monotonic() + RETRY_S
            log.warning(
                "restoring recently active machines: the database is away; %d left, again in "
                "%.0f s",
                len(self._left),
                RETRY_S,
            )
            return
        del self._left[: self._chunk]
        self._settle()

    def _settle(self) -> None:
        self._metrics.diagnosis_restore_left.set(len(self._left))
        if not self._left and not self.done.is_set():
            log.info(
                "recently active machines restored in %.1f s", time.monotonic() - self._started
            )
            self.done.set()
