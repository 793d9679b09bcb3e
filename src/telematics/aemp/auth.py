"""Who calls the feed: an AEMP client's access token, or a bearer token of the product.

* An access token from `POST {prefix}/token` speaks for its client's customer.
* A product token works too: the admin's and an expert's see every machine, a customer's only
  its own; an engineer's is refused (an engineer sees machines through orders, not fleets).

Every caller is rate limited by its own token bucket (`ratelimit`), keyed by the client or the
product token's subject, before any connection is taken for its request. The buckets and the
access-token cache are per application (`FeedState`, created with the app's first request).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from telematics.aemp.clients import AccessTokens
from telematics.aemp.ratelimit import TokenBuckets
from telematics.api.context import Context
from telematics.base.config import Settings
from telematics.base.errors import AuthError, ForbiddenError, RateLimitedError
from telematics.store.tokens import Role


@dataclass(frozen=True, slots=True)
class FeedCaller:
    """A caller of the feed.

    Attributes:
        key: Whom the rate limit counts (`client:<id>`, or the product token's actor).
        customer_id: The only customer whose machines it sees; None for every machine.
    """

    key: str
    customer_id: str | None


class FeedState:
    """What the feed keeps in the memory of one process: access tokens seen, token buckets."""

    def __init__(self, settings: Settings) -> None:
        """State for an app built with `settings`."""
        self.tokens = AccessTokens(ttl_s=settings.token_cache_s)
        self.buckets = TokenBuckets(settings.aemp_rate_per_s, settings.aemp_burst)


def feed_state(request: Request) -> FeedState:
    """The app's feed state, created on first use."""
    state: FeedState | None = getattr(request.app.state, "aemp", None)
    if state is None:
        state = FeedState(request.app.state.ctx.settings)
        request.app.state.aemp = state
    return state


_bearer = HTTPBearer(auto_error=False)


async def feed_caller(
    request: Request,
    ctx: Context,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> FeedCaller:
    """The caller, scoped and counted.

    Raises:
        AuthError: No token, or one that is unknown, expired or revoked.
        ForbiddenError: An engineer's token.
        RateLimitedError: The caller's bucket is empty.
    """
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise AuthError("missing bearer token")
    token = credentials.credentials
    state = feed_state(request)
    caller: FeedCaller
    if hmac.compare_digest(token.encode(), ctx.admin_token.encode()):
        caller = FeedCaller("admin:admin", None)
    elif (holder := await state.tokens.holder(ctx.pool, token)) is not None:
        caller = FeedCaller(f"client:{holder.client_id}", holder.customer_id)
    else:
        principal = await ctx.tokens.principal(ctx.pool, token)
        if principal is None:
            raise AuthError("invalid or expired token")
        if principal.role is Role.ENGINEER:
            raise ForbiddenError("engineer may not read the fleet feed")
        scope = principal.subject_id if principal.role is Role.CUSTOMER else None
        caller = FeedCaller(principal.actor, scope)
    wait_s = state.buckets.take(caller.key)
    if wait_s > 0:
        raise RateLimitedError(wait_s)
    return caller


FeedCallerDep = Annotated[FeedCaller, Depends(feed_caller)]
