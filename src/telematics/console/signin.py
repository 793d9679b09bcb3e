"""Signing in and out of the console with one of the product's tokens.

Signing in checks the token exactly as the API does (the admin token, or a live token of
`api_tokens`) and answers with the session cookie (`telematics.api.session_cookie`): HttpOnly,
SameSite=Strict, Secure over https, for the whole origin so the browser's `/v1` calls carry it.
The answer's `csrf_token` goes back in `X-CSRF-Token` with every state-changing call.
"""

from __future__ import annotations

import hmac
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Cookie, Request, Response, status
from pydantic import BaseModel, Field

from telematics.api.context import Context, session_principal
from telematics.api.schemas import BodyIn
from telematics.api.session_cookie import COOKIE, ConsoleSession, same_origin
from telematics.base.errors import AuthError, ForbiddenError
from telematics.store.tokens import Principal, Role

router = APIRouter(prefix="/console", include_in_schema=False)


class SignInIn(BodyIn):
    """The token to sign in with."""

    token: str = Field(min_length=1, max_length=1000)


class SessionOut(BaseModel):
    """Who is signed in, and what the page needs to act for them."""

    signed_in: bool
    role: str | None = None
    subject_id: str | None = None
    csrf_token: str | None = Field(default=None, description="Send in X-CSRF-Token")
    expires_at: datetime | None = None


def _out(ctx: Context, who: Principal, session: ConsoleSession) -> SessionOut:
    return SessionOut(
        signed_in=True,
        role=who.role.value,
        subject_id=who.subject_id,
        csrf_token=ctx.sessions.csrf_token(session),
        expires_at=datetime.fromtimestamp(session.expires_at, UTC),
    )


def _require_same_origin(request: Request) -> None:
    if not same_origin(request.headers, request.url.scheme):
        raise ForbiddenError("a console request from another origin")


@router.post("/session")
async def sign_in(body: SignInIn, request: Request, response: Response, ctx: Context) -> SessionOut:
    """Sign in: the token is checked, and a session cookie stands for it from now on.

    Raises:
        AuthError: An unknown or revoked token.
        ForbiddenError: Sent from another origin (a page elsewhere signing the browser in).
    """
    _require_same_origin(request)
    if hmac.compare_digest(body.token.encode(), ctx.admin_token.encode()):
        who: Principal | None = Principal(Role.ADMIN, "admin")
    else:
        who = await ctx.tokens.principal(ctx.pool, body.token)
    if who is None:
        raise AuthError("invalid token")
    value, session = ctx.sessions.issue(body.token)
    response.set_cookie(
        COOKIE, value, max_age=ctx.sessions.lifetime_s, path="/", httponly=True,
        samesite="strict", secure=request.url.scheme == "https",
    )  # fmt: skip
    return _out(ctx, who, session)


@router.get("/session")
async def current(
    ctx: Context, cookie: Annotated[str | None, Cookie(alias=COOKIE)] = None
) -> SessionOut:
    """Who is signed in on this browser; `signed_in` false when nobody is (answered 200, so a
    page that is not signed in yet logs no failed request).
    """
    session = None if cookie is None else ctx.sessions.read(cookie)
    if session is None:
        return SessionOut(signed_in=False)
    try:
        who = await session_principal(ctx, session)
    except AuthError:
        return SessionOut(signed_in=False)
    return _out(ctx, who, session)


@router.delete("/session", status_code=status.HTTP_204_NO_CONTENT)
async def sign_out(
    request: Request,
    ctx: Context,
    cookie: Annotated[str | None, Cookie(alias=COOKIE)] = None,
) -> Response:
    """Sign out: the session ends (its event streams close) and the cookie is cleared.

    Signing out of a session that has already ended only clears the cookie.

    Raises:
        ForbiddenError: Sent from another origin.
    """
    _require_same_origin(request)
    session = None if cookie is None else ctx.sessions.read(cookie)
    if session is not None:
        ctx.sessions.end(session)
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict",
                           secure=request.url.scheme == "https")  # fmt: skip
    return response
