"""The SLA timer runner: fires due timers exactly once, however many copies run.

Timers live in `sla_timers`. Each round claims due ones with `FOR UPDATE SKIP LOCKED`, judges
them on their orders as they now stand (`dispatch.sla.judge`), and records the verdict in the
same transaction: a second runner skips the locked rows, a runner that dies mid-round leaves them
pending for the next, and a timer that came due while every runner was down fires at the first
round after a restart, judged on the order's recorded times, as if punctual. A timer whose
verdict calls for the monitoring desk makes its task (`store.desk.make_task`) in that same
transaction, so each timer makes one task, once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime

import asyncpg

from dispatch.sla import Verdict, judge
from telematics.base.db import acquire, with_retry
from telematics.base.errors import StoreUnavailableError
from telematics.base.metrics import Metrics
from telematics.store import desk
from telematics.store import timers as timer_store
from telematics.store.timers import FiredTimer

log = logging.getLogger(__name__)


async def fire_due(
    pool: asyncpg.Pool,
    *,
    worker_id: str,
    now: datetime | None = None,
    limit: int = 200,
    notify_line: int | None = None,
) -> list[FiredTimer]:
    """Fire every due timer this runner can claim, making their desk tasks; returns what fired.

    `notify_line`: the support line an escalation task hands the order's alarm to (None: none).
    """
    at = now or datetime.now(UTC)
    fired: list[FiredTimer] = []
    async with acquire(pool) as conn, conn.transaction():
        for timer_id, spec, stored in await timer_store.claim_due(conn, at, limit):
            verdict = judge(spec, stored.order, at)
            detail = f"{spec.kind} of order {stored.order_id} ({stored.order.state}): {verdict}"
            await timer_store.record_verdict(conn, timer_id, verdict, at, worker_id, detail)
            await desk.make_task(conn, timer_id, spec, stored, verdict, at, notify_line=notify_line)
            fired.append(
                FiredTimer(timer_id, stored.order_id, spec.kind, spec.fires_at, at, verdict, detail)
            )
    return fired


async def run(
    pool: asyncpg.Pool,
    metrics: Metrics,
    stop: asyncio.Event,
    *,
    worker_id: str,
    interval_s: float = 5.0,
    notify_line: int | None = None,
) -> None:
    """Fire due timers every `interval_s` until `stop`."""
    while not stop.is_set():
        try:
            fired = await with_retry(
                lambda: fire_due(pool, worker_id=worker_id, notify_line=notify_line),
                what="SLA timers",
                stop=stop,
            )
        except StoreUnavailableError:
            return
        for timer in fired:
            metrics.sla_timers.labels(timer.kind.value, timer.verdict.value).inc()
            if timer.verdict is Verdict.BREACH:
                log.warning("SLA breach: %s", timer.detail)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval_s)
