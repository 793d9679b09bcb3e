"""The read replica: how far behind it is, and which pool a read goes to.

A streaming replica (`TELEMATICS_DATABASE_REPLICA_URL`) takes the API's reads that may be a
little behind (readings, summaries, the alarm queue, the AEMP feed); every write, and every read
that must see a write, goes to the primary. Three rules choose, in `ReadRoute.pool_for`:

* the replica is used only while its measured lag is known and under the bound: a replica that
  stops answering, or falls behind, sends reads back to the primary within one probe interval;
* a caller that wrote through this process reads from the primary for `sticky_s` after (its
  own write is there at once, on the replica only once replayed);
* a request may ask for the primary itself (`X-Read-From: primary`), for a client whose write
  went through another process behind the load balancer.

Lag is measured both ways: seconds on the replica (zero when it has replayed all it received,
else the age of the last replayed transaction) and bytes against the primary's current WAL
position (`pg_wal_lsn_diff`). Both are on `/metrics`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass

import asyncpg

from telematics.base.db import acquire
from telematics.base.errors import StoreUnavailableError
from telematics.base.metrics import Metrics

log = logging.getLogger(__name__)

READ_FROM_HEADER = "x-read-from"
"""Request header: `primary` sends this read to the primary whatever the replica's state."""

_REPLICA_LAG = """
SELECT pg_is_in_recovery() AS standby,
       pg_last_wal_replay_lsn()::text AS replayed,
       CASE WHEN pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn()
            THEN 0.0
            ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8 END AS lag_s
"""
_BYTES_BEHIND = "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::text::pg_lsn)::float8"


@dataclass(frozen=True, slots=True)
class Lag:
    """One measurement of the replica's lag; None where it could not be had."""

    seconds: float | None
    bytes: float | None


class Replica:
    """The replica's pool and its measured lag, probed every `interval_s` by `run`.

    Args:
        pool: Connections to the replica (no staging tables: `create_pool(staging=False)`).
        primary: A pool on the primary, for its WAL position.
        metrics: Where the lag is shown.
        max_lag_s: Further behind than this (or unknown), reads go to the primary.
        interval_s: How often the lag is measured.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        primary: asyncpg.Pool,
        metrics: Metrics,
        *,
        max_lag_s: float = 30.0,
        interval_s: float = 2.0,
    ) -> None:
        """Create the monitor; unusable until the first probe succeeds."""
        self.pool = pool
        self._primary = primary
        self._metrics = metrics
        self._max_lag_s = max_lag_s
        self._interval_s = interval_s
        self.lag = Lag(None, None)
        self._set_gauges()

    @property
    def usable(self) -> bool:
        """Whether reads may go to the replica now."""
        return self.lag.seconds is not None and self.lag.seconds <= self._max_lag_s

    async def probe(self) -> Lag:
        """Measure the lag once (None parts when the replica or the primary is away)."""
        seconds: float | None = None
        behind: float | None = None
        try:
            async with acquire(self.pool, timeout_s=2.0) as conn:
                row = await conn.fetchrow(_REPLICA_LAG, timeout=2.0)
            assert row is not None
            if not row["standby"]:
                log.warning("the read replica is not in recovery: promoted? reads go to it still")
            seconds = float(row["lag_s"] or 0.0)
            if row["replayed"] is not None:
                async with acquire(self._primary, timeout_s=2.0) as conn:
                    behind = await conn.fetchval(_BYTES_BEHIND, row["replayed"], timeout=2.0)
        except StoreUnavailableError as exc:
            log.warning("read replica lag unknown: %s", exc)
        self.lag = Lag(seconds, None if behind is None else max(0.0, float(behind)))
        self._set_gauges()
        return self.lag

    async def run(self, stop: asyncio.Event) -> None:
        """Probe every `interval_s` until `stop`."""
        while not stop.is_set():
            try:
                await self.probe()
            except Exception:  # a supervisor: a failed probe must not stop the service
                log.exception("probing the read replica failed")
                self.lag = Lag(None, None)
                self._set_gauges()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self._interval_s)

    def _set_gauges(self) -> None:
        seconds, behind = self.lag.seconds, self.lag.bytes
        self._metrics.replica_lag_seconds.set(-1.0 if seconds is None else seconds)
        self._metrics.replica_lag_bytes.set(-1.0 if behind is None else behind)


class ReadRoute:
    """Chooses the pool of a read: the replica's when allowed, else the primary's.

    Args:
        primary: The API's pool on the primary.
        replica: The replica, or None (all reads on the primary).
        metrics: Counts where reads went.
        sticky_s: After a caller's write, how long its reads stay on the primary.
    """

    def __init__(
        self,
        primary: asyncpg.Pool,
        replica: Replica | None,
        metrics: Metrics,
        *,
        sticky_s: float = 10.0,
    ) -> None:
        """Create the route."""
        self.primary = primary
        self.replica = replica
        self._metrics = metrics
        self._sticky_s = sticky_s
        self._wrote: dict[str, float] = {}

    def wrote(self, actor: str) -> None:
        """Record that `actor` wrote: its next reads go to the primary."""
        if self.replica is None:
            return
        now = time.monotonic()
        if len(self._wrote) > 10_000:  # bounded: forget the callers whose window has passed
            self._wrote = {a: t for a, t in self._wrote.items() if now - t < self._sticky_s}
        self._wrote[actor] = now

    def pool_for(self, actor: str, headers: Mapping[str, str]) -> asyncpg.Pool:
        """The pool a read by `actor`, with these request headers, goes to."""
        replica = self.replica
        use = replica is not None and replica.usable
        if use and headers.get(READ_FROM_HEADER, "").lower() == "primary":
            use = False
        wrote_at = self._wrote.get(actor)
        if use and wrote_at is not None and time.monotonic() - wrote_at < self._sticky_s:
            use = False
        if replica is not None:
            self._metrics.replica_reads.labels("replica" if use else "primary").inc()
        return replica.pool if use and replica is not None else self.primary
