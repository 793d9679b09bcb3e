"""`POST {prefix}/token`: OAuth 2.0 client credentials (RFC 6749 section 4.4), as the
manufacturers' AEMP services issue their bearer tokens.

The body is `application/x-www-form-urlencoded` with `grant_type=client_credentials`; the
client authenticates with HTTP Basic (`client_id:client_secret`, each form-urlencoded first,
section 2.3.1) or with `client_id` and `client_secret` in the body, not both. Answers are the
RFC's, not problem+json: `{access_token, token_type: "Bearer", expires_in}` with
`Cache-Control: no-store`, or `{error, error_description}`: `invalid_request` (400: wrong
content type, a parameter twice, text that is not UTF-8, no credentials),
`unsupported_grant_type` (400), `invalid_client` (401 with `WWW-Authenticate: Basic`: unknown,
revoked or wrong secret, indistinguishably).
"""

from __future__ import annotations

import base64
import binascii
from urllib.parse import parse_qs, unquote_plus

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from telematics.aemp import clients
from telematics.api.context import Context
from telematics.base.db import acquire

router = APIRouter(tags=["aemp"])

_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_FORM = "application/x-www-form-urlencoded"


class _OAuthError(Exception):
    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description


def _refusal(exc: _OAuthError) -> JSONResponse:
    headers = dict(_NO_STORE)
    if exc.status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="aemp"'
    return JSONResponse(
        {"error": exc.error, "error_description": exc.description}, exc.status, headers=headers
    )


def _form(body: bytes) -> dict[str, str]:
    try:
        fields = parse_qs(
            body.decode("ascii"), keep_blank_values=True, strict_parsing=False, errors="strict"
        )
    except (UnicodeDecodeError, ValueError) as exc:
        raise _OAuthError(400, "invalid_request", "the body is not UTF-8 form data") from exc
    twice = sorted(name for name, values in fields.items() if len(values) > 1)
    if twice:
        raise _OAuthError(400, "invalid_request", f"parameter sent more than once: {twice[0]}")
    return {name: values[0] for name, values in fields.items()}


def _basic(header: str) -> tuple[str, str]:
    try:
        decoded = base64.b64decode(header.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise _OAuthError(401, "invalid_client", "malformed Basic credentials") from exc
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        raise _OAuthError(401, "invalid_client", "malformed Basic credentials")
    return unquote_plus(client_id, errors="strict"), unquote_plus(secret, errors="strict")


def _credentials(request: Request, form: dict[str, str]) -> tuple[str, str]:
    authorization = request.headers.get("authorization", "")
    scheme, _, value = authorization.partition(" ")
    in_body = "client_id" in form or "client_secret" in form
    if scheme.lower() == "basic":
        if in_body:
            raise _OAuthError(400, "invalid_request", "credentials both in header and body")
        try:
            return _basic(value)
        except UnicodeDecodeError as exc:
            raise _OAuthError(401, "invalid_client", "malformed Basic credentials") from exc
    if "client_id" not in form:
        raise _OAuthError(401, "invalid_client", "no client credentials")
    return form["client_id"], form.get("client_secret", "")


@router.post(
    "/token",
    responses={
        200: {"description": "An access token"},
        400: {"description": "invalid_request, unsupported_grant_type"},
        401: {"description": "invalid_client"},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                _FORM: {
                    "schema": {
                        "type": "object",
                        "required": ["grant_type"],
                        "properties": {
                            "grant_type": {"type": "string", "enum": ["client_credentials"]},
                            "client_id": {"type": "string"},
                            "client_secret": {"type": "string"},
                        },
                    }
                }
            },
        }
    },
)
async def token(request: Request, ctx: Context) -> JSONResponse:
    """An access token for an AEMP client (OAuth 2.0 client credentials grant)."""
    try:
        media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        if media != _FORM:
            raise _OAuthError(400, "invalid_request", f"the body must be {_FORM}")
        form = _form(await request.body())
        grant = form.get("grant_type")
        if grant is None:
            raise _OAuthError(400, "invalid_request", "grant_type is missing")
        if grant != "client_credentials":
            raise _OAuthError(400, "unsupported_grant_type", "only client_credentials is supported")
        client_id, secret = _credentials(request, form)
        if not clients.CLIENT_ID.match(client_id) or len(secret) > clients.MAX_SECRET_CHARS:
            raise _OAuthError(401, "invalid_client", "unknown client or wrong secret")
        async with acquire(ctx.pool, timeout_s=ctx.acquire_timeout_s) as conn:
            issued = await clients.issue_token(
                conn, client_id, secret, ctx.settings.aemp_token_ttl_s
            )
        if issued is None:
            raise _OAuthError(401, "invalid_client", "unknown client or wrong secret")
    except _OAuthError as exc:
        return _refusal(exc)
    return JSONResponse(
        {
            "access_token": issued.access_token,
            "token_type": "Bearer",
            "expires_in": issued.expires_in_s,
        },
        headers=_NO_STORE,
    )
