"""What the HTTP layer needs from the rest of the service, and the dependencies that hand it out."""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated

import asyncpg
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from diagnosis.knowledge import KnowledgeBase
from diagnosis.rules import RuleBook
from dispatch.sla import SlaPolicy
from telematics.api.request_guard import BodyLimits
from telematics.api.session_cookie import (
    COOKIE,
    CSRF_HEADER,
    SAFE_METHODS,
    ConsoleSession,
    SessionKeeper,
    same_origin,
)
from telematics.base.config import Settings
from telematics.base.db import acquire
from telematics.base.errors import AuthError, ForbiddenError
from telematics.base.metrics import Metrics
from telematics.base.replica import ReadRoute
from telematics.store.registry import SourceDirectory
from telematics.store.tokens import Principal, Role, TokenCache, token_hash
from telematics.wire.decode import Limits


@dataclass(frozen=True, slots=True)
class ApiContext:
    """Shared resources of the API, built by the composition root.

    Attributes:
        pool: The API's own database pool (ingestion and background jobs have theirs).
        directory: Registered machines and engineers, shared with the gateway.
        metrics: Metrics registry.
        admin_token: The admin's bearer token.
        limits: Payload acceptance limits (used by replay).
        gateway_connected: Tells whether the in-process gateway holds its broker session.
        knowledge: The diagnosis knowledge base, when diagnosis is enabled.
        rules: The diagnosis thresholds, when diagnosis is enabled.
        models_changed: Tells the in-process diagnoser that a new anomaly model was stored.
        sla_policy: The service levels orders are held to.
        tokens: Who each bearer token speaks for, cached.
        acquire_timeout_s: How long a request waits for a pooled connection.
        body_limits: How large request bodies may be.
        settings: The service's settings, for the capabilities' routers (their tuning).
        sessions: The web console's signed-in browsers (`api.session_cookie`).
        reads: Where reads that may lag go (a read replica, base/replica.py); None: `pool`.
    """

    pool: asyncpg.Pool
    directory: SourceDirectory
    metrics: Metrics
    admin_token: str
    limits: Limits
    gateway_connected: Callable[[], bool] | None = None
    knowledge: KnowledgeBase | None = None
    rules: RuleBook | None = None
    models_changed: Callable[[], Awaitable[object]] | None = None
    sla_policy: SlaPolicy = field(default_factory=SlaPolicy)
    tokens: TokenCache = field(default_factory=TokenCache)
    acquire_timeout_s: float = 10.0
    body_limits: BodyLimits = field(default_factory=BodyLimits)
    settings: Settings = field(default_factory=Settings)
    sessions: SessionKeeper = field(default_factory=SessionKeeper)
    reads: ReadRoute | None = None


def get_context(request: Request) -> ApiContext:
    """The context the app was built with."""
    ctx: ApiContext = request.app.state.ctx
    return ctx


Context = Annotated[ApiContext, Depends(get_context)]

_bearer = HTTPBearer(auto_error=False)


async def principal(
    request: Request,
    ctx: Context,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """Who is calling: the admin token from the settings, or a token from `api_tokens`, sent as
    a bearer token or, from the web console, as its session cookie (`api.session_cookie`).

    Answered from the token cache: no pooled connection is held for it, and none is taken at
    all for a token seen within the cache's lifetime.

    Raises:
        AuthError: No token, or one that is unknown or revoked; a console session that is
            forged, expired or signed out.
        ForbiddenError: A state-changing request on a console session without its CSRF token
            or from another origin.
    """
    if credentials is not None and credentials.scheme.lower() == "bearer":
        token = credentials.credentials
        if hmac.compare_digest(token.encode(), ctx.admin_token.encode()):
            return Principal(Role.ADMIN, "admin")
        found = await ctx.tokens.principal(ctx.pool, token)
        if found is None:
            raise AuthError("invalid token")
        return found
    cookie = request.cookies.get(COOKIE)
    if cookie is None:
        raise AuthError("missing bearer token")
    session = ctx.sessions.read(cookie)
    if session is None:
        raise AuthError("the console session has ended: sign in again")
    if request.method not in SAFE_METHODS:
        if not same_origin(request.headers, request.url.scheme):
            raise ForbiddenError("a console request from another origin")
        if not ctx.sessions.csrf_ok(session, request.headers.get(CSRF_HEADER)):
            raise ForbiddenError("missing or wrong X-CSRF-Token")
    request.state.console_session = session
    return await session_principal(ctx, session)


async def session_principal(ctx: ApiContext, session: ConsoleSession) -> Principal:
    """Whom a console session speaks for, now (its token may have been revoked since).

    Raises:
        AuthError: The session has ended, or its token is no longer live.
    """
    if not ctx.sessions.is_live(session):
        raise AuthError("the console session has ended: sign in again")
    if hmac.compare_digest(session.token_digest, token_hash(ctx.admin_token)):
        return Principal(Role.ADMIN, "admin")
    found = await ctx.tokens.principal_of_digest(ctx.pool, session.token_digest)
    if found is None:
        raise AuthError("the token of this console session is no longer valid")
    return found


Caller = Annotated[Principal, Depends(principal)]
"""Any authenticated caller; routes scope what it sees by its role."""


async def connection(
    request: Request, ctx: Context, caller: Caller
) -> AsyncIterator[asyncpg.Connection]:
    """A pooled connection for the duration of one request, taken only once the caller is known.

    Depending on `principal` makes authentication come first whatever the order of a route's
    parameters: a request with a bad token is refused without ever holding a connection.
    """
    if ctx.reads is not None and request.method not in SAFE_METHODS:
        ctx.reads.wrote(caller.actor)  # its next reads must see this write: the primary's
    async with acquire(ctx.pool, timeout_s=ctx.acquire_timeout_s) as conn:
        yield conn


Conn = Annotated[asyncpg.Connection, Depends(connection)]


async def read_connection(
    request: Request, ctx: Context, caller: Caller
) -> AsyncIterator[asyncpg.Connection]:
    """A connection for a read that may be a little behind: on the read replica when there is
    one and it is allowed (`base.replica.ReadRoute`), else on the primary like `connection`.
    Only for routes that never write.
    """
    pool = ctx.pool if ctx.reads is None else ctx.reads.pool_for(caller.actor, request.headers)
    async with acquire(pool, timeout_s=ctx.acquire_timeout_s) as conn:
        yield conn


ReadConn = Annotated[asyncpg.Connection, Depends(read_connection)]
"""A connection for a read-only route whose answer may lag the primary by the replica's lag."""


def allow(*roles: Role) -> Callable[[Principal], Principal]:
    """A dependency that admits only `roles` (the admin always)."""
    allowed = {Role.ADMIN, *roles}

    def check(caller: Caller) -> Principal:
        if caller.role not in allowed:
            raise ForbiddenError(f"{caller.role.value} may not do this")
        return caller

    return check


Admin = Depends(allow())
"""Admin only."""
Staff = Annotated[Principal, Depends(allow(Role.EXPERT))]
"""Admin or control-centre expert."""
