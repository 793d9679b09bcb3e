"""What the HTTP layer needs from the rest of the service, and the dependencies that hand it out."""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

import asyncpg
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from diagnosis.knowledge import KnowledgeBase
from diagnosis.rules import RuleBook
from telematics.db import acquire
from telematics.decode import Limits
from telematics.errors import AuthError
from telematics.metrics import Metrics
from telematics.store.registry import SourceDirectory


@dataclass(frozen=True, slots=True)
class ApiContext:
    """Shared resources of the API, built by the composition root.

    Attributes:
        pool: Database pool.
        directory: Registered machines and engineers, shared with the gateway.
        metrics: Metrics registry.
        admin_token: The admin's bearer token.
        limits: Payload acceptance limits (used by replay).
        gateway_connected: Tells whether the in-process gateway holds its broker session.
        knowledge: The diagnosis knowledge base, when diagnosis is enabled.
        rules: The diagnosis thresholds, when diagnosis is enabled.
        models_changed: Tells the in-process diagnoser that a new anomaly model was stored.
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


def get_context(request: Request) -> ApiContext:
    """The context the app was built with."""
    ctx: ApiContext = request.app.state.ctx
    return ctx


Context = Annotated[ApiContext, Depends(get_context)]

_bearer = HTTPBearer(auto_error=False)


async def connection(ctx: Context) -> AsyncIterator[asyncpg.Connection]:
    """A pooled connection for the duration of one request."""
    async with acquire(ctx.pool, timeout_s=10.0) as conn:
        yield conn


Conn = Annotated[asyncpg.Connection, Depends(connection)]


def require_admin(
    ctx: Context,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """Allow only the admin's bearer token.

    Raises:
        AuthError: No token, or the wrong one.
    """
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise AuthError("missing bearer token")
    if not hmac.compare_digest(credentials.credentials.encode(), ctx.admin_token.encode()):
        raise AuthError("invalid token")


Admin = Depends(require_admin)
