"""The notices job: fan events out into the outbox, then deliver what is due.

Each round (1) claims events not yet fanned out, matches the customers' subscriptions
(`kinds.wanted`), renders each notice (`payload.document`) and writes its deliveries, all in one
transaction; (2) leases due deliveries and sends them concurrently, recording each outcome:
`sent`, queued again after a jittered backoff (`retry.RetryPolicy`), or `failed` after the last
attempt or a permanent refusal. Several copies of the service share the work through
`FOR UPDATE SKIP LOCKED` (see `outbox`). A round that fails is logged and the next one runs:
this is a supervisor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

import asyncpg

from telematics.base.db import acquire, with_retry
from telematics.base.errors import StoreUnavailableError
from telematics.notices import outbox
from telematics.notices.broker import NoticeBroker
from telematics.notices.errors import DeliveryError
from telematics.notices.kinds import Channel, wanted
from telematics.notices.mail import SmtpConfig, message, send_mail
from telematics.notices.outbox import Claimed, Queued
from telematics.notices.payload import body, document
from telematics.notices.retry import RetryPolicy
from telematics.notices.webhook import WebhookSender

log = logging.getLogger(__name__)

# Of a lease, the share an attempt may take: the rest is for recording its outcome.
LEASE_SHARE_FOR_SENDING = 0.75


@dataclass(frozen=True, slots=True)
class NoticeConfig:
    """How the job runs.

    Attributes:
        worker_id: Recorded on the deliveries this copy leases.
        interval_s: Pause between rounds that found nothing to do.
        lease_s: How long a lease lasts: longer than a round's sends can take, else a slow
            round's notices are leased again and sent twice.
        batch: Events, and deliveries, taken per round.
        retry: Attempts and backoff.
    """

    worker_id: str
    interval_s: float = 1.0
    lease_s: float = 120.0
    batch: int = 50
    retry: RetryPolicy = field(default_factory=RetryPolicy)


@dataclass(slots=True)
class Channels:
    """The senders; a channel left None fails its deliveries (permanently) with why."""

    webhook: WebhookSender
    broker: NoticeBroker | None = None
    smtp: SmtpConfig | None = None
    # Messages in flight at once: each holds a thread of the default executor, shared with others.
    mail_slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(4))

    async def close(self) -> None:
        """Release the connections."""
        await self.webhook.close()
        if self.broker is not None:
            await self.broker.close()

    async def send(self, claimed: Claimed) -> None:
        """One attempt of one delivery.

        Raises:
            DeliveryError: The attempt failed.
        """
        raw = body(claimed.delivery_id, claimed.document)
        if claimed.channel is Channel.WEBHOOK:
            if claimed.secret is None:
                raise DeliveryError("the webhook has no secret", retryable=False)
            await self.webhook.send(claimed.target, claimed.secret, claimed.delivery_id, raw)
        elif claimed.channel is Channel.MQTT:
            if self.broker is None:
                raise DeliveryError("MQTT notices are not configured", retryable=False)
            await self.broker.publish(claimed.customer_id, raw)
        else:
            if self.smtp is None:
                raise DeliveryError("e-mail is not configured (TELEMATICS_SMTP_HOST)",
                                    retryable=False)  # fmt: skip
            doc = claimed.document
            mail = message(self.smtp, claimed.target, str(doc.get("title", "")),
                           str(doc.get("text", "")), claimed.delivery_id)  # fmt: skip
            async with self.mail_slots:
                await send_mail(self.smtp, mail)


async def fan_out(pool: asyncpg.Pool, limit: int = 100) -> int:
    """Fan out up to `limit` events; returns how many were taken."""
    async with acquire(pool) as conn, conn.transaction():
        events = await outbox.claim_events(conn, limit)
        if not events:
            return 0
        matches = await outbox.subscriptions_of(conn, [e.customer_id for e in events])
        queued = [
            Queued(
                event.event_id, sub.subscription_id, event.customer_id, sub.channel, event.kind,
                document(
                    event_id=event.event_id, customer_id=event.customer_id, kind=event.kind,
                    severity=event.severity, subject=event.subject,
                    occurred_at=event.occurred_at, language=sub.language, tz=sub.tz,
                ),
            )
            for event in events
            for sub in matches
            if sub.customer_id == event.customer_id
            and wanted(event.kind, event.severity, kinds=sub.kinds, min_severity=sub.min_severity)
        ]  # fmt: skip
        await outbox.queue(conn, queued, [e.event_id for e in events])
        return len(events)


async def _send(channels: Channels, claimed: Claimed, budget_s: float) -> DeliveryError | None:
    """One attempt, given up after `budget_s`; what went wrong, or None once it went out."""
    if claimed.removed:
        return DeliveryError("subscription removed", retryable=False)
    try:
        async with asyncio.timeout(budget_s):
            await channels.send(claimed)
    except DeliveryError as exc:
        return exc
    except TimeoutError:
        # Recorded before the lease ends, so no other worker sends it meanwhile.
        return DeliveryError(f"attempt outlasted {budget_s:g} s of its lease", retryable=True)
    except Exception as exc:  # a bug in one notice (say, an address smtplib cannot encode)
        log.exception("notice %d could not be sent", claimed.delivery_id)
        return DeliveryError(f"{type(exc).__name__}: {exc}", retryable=False)
    return None


async def _attempt(
    pool: asyncpg.Pool,
    channels: Channels,
    config: NoticeConfig,
    claimed: Claimed,
    stop: asyncio.Event | None,
    recording: asyncio.Semaphore,
) -> None:
    error = await _send(channels, claimed, config.lease_s * LEASE_SHARE_FOR_SENDING)
    did, attempts = claimed.delivery_id, claimed.attempts

    async def record() -> bool:
        async with acquire(pool) as conn:
            if error is None:
                return await outbox.record_sent(conn, did, attempts)
            if not error.retryable or config.retry.gives_up(attempts):
                return await outbox.record_failed(conn, did, attempts, str(error))
            delay_s = config.retry.delay_s(attempts)
            return await outbox.record_retry(conn, did, attempts, delay_s, str(error))

    try:
        async with recording:
            recorded = await with_retry(record, what="notice delivery outcome", stop=stop)
    except StoreUnavailableError:
        # Stopping with the database away: the lease runs out and the notice is sent again.
        log.warning("notice %d: outcome not recorded; it will be sent again", did)
        return
    if not recorded:
        log.warning("notice %d: lease lost before its outcome was recorded", did)
    elif error is not None:
        log.info("notice %d attempt %d failed: %s", did, attempts, error)


async def deliver_due(
    pool: asyncpg.Pool,
    channels: Channels,
    config: NoticeConfig,
    stop: asyncio.Event | None = None,
) -> int:
    """Lease due deliveries and attempt each once; returns how many were attempted."""

    async def claim() -> list[Claimed]:
        async with acquire(pool) as conn:
            return await outbox.claim_deliveries(
                conn, worker_id=config.worker_id, lease_s=config.lease_s, limit=config.batch
            )

    claimed = await with_retry(claim, what="notice deliveries", stop=stop)
    # Sends run concurrently; their outcomes are written one at a time, so that the job never
    # holds more than one connection of the jobs pool, which diagnosis and timers share.
    recording = asyncio.Semaphore(1)
    async with asyncio.TaskGroup() as tg:
        for one in claimed:
            tg.create_task(_attempt(pool, channels, config, one, stop, recording))
    return len(claimed)


async def run(
    pool: asyncpg.Pool, channels: Channels, config: NoticeConfig, stop: asyncio.Event
) -> None:
    """Fan out and deliver until `stop`; the round under way when it is set is finished."""
    try:
        while not stop.is_set():
            busy = False
            try:
                busy = await with_retry(lambda: fan_out(pool, config.batch), what="notice fan-out",
                                        stop=stop) > 0  # fmt: skip
                busy = await deliver_due(pool, channels, config, stop) > 0 or busy
            except StoreUnavailableError:
                return  # stopping with the database away
            except Exception:  # a supervisor: one bad round must not end notifications
                log.exception("notices round failed; trying again in %.1f s", config.interval_s)
            if not busy:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=config.interval_s)
    finally:
        await channels.close()
