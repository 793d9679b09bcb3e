"""The SQL of the outbox: events claimed for fan-out, deliveries claimed, sent, retried, failed.

Both claims use `FOR UPDATE SKIP LOCKED`, so any number of service copies share the work. An
event is fanned out in one transaction with its deliveries (the unique key (event,
subscription) absorbs a repeat). A delivery is claimed by moving it to `sending` with a lease
and one more attempt; `attempts` is the lease's fencing token: an outcome is recorded only if
the row is still `sending` under that count, so a worker whose lease ran out and was taken over
cannot overwrite its successor's result. A `sent` row is never claimed again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from telematics.notices.kinds import Channel, Kind, Language

MAX_ERROR_CHARS = 500


@dataclass(frozen=True, slots=True)
class PendingEvent:
    """An event not yet fanned out."""

    event_id: int
    customer_id: str
    kind: Kind
    severity: str | None
    subject: dict[str, Any]
    occurred_at: datetime


@dataclass(frozen=True, slots=True)
class Match:
    """A subscription as fan-out sees it."""

    subscription_id: int
    customer_id: str
    channel: Channel
    kinds: tuple[str, ...]
    min_severity: str
    language: Language
    tz: str


@dataclass(frozen=True, slots=True)
class Queued:
    """A delivery to write: the rendered document for one subscription."""

    event_id: int
    subscription_id: int
    customer_id: str
    channel: Channel
    kind: Kind
    document: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Claimed:
    """A delivery this worker holds a lease on, with where it goes (as the subscription now is)."""

    delivery_id: int
    customer_id: str
    channel: Channel
    target: str
    secret: str | None
    document: dict[str, Any]
    attempts: int
    removed: bool


@dataclass(frozen=True, slots=True)
class Delivery:
    """A row of the delivery log."""

    delivery_id: int
    event_id: int
    subscription_id: int
    customer_id: str
    channel: Channel
    kind: str
    status: str
    attempts: int
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    next_attempt_at: datetime | None
    sent_at: datetime | None
    title: str


async def claim_events(conn: asyncpg.Connection, limit: int) -> list[PendingEvent]:
    """Lock up to `limit` events not yet fanned out (call inside a transaction)."""
    rows = await conn.fetch(
        "SELECT event_id, customer_id, kind, severity, subject::text AS subject, occurred_at "
        "FROM notice_events WHERE fanned_out_at IS NULL ORDER BY event_id LIMIT $1 "
        "FOR UPDATE SKIP LOCKED",
        limit,
    )
    return [
        PendingEvent(r["event_id"], r["customer_id"], Kind(r["kind"]), r["severity"],
                     _object(orjson.loads(r["subject"])), r["occurred_at"])
        for r in rows
    ]  # fmt: skip


def _object(subject: object) -> dict[str, Any]:
    """The subject as an object: an insert that wrote another JSON value keeps it under `value`."""
    return subject if isinstance(subject, dict) else {"value": subject}


async def subscriptions_of(conn: asyncpg.Connection, customer_ids: Sequence[str]) -> list[Match]:
    """The enabled subscriptions of these customers."""
    rows = await conn.fetch(
        "SELECT subscription_id, customer_id, channel, kinds, min_severity, language, tz "
        "FROM notice_subscriptions WHERE customer_id = ANY($1::text[]) "
        "AND removed_at IS NULL AND enabled ORDER BY subscription_id",
        list(set(customer_ids)),
    )
    return [
        Match(r["subscription_id"], r["customer_id"], Channel(r["channel"]), tuple(r["kinds"]),
              r["min_severity"], Language(r["language"]), r["tz"])
        for r in rows
    ]  # fmt: skip


async def queue(
    conn: asyncpg.Connection, deliveries: Sequence[Queued], event_ids: Sequence[int]
) -> None:
    """Write the deliveries (a repeat is absorbed) and mark the events fanned out."""
    if deliveries:
        await conn.executemany(
            "INSERT INTO notice_deliveries "
            "(event_id, subscription_id, customer_id, channel, kind, payload) "
            "VALUES ($1, $2, $3, $4, $5, $6::jsonb) ON CONFLICT (event_id, subscription_id) "
            "DO NOTHING",
            [
                (d.event_id, d.subscription_id, d.customer_id, d.channel.value, d.kind.value,
                 orjson.dumps(d.document).decode())
                for d in deliveries
            ],
        )  # fmt: skip
    await conn.execute(
        "UPDATE notice_events SET fanned_out_at = now() WHERE event_id = ANY($1::bigint[])",
        list(event_ids),
    )


async def claim_deliveries(
    conn: asyncpg.Connection, *, worker_id: str, lease_s: float, limit: int
) -> list[Claimed]:
    """Lease up to `limit` due deliveries.

    Due are queued ones whose time has come, and `sending` ones whose lease ran out (their
    worker died mid-send, or lost the database before recording the outcome).
    """
    rows = await conn.fetch(
        """
        WITH due AS (
            SELECT delivery_id FROM notice_deliveries
            WHERE (status = 'queued' AND next_attempt_at <= now())
               OR (status = 'sending' AND lease_until < now())
            ORDER BY next_attempt_at, delivery_id
            LIMIT $3
            FOR UPDATE SKIP LOCKED
        )
        UPDATE notice_deliveries d SET status = 'sending', attempts = d.attempts + 1,
            lease_until = now() + make_interval(secs => $2), claimed_by = $1, updated_at = now()
        FROM due, notice_subscriptions s
        WHERE d.delivery_id = due.delivery_id AND s.subscription_id = d.subscription_id
        RETURNING d.delivery_id, d.customer_id, d.channel, s.target, s.secret,
            d.payload::text AS payload, d.attempts,
            s.removed_at IS NOT NULL AS removed
        """,
        worker_id,
        lease_s,
        limit,
    )
    return [
        Claimed(r["delivery_id"], r["customer_id"], Channel(r["channel"]), r["target"],
                r["secret"], orjson.loads(r["payload"]), r["attempts"], r["removed"])
        for r in rows
    ]  # fmt: skip


def _error(text: str) -> str:
    clean = "".join(ch if ch.isprintable() else " " for ch in text)
    return clean[:MAX_ERROR_CHARS]


async def record_sent(conn: asyncpg.Connection, delivery_id: int, attempts: int) -> bool:
    """Record a success; False if the lease was lost (another worker holds the row)."""
    done = await conn.execute(
        "UPDATE notice_deliveries SET status = 'sent', sent_at = now(), lease_until = NULL, "
        "last_error = NULL, updated_at = now() "
        "WHERE delivery_id = $1 AND status = 'sending' AND attempts = $2",
        delivery_id,
        attempts,
    )
    return done != "UPDATE 0"


async def record_retry(
    conn: asyncpg.Connection, delivery_id: int, attempts: int, delay_s: float, error: str
) -> bool:
    """Queue the delivery again in `delay_s`; False if the lease was lost."""
    done = await conn.execute(
        "UPDATE notice_deliveries SET status = 'queued', lease_until = NULL, last_error = $3, "
        "next_attempt_at = now() + make_interval(secs => $4), updated_at = now() "
        "WHERE delivery_id = $1 AND status = 'sending' AND attempts = $2",
        delivery_id,
        attempts,
        _error(error),
        delay_s,
    )
    return done != "UPDATE 0"


async def record_failed(
    conn: asyncpg.Connection, delivery_id: int, attempts: int, error: str
) -> bool:
    """Give the delivery up; False if the lease was lost."""
    done = await conn.execute(
        "UPDATE notice_deliveries SET status = 'failed', lease_until = NULL, last_error = $3, "
        "updated_at = now() WHERE delivery_id = $1 AND status = 'sending' AND attempts = $2",
        delivery_id,
        attempts,
        _error(error),
    )
    return done != "UPDATE 0"


async def list_deliveries(
    conn: asyncpg.Connection,
    *,
    customer_id: str | None,
    status: str | None,
    kind: str | None,
    before: int | None,
    limit: int,
) -> list[Delivery]:
    """The delivery log, newest first, keyset-paged by `before` (a delivery id)."""
    rows = await conn.fetch(
        """
        SELECT delivery_id, event_id, subscription_id, customer_id, channel, kind, status,
            attempts, last_error, created_at, updated_at, sent_at,
            CASE WHEN status = 'queued' THEN next_attempt_at END AS next_attempt_at,
            payload->>'title' AS title
        FROM notice_deliveries
        WHERE ($1::text IS NULL OR customer_id = $1) AND ($2::text IS NULL OR status = $2)
          AND ($3::text IS NULL OR kind = $3) AND ($4::bigint IS NULL OR delivery_id < $4)
        ORDER BY delivery_id DESC LIMIT $5
        """,
        customer_id,
        status,
        kind,
        before,
        limit,
    )
    return [
        Delivery(r["delivery_id"], r["event_id"], r["subscription_id"], r["customer_id"],
                 Channel(r["channel"]), r["kind"], r["status"], r["attempts"], r["last_error"],
                 r["created_at"], r["updated_at"], r["next_attempt_at"], r["sent_at"],
                 r["title"] or "")
        for r in rows
    ]  # fmt: skip
