"""Browser sessions of the web console: a signed cookie that stands for a bearer token.

The console signs a person in with one of the product's tokens and from then on the browser
calls the same `/v1` API with a cookie instead of the `Authorization` header, so every role rule
holds unchanged. The cookie never holds the token: it holds a random session id, the SHA-256 of
the token (the form `api_tokens` stores, useless as a bearer token) and an expiry, signed with
HMAC-SHA256 under a key only the service knows. Each request resolves the digest through the
token cache, so revoking the token ends every session made with it.

The cookie is HttpOnly (no script reads it), SameSite=Strict (no other site's page makes the
browser send it) and Secure over https. State-changing requests authenticated by the cookie also
need the session's CSRF token in `X-CSRF-Token` and, when the browser says where it comes from
(`Origin`, `Sec-Fetch-Site`), to come from the service's own origin.

Signing out forgets the session in this process at once (its event streams close); another
process serving the same API honours the cookie until it expires, unless the token is revoked.
This module owns the cookie's format and its checks; it never touches the database.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from telematics.store.tokens import token_hash

COOKIE = "telematics_session"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_VERSION = "v1"
# A signed value is about 130 characters; anything much longer is not one of ours.
_MAX_COOKIE_CHARS = 512
MAX_ENDED = 100_000
_PRUNE_FIRST = 1024


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True, slots=True)
class ConsoleSession:
    """A signed-in browser.

    Attributes:
        session_id: Random, names the session (sign-out, event streams).
        token_digest: SHA-256 of the token the person signed in with.
        expires_at: When the cookie stops being honoured, epoch seconds.
    """

    session_id: str
    token_digest: bytes
    expires_at: int


class SessionKeeper:
    """Issues and checks console session cookies, and remembers the ones signed out here."""

    def __init__(
        self,
        key: bytes | None = None,
        lifetime_s: int = 12 * 3600,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Sessions signed with `key` (random when None: they end when the process does)."""
        self._key = key if key is not None else secrets.token_bytes(32)
        self.lifetime_s = lifetime_s
        self._clock = clock
        self._ended: dict[str, int] = {}
        self._prune_at = _PRUNE_FIRST

    def issue(self, token: str) -> tuple[str, ConsoleSession]:
        """A new session for `token`: the cookie value and what it stands for."""
        session = ConsoleSession(
            session_id=_b64(secrets.token_bytes(16)),
            token_digest=token_hash(token),
            expires_at=int(self._clock()) + self.lifetime_s,
        )
        body = f"{_VERSION}.{session.session_id}.{_b64(session.token_digest)}.{session.expires_at}"
        return f"{body}.{self._mac(body)}", session

    def read(self, value: str) -> ConsoleSession | None:
        """The live session a cookie value stands for; None if forged, malformed, expired or
        signed out here.
        """
        if len(value) > _MAX_COOKIE_CHARS or not value.isascii():
            return None
        body, _, mac = value.rpartition(".")
        if not hmac.compare_digest(mac.encode(), self._mac(body).encode()):
            return None
        parts = body.split(".")
        if len(parts) != 4:
            return None
        version, session_id, digest, expires = parts
        try:
            session = ConsoleSession(session_id, _unb64(digest), int(expires))
        except (ValueError, binascii.Error):
            return None
        if version != _VERSION or not self.is_live(session):
            return None
        return session

    def is_live(self, session: ConsoleSession) -> bool:
        """Not expired and not signed out in this process."""
        return session.expires_at > self._clock() and session.session_id not in self._ended

    def end(self, session: ConsoleSession) -> None:
        """Sign out: the session's cookie is refused from now on by this process.

        Ended sessions are remembered until they expire, at most `MAX_ENDED` of them: past that
        the soonest to expire are forgotten first (only someone holding a live token can sign
        out, so only their own earlier sessions could come back).
        """
        self._ended[session.session_id] = session.expires_at
        if len(self._ended) >= self._prune_at:
            now = self._clock()
            live = sorted(
                ((exp, sid) for sid, exp in self._ended.items() if exp > now), reverse=True
            )
            self._ended = {sid: exp for exp, sid in live[:MAX_ENDED]}
            self._prune_at = max(_PRUNE_FIRST, 2 * len(self._ended))

    def csrf_token(self, session: ConsoleSession) -> str:
        """The token the page sends back in `X-CSRF-Token` with every state-changing request."""
        return self._mac(f"csrf.{session.session_id}")

    def csrf_ok(self, session: ConsoleSession, sent: str | None) -> bool:
        """Whether `sent` is the session's CSRF token."""
        return sent is not None and hmac.compare_digest(
            sent.encode(), self.csrf_token(session).encode()
        )

    def _mac(self, text: str) -> str:
        return _b64(hmac.new(self._key, text.encode(), hashlib.sha256).digest())


def same_origin(headers: Mapping[str, str], scheme: str) -> bool:
    """Whether the browser says the request comes from the service's own origin.

    A request that says nothing (no `Origin`, no `Sec-Fetch-Site`: not a browser, or an old
    one) passes: SameSite=Strict and the CSRF token still stand.

    Args:
        headers: The request's headers (a case-insensitive mapping).
        scheme: The scheme the request came in on.
    """
    site = headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = headers.get("origin")
    host = headers.get("host")
    return origin is None or (host is not None and origin == f"{scheme}://{host}")
