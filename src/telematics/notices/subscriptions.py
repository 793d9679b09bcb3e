"""The SQL of subscriptions: a customer's set, read and replaced as a whole.

A subscription is one channel (webhook URL and secret, e-mail address, or the customer's MQTT
topic) with its filters. Replacing the set keeps the rows whose `subscription_id` is named
(updated in place; a webhook keeps its secret unless a new one is given), adds the new ones and
marks the others removed; a removed subscription's queued deliveries are failed, not sent. Rows
are never deleted, so the delivery log keeps its references. Secrets never leave this module
except towards the delivery job (`outbox`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from telematics.base.errors import NotFoundError, RefusedError
from telematics.notices.kinds import Channel, Language


@dataclass(frozen=True, slots=True)
class SubscriptionSpec:
    """A subscription as a client asks for it.

    Attributes:
        subscription_id: The row to update, None for a new one.
        channel: How notices travel.
        target: Webhook URL or e-mail address ("" for MQTT).
        secret: Webhook HMAC key; None keeps the stored one.
        kinds: Event kinds wanted; empty for all.
        min_severity: Alarms below this are not sent.
        language: Language of the texts.
        tz: IANA zone the texts' times are shown in.
        enabled: Paused subscriptions match nothing.
    """

    subscription_id: int | None
    channel: Channel
    target: str
    secret: str | None
    kinds: tuple[str, ...]
    min_severity: str
    language: Language
    tz: str
    enabled: bool


@dataclass(frozen=True, slots=True)
class Subscription:
    """A stored subscription, without its secret."""

    subscription_id: int
    customer_id: str
    channel: Channel
    target: str
    has_secret: bool
    kinds: tuple[str, ...]
    min_severity: str
    language: Language
    tz: str
    enabled: bool
    created_at: datetime
    updated_at: datetime


_COLUMNS = (
    "subscription_id, customer_id, channel, target, secret IS NOT NULL AS has_secret, kinds, "
    "min_severity, language, tz, enabled, created_at, updated_at"
)


def _subscription(row: asyncpg.Record) -> Subscription:
    return Subscription(
        subscription_id=row["subscription_id"],
        customer_id=row["customer_id"],
        channel=Channel(row["channel"]),
        target=row["target"],
        has_secret=row["has_secret"],
        kinds=tuple(row["kinds"]),
        min_severity=row["min_severity"],
        language=Language(row["language"]),
        tz=row["tz"],
        enabled=row["enabled"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


async def list_subscriptions(conn: asyncpg.Connection, customer_id: str) -> list[Subscription]:
    """The customer's current subscriptions, oldest first."""
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM notice_subscriptions "
        "WHERE customer_id = $1 AND removed_at IS NULL ORDER BY subscription_id",
        customer_id,
    )
    return [_subscription(r) for r in rows]


async def _update(
    conn: asyncpg.Connection, customer_id: str, spec: SubscriptionSpec, had_secret: bool
) -> None:
    if spec.channel is Channel.WEBHOOK and spec.secret is None and not had_secret:
        raise RefusedError(f"subscription {spec.subscription_id}: a webhook needs a secret")
    await conn.execute(
        """
        UPDATE notice_subscriptions SET channel = $3, target = $4,
            secret = CASE WHEN $3 <> 'webhook' THEN NULL ELSE COALESCE($5, secret) END,
            kinds = $6, min_severity = $7, language = $8, tz = $9, enabled = $10,
            updated_at = now()
        WHERE subscription_id = $1 AND customer_id = $2
        """,
        spec.subscription_id,
        customer_id,
        spec.channel.value,
        spec.target,
        spec.secret,
        list(spec.kinds),
        spec.min_severity,
        spec.language.value,
        spec.tz,
        spec.enabled,
    )


async def _insert(conn: asyncpg.Connection, customer_id: str, spec: SubscriptionSpec) -> None:
    if spec.channel is Channel.WEBHOOK and spec.secret is None:
        raise RefusedError("a new webhook subscription needs a secret")
    await conn.execute(
        """
        INSERT INTO notice_subscriptions
            (customer_id, channel, target, secret, kinds, min_severity, language, tz, enabled)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
        """,
        customer_id,
        spec.channel.value,
        spec.target,
        spec.secret if spec.channel is Channel.WEBHOOK else None,
        list(spec.kinds),
        spec.min_severity,
        spec.language.value,
        spec.tz,
        spec.enabled,
    )


async def replace_subscriptions(
    conn: asyncpg.Connection, customer_id: str, specs: Sequence[SubscriptionSpec]
) -> list[Subscription]:
    """Make `specs` the customer's set of subscriptions (one transaction); returns the new set.

    Raises:
        NotFoundError: A named `subscription_id` is not one of the customer's current ones.
        RefusedError: A webhook would have no secret, or an id is named twice.
    """
    async with conn.transaction():
        # Two PUTs for one customer at once: the second waits and replaces the first's result.
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('notices:' || $1))", customer_id)
        current = {
            r["subscription_id"]: r["has_secret"]
            for r in await conn.fetch(
                "SELECT subscription_id, secret IS NOT NULL AS has_secret "
                "FROM notice_subscriptions WHERE customer_id = $1 AND removed_at IS NULL",
                customer_id,
            )
        }
        kept: set[int] = set()
        for spec in specs:
            if spec.subscription_id is None:
                await _insert(conn, customer_id, spec)
                continue
            if spec.subscription_id in kept:
                raise RefusedError(f"subscription {spec.subscription_id} is named twice")
            if spec.subscription_id not in current:
                raise NotFoundError("subscription", str(spec.subscription_id))
            kept.add(spec.subscription_id)
            await _update(conn, customer_id, spec, current[spec.subscription_id])
        removed = [sid for sid in current if sid not in kept]
        if removed:
            await conn.execute(
                "UPDATE notice_subscriptions SET removed_at = now(), updated_at = now() "
                "WHERE subscription_id = ANY($1::bigint[])",
                removed,
            )
            await conn.execute(
                "UPDATE notice_deliveries SET status = 'failed', lease_until = NULL, "
                "last_error = 'subscription removed', updated_at = now() "
                "WHERE subscription_id = ANY($1::bigint[]) AND status = 'queued'",
                removed,
            )
        return await list_subscriptions(conn, customer_id)
