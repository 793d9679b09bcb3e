"""HTTP bodies of the notifications API: subscriptions in and out, the delivery log out.

Secrets are write-only: accepted in, never in any answer (`has_secret` says whether one is set).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal, Self

from pydantic import AfterValidator, BaseModel, Field, model_validator

from telematics.api.schemas import BodyIn, StoredId
from telematics.notices.broker import notice_topic
from telematics.notices.errors import DeliveryError
from telematics.notices.kinds import Channel, Kind, Language
from telematics.notices.outbox import Delivery
from telematics.notices.subscriptions import Subscription, SubscriptionSpec
from telematics.notices.targets import MAX_URL_CHARS
from telematics.summaries.periods import iana_zones

MAX_SUBSCRIPTIONS = 20
Severity = Literal["critical", "major", "minor", "info"]
Status = Literal["queued", "sending", "sent", "failed"]

# An ASCII addr-spec without quoting or comments: one mailbox, nothing a header could split.
_EMAIL = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@"
    r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
)


def _zone(value: str) -> str:
    if value not in iana_zones():
        raise ValueError("not an IANA time zone (such as Asia/Shanghai or UTC)")
    return value


def _email(value: str) -> str:
    if len(value) > 254 or not _EMAIL.match(value):
        raise ValueError("not a plain e-mail address (name@example.com)")
    return value


class SubscriptionIn(BodyIn):
    """One subscription: a channel and what to send on it.

    `url` and `secret` for a webhook (the secret may be left out to keep the stored one),
    `email` for e-mail, neither for MQTT (notices go to `customers/{customer_id}/notices`).
    """

    subscription_id: StoredId | None = Field(
        default=None, description="An existing subscription to update; absent for a new one."
    )
    channel: Channel = Field(strict=False)
    url: str | None = Field(default=None, max_length=MAX_URL_CHARS)
    secret: str | None = Field(
        default=None,
        pattern=r"^[\x21-\x7e]{16,256}$",
        description="Webhook HMAC key, 16 to 256 printable ASCII characters; write-only.",
    )
    email: Annotated[str, AfterValidator(_email)] | None = None
    kinds: list[Annotated[Kind, Field(strict=False)]] = Field(
        default_factory=list, max_length=len(Kind),
        description="Event kinds wanted; empty for every kind.",
    )  # fmt: skip
    min_severity: Severity = Field(default="info", description="Alarms below this are not sent.")
    language: Language = Field(default=Language.EN, strict=False)
    tz: Annotated[str, AfterValidator(_zone)] = Field(default="UTC", max_length=64)
    enabled: bool = True

    @model_validator(mode="after")
    def _fields_fit_channel(self) -> Self:
        if self.channel is Channel.WEBHOOK:
            if self.url is None or self.email is not None:
                raise ValueError("a webhook subscription takes url (and secret), not email")
        elif self.channel is Channel.EMAIL:
            if self.email is None or self.url is not None or self.secret is not None:
                raise ValueError("an e-mail subscription takes email, not url or secret")
        elif self.url is not None or self.email is not None or self.secret is not None:
            raise ValueError("an MQTT subscription takes no url, secret or email")
        if len(set(self.kinds)) != len(self.kinds):
            raise ValueError("a kind is named twice")
        return self

    def spec(self) -> SubscriptionSpec:
        """The store's value."""
        return SubscriptionSpec(
            subscription_id=self.subscription_id,
            channel=self.channel,
            target=self.url or self.email or "",
            secret=self.secret,
            kinds=tuple(k.value for k in self.kinds),
            min_severity=self.min_severity,
            language=self.language,
            tz=self.tz,
            enabled=self.enabled,
        )


class SubscriptionsIn(BodyIn):
    """A customer's whole set of subscriptions: what is not named is removed."""

    subscriptions: list[SubscriptionIn] = Field(max_length=MAX_SUBSCRIPTIONS)


class SubscriptionOut(BaseModel):
    """A subscription as stored, without its secret."""

    subscription_id: int
    channel: Channel
    url: str | None
    email: str | None
    topic: str | None = Field(description="For MQTT: the topic notices are published on.")
    has_secret: bool
    kinds: list[str]
    min_severity: str
    language: Language
    tz: str
    enabled: bool
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, sub: Subscription) -> SubscriptionOut:
        """The answer for a stored subscription."""
        topic = None
        if sub.channel is Channel.MQTT:
            try:
                topic = notice_topic(sub.customer_id)
            except DeliveryError:
                topic = None
        return cls(
            subscription_id=sub.subscription_id,
            channel=sub.channel,
            url=sub.target if sub.channel is Channel.WEBHOOK else None,
            email=sub.target if sub.channel is Channel.EMAIL else None,
            topic=topic,
            has_secret=sub.has_secret,
            kinds=list(sub.kinds),
            min_severity=sub.min_severity,
            language=sub.language,
            tz=sub.tz,
            enabled=sub.enabled,
            created_at=sub.created_at,
            updated_at=sub.updated_at,
        )


class SubscriptionsOut(BaseModel):
    """A customer's subscriptions."""

    customer_id: str
    subscriptions: list[SubscriptionOut]


class DeliveryOut(BaseModel):
    """One notice to one subscription, and how its delivery went."""

    notice_id: int = Field(description="The delivery id, sent as X-Notice-Id / notice_id.")
    event_id: int
    subscription_id: int
    customer_id: str
    channel: Channel
    kind: str
    title: str
    status: Status
    attempts: int
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    next_attempt_at: datetime | None = Field(description="When queued: the next attempt.")
    sent_at: datetime | None

    @classmethod
    def of(cls, d: Delivery) -> DeliveryOut:
        """The answer for a log row."""
        return cls(
            notice_id=d.delivery_id, event_id=d.event_id, subscription_id=d.subscription_id,
            customer_id=d.customer_id, channel=d.channel, kind=d.kind, title=d.title,
            status=d.status,  # type: ignore[arg-type]
            attempts=d.attempts, last_error=d.last_error, created_at=d.created_at,
            updated_at=d.updated_at, next_attempt_at=d.next_attempt_at, sent_at=d.sent_at,
        )  # fmt: skip


class DeliveriesOut(BaseModel):
    """A page of the delivery log, newest first."""

    notifications: list[DeliveryOut]
    next_before: int | None = Field(description="Pass as `before` for the next page.")
