"""What a request may carry before any route sees it: a bounded body, and no NUL in its target.

An ASGI middleware, outermost in the app, so it runs before routing, authentication, body
reading and JSON parsing:

* A `Content-Length` over the limit is refused with 413 at once; the body is never read.
* A body without `Content-Length` (chunked) is counted as it streams in. The moment it passes
  the limit the app is told the client went away, whatever it answers is dropped, and the
  client gets the 413 instead. At most `limit` bytes (plus one chunk) are ever held.
* A NUL in the path or the query string is refused with 400: PostgreSQL cannot store it in
  text, and no id or filter of this API can contain one.

The answers here are problem+json built by `problem_body`; this module raises nothing to the
app's handlers, because it runs outside them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class BodyLimits:
    """How large a request body may be.

    Attributes:
        default_bytes: Any request.
        large_bytes: Requests whose path starts with one of `large_prefixes` (CSV imports).
        large_prefixes: Paths that take the larger limit.
    """

    default_bytes: int = 1 * MIB
    large_bytes: int = 16 * MIB
    large_prefixes: tuple[str, ...] = ("/v1/import/",)

    def for_path(self, path: str) -> int:
        """The limit for a request to `path`."""
        if path.startswith(self.large_prefixes):
            return self.large_bytes
        return self.default_bytes


def problem_body(status: int, title: str, detail: str) -> bytes:
    """An RFC 9457 problem document."""
    return orjson.dumps({"type": "about:blank", "title": title, "status": status, "detail": detail})


async def _answer(send: Send, status: int, title: str, detail: str) -> None:
    body = problem_body(status, title, detail)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _declared_length(headers: Mapping[bytes, bytes]) -> int | None:
    raw = headers.get(b"content-length")
    if raw is None:
        return None
    text = raw.decode("latin-1").strip()
    if not text.isdigit():
        return -1
    return int(text)


def _has_nul(scope: Scope) -> bool:
    # The server has percent-decoded the path already; the query string is still raw.
    path: str = scope.get("path", "")
    query: bytes = scope.get("query_string", b"")
    return "\x00" in path or b"\x00" in unquote_to_bytes(query)


class RequestGuard:
    """The ASGI middleware; see the module docstring."""

    def __init__(self, app: ASGIApp, limits: BodyLimits | None = None) -> None:
        """Wrap `app`."""
        self._app = app
        self._limits = limits or BodyLimits()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check the request, then pass it on with a counting `receive`."""
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        if _has_nul(scope):
            await _answer(
                send, 400, "Bad Request", "NUL bytes are not allowed in the path or query"
            )
            return
        limit = self._limits.for_path(scope.get("path", ""))
        headers = dict(scope.get("headers", []))
        declared = _declared_length(headers)
        if declared is not None and declared < 0:
            await _answer(send, 400, "Bad Request", "Content-Length is not a number")
            return
        if declared is not None and declared > limit:
            await _answer(send, 413, "Content Too Large", _too_large(limit))
            return
        await _Counted(self._app, limit).run(scope, receive, send)


def _too_large(limit: int) -> str:
    return f"the request body exceeds {limit} bytes"


class _Counted:
    """One request whose body is counted as it arrives."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self._app = app
        self._limit = limit
        self._seen = 0
        self._exceeded = False
        self._started = False

    async def run(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def counted_receive() -> Message:
            return await self._receive(receive)

        async def guarded_send(message: Message) -> None:
            await self._send(send, message)

        try:
            await self._app(scope, counted_receive, guarded_send)
        except Exception:
            if not self._exceeded:
                raise
        if self._exceeded and not self._started:
            await _answer(send, 413, "Content Too Large", _too_large(self._limit))

    async def _receive(self, receive: Receive) -> Message:
        if self._exceeded:
            return {"type": "http.disconnect"}
        message = await receive()
        if message["type"] == "http.request":
            self._seen += len(message.get("body", b""))
            if self._seen > self._limit:
                # The app sees a client that went away; it never gets these bytes.
                self._exceeded = True
                return {"type": "http.disconnect"}
        return message

    async def _send(self, send: Send, message: Message) -> None:
        if self._exceeded:
            return  # whatever the app makes of the "disconnect" is replaced by the 413
        if message["type"] == "http.response.start":
            self._started = True
        await send(message)
