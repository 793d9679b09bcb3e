"""The notifications routes: subscriptions read and replaced, the delivery log.

A customer reads and sets its own subscriptions and sees its own log, whatever `customer_id` it
passes; staff (admin, expert) name the customer. Engineers have no business here (403).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from telematics.api.context import Conn, Context, allow
from telematics.api.schemas import ID_PATTERN, BeforeId
from telematics.base.errors import InvalidRequestError, RefusedError
from telematics.notices import outbox
from telematics.notices import subscriptions as store
from telematics.notices.errors import TargetRefusedError
from telematics.notices.kinds import Channel, Kind
from telematics.notices.schemas import (
    DeliveriesOut,
    DeliveryOut,
    Status,
    SubscriptionOut,
    SubscriptionsIn,
    SubscriptionsOut,
)
from telematics.notices.targets import check_url
from telematics.store.tokens import Principal, Role

router = APIRouter(prefix="/v1", tags=["notifications"])

Reader = Annotated[Principal, Depends(allow(Role.EXPERT, Role.CUSTOMER))]
CustomerQuery = Annotated[
    str | None,
    Query(pattern=ID_PATTERN, description="Staff: whose (customers always get their own)."),
]


def _whose(caller: Principal, customer_id: str | None) -> str:
    if caller.role is Role.CUSTOMER:
        return caller.subject_id
    if customer_id is None:
        raise InvalidRequestError("customer_id is required for staff")
    return customer_id


@router.get("/notifications/subscriptions")
async def get_subscriptions(
    conn: Conn, caller: Reader, customer_id: CustomerQuery = None
) -> SubscriptionsOut:
    """The customer's subscriptions (secrets are never returned)."""
    whose = _whose(caller, customer_id)
    subs = await store.list_subscriptions(conn, whose)
    return SubscriptionsOut(customer_id=whose, subscriptions=[SubscriptionOut.of(s) for s in subs])


@router.put("/notifications/subscriptions")
async def put_subscriptions(
    body: SubscriptionsIn,
    conn: Conn,
    ctx: Context,
    caller: Reader,
    customer_id: CustomerQuery = None,
) -> SubscriptionsOut:
    """Replace the customer's whole set: named `subscription_id`s are updated, new ones added,
    the rest removed (their queued notices are not sent). Webhook URLs must be http(s) and,
    unless the service allows private targets, not name a private or loopback address.
    """
    whose = _whose(caller, customer_id)
    for i, sub in enumerate(body.subscriptions):
        if sub.channel is Channel.WEBHOOK and sub.url is not None:
            try:
                check_url(sub.url, allow_private=ctx.settings.webhook_allow_private)
            except TargetRefusedError as exc:
                raise InvalidRequestError(f"subscriptions[{i}].url: {exc}") from exc
        if sub.channel is Channel.EMAIL and ctx.settings.smtp_host is None:
            raise RefusedError("e-mail notices are not configured on this service")
    subs = await store.replace_subscriptions(conn, whose, [s.spec() for s in body.subscriptions])
    return SubscriptionsOut(customer_id=whose, subscriptions=[SubscriptionOut.of(s) for s in subs])


@router.get("/notifications")
async def list_notifications(
    conn: Conn,
    caller: Reader,
    customer_id: CustomerQuery = None,
    status: Status | None = None,
    kind: Kind | None = None,
    before: BeforeId = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> DeliveriesOut:
    """The delivery log, newest first: each notice with its status, attempts and last error."""
    if caller.role is Role.CUSTOMER:
        customer_id = caller.subject_id
    rows = await outbox.list_deliveries(
        conn,
        customer_id=customer_id,
        status=status,
        kind=None if kind is None else kind.value,
        before=before,
        limit=limit,
    )
    return DeliveriesOut(
        notifications=[DeliveryOut.of(d) for d in rows],
        next_before=rows[-1].delivery_id if len(rows) == limit else None,
    )
