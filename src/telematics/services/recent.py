"""The machines that reported shortly before a start, restored in the background of diagnosis.

After a restart the engine knows no machine. One that reports again is restored by its own batch
(`Diagnoser.diagnose`); one that never does (it lost power while running) must be restored too,
or its silence is never noticed. `RecentMachines` finds those that reported within the history
window and restores them a chunk at a time, which `Diagnoser.run` does only while no batch
waits: after the restart of a large fleet (220,000 machines took 200 s here) the live stream is
diagnosed at once instead of after the whole restore.
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


class RecentMachines:
    """The recently active machines still to restore, and the restore of the next chunk."""

    def __init__(self, pool: asyncpg.Pool, engine: Engine, metrics: Metrics, chunk: int) -> None:
        """Restore `chunk` machines at a time into `engine`."""
        if chunk < 1:
            raise ValueError(f"restore chunk must be at least 1, not {chunk}")
        self._pool, self._engine, self._metrics, self._chunk = pool, engine, metrics, chunk
        self._left: list[str] = []
        self._history_s = 0.0
        self._started = 0.0
        self.done = asyncio.Event()
        """Set once every machine found is restored, or cannot be (the database was away)."""

    @property
    def left(self) -> int:
        """Machines found and not restored yet."""
        return len(self._left)

    async def find(self, history_s: float) -> None:
        """Find the machines that reported within `history_s` that the engine does not know."""
        self._history_s, self._started = history_s, time.monotonic()
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
        its own machines), each from its readings up to now.
        """
        chunk = self._engine.unknown(self._left[: self._chunk])
        del self._left[: self._chunk]
        try:
            if chunk:
                async with acquire(self._pool) as conn:
                    now_ms = time.time_ns() // 1_000_000
                    await late.restore(conn, self._engine, chunk, now_ms + 1, self._history_s)
        except StoreUnavailableError:
            log.warning(
                "restoring recently active machines: the database is away; %d skipped",
                len(chunk) + len(self._left),
            )
            self._left.clear()
        self._settle()

    def _settle(self) -> None:
        self._metrics.diagnosis_restore_left.set(len(self._left))
        if not self._left and not self.done.is_set():
            log.info(
                "recently active machines restored in %.1f s", time.monotonic() - self._started
            )
            self.done.set()
