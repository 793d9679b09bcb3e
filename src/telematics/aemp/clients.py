"""OAuth 2.0 clients of the feed and the access tokens issued to them: the SQL, and the cache
that answers "whose access token is this?" without a connection in the common case.

Secrets and tokens are 32 random bytes (URL-safe base64); only their SHA-256 is stored, so the
table opens nothing. Access tokens start with `ACCESS_PREFIX`, so a product token is never
looked for here (and a guessed access token is looked up one at a time, never a connection per
request). asyncpg records never leave this module.
"""

from __future__ import annotations

import asyncio
import hmac
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

from telematics.base.db import acquire
from telematics.base.errors import NotFoundError
from telematics.store.tokens import token_hash

ACCESS_PREFIX = "aemp."
CLIENT_ID = re.compile(r"^[A-Za-z0-9._~-]{1,100}$")
"""What a client id may look like (ours are `aemp-` and 16 hex digits); others are refused
before any query."""
MAX_SECRET_CHARS = 200


@dataclass(frozen=True, slots=True)
class Client:
    """An OAuth client (never its secret)."""

    client_id: str
    customer_id: str
    name: str
    created_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """An access token, shown once, and how long it lives."""

    access_token: str
    expires_in_s: int


def _client(row: asyncpg.Record) -> Client:
    return Client(
        row["client_id"], row["customer_id"], row["name"], row["created_at"], row["revoked_at"]
    )


async def create_client(
    conn: asyncpg.Connection, customer_id: str, name: str
) -> tuple[Client, str]:
    """A new client for `customer_id`; its secret is returned once, here."""
    client_id = f"aemp-{secrets.token_hex(8)}"
    secret = secrets.token_urlsafe(32)
    row = await conn.fetchrow(
        "INSERT INTO aemp_clients (client_id, secret_hash, customer_id, name) "
        "VALUES ($1, $2, $3, $4) RETURNING *",
        client_id,
        token_hash(secret),
        customer_id,
        name,
    )
    assert row is not None
    return _client(row), secret


async def list_clients(conn: asyncpg.Connection) -> list[Client]:
    """Every client, newest first."""
    rows = await conn.fetch("SELECT * FROM aemp_clients ORDER BY created_at DESC, client_id")
    return [_client(row) for row in rows]


async def revoke_client(conn: asyncpg.Connection, client_id: str) -> Client:
    """Revoke a client and every token issued to it (idempotent).

    Raises:
        NotFoundError: No such client.
    """
    async with conn.transaction():
        row = await conn.fetchrow(
            "UPDATE aemp_clients SET revoked_at = coalesce(revoked_at, now()) "
            "WHERE client_id = $1 RETURNING *",
            client_id,
        )
        if row is None:
            raise NotFoundError("AEMP client", client_id)
        await conn.execute("DELETE FROM aemp_access_tokens WHERE client_id = $1", client_id)
    return _client(row)


async def issue_token(
    conn: asyncpg.Connection, client_id: str, secret: str, ttl_s: int
) -> IssuedToken | None:
    """An access token for a live client whose secret matches; None otherwise (unknown,
    revoked, wrong secret: the caller cannot tell which). Expired tokens are swept here.
    """
    if not CLIENT_ID.match(client_id) or len(secret) > MAX_SECRET_CHARS:
        return None
    stored = await conn.fetchval(
        "SELECT secret_hash FROM aemp_clients WHERE client_id = $1 AND revoked_at IS NULL",
        client_id,
    )
    if stored is None or not hmac.compare_digest(bytes(stored), token_hash(secret)):
        return None
    token = ACCESS_PREFIX + secrets.token_urlsafe(32)
    async with conn.transaction():
        await conn.execute(
            "DELETE FROM aemp_access_tokens WHERE expires_at < now() - interval '1 hour'"
        )
        await conn.execute(
            "INSERT INTO aemp_access_tokens (token_hash, client_id, expires_at) "
            "VALUES ($1, $2, now() + make_interval(secs => $3))",
            token_hash(token),
            client_id,
            float(ttl_s),
        )
    return IssuedToken(token, ttl_s)


@dataclass(frozen=True, slots=True)
class TokenHolder:
    """Whom a live access token was issued to."""

    client_id: str
    customer_id: str
    expires_at: datetime


class AccessTokens:
    """Live access tokens, answered from memory once seen.

    An entry is trusted until its token expires, or for `ttl_s` after it was read, whichever
    comes first; then it is read again, so a client revoked by another process stops within
    `ttl_s` (`forget` makes a revocation by this one immediate). Lookups of unseen tokens run
    one at a time under a lock: a flood of made-up tokens holds at most one connection.
    """

    def __init__(
        self,
        ttl_s: float = 5.0,
        *,
        acquire_timeout_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = 100_000,
    ) -> None:
        """A cache that trusts an entry for `ttl_s` seconds."""
        self._ttl_s = ttl_s
        self._acquire_timeout_s = acquire_timeout_s
        self._clock = clock
        self._max_entries = max_entries
        self._seen: dict[bytes, tuple[TokenHolder, float]] = {}
        self._lock = asyncio.Lock()

    def forget(self) -> None:
        """Read every token again on its next use (after a revocation here)."""
        self._seen.clear()

    async def holder(self, pool: asyncpg.Pool, token: str) -> TokenHolder | None:
        """Whom a live token speaks for; None for an unknown, expired or revoked one.

        Raises:
            StoreUnavailableError: The database did not answer.
        """
        if not token.startswith(ACCESS_PREFIX) or len(token) > MAX_SECRET_CHARS:
            return None
        digest = token_hash(token)
        found = self._fresh(digest)
        if found is not None:
            return found
        async with self._lock:
            found = self._fresh(digest)
            if found is not None:
                return found
            async with acquire(pool, timeout_s=self._acquire_timeout_s) as conn:
                row = await conn.fetchrow(
                    "SELECT t.client_id, c.customer_id, t.expires_at FROM aemp_access_tokens t "
                    "JOIN aemp_clients c USING (client_id) "
                    "WHERE t.token_hash = $1 AND t.expires_at > now() AND c.revoked_at IS NULL",
                    digest,
                )
            if row is None:
                self._seen.pop(digest, None)
                return None
            holder = TokenHolder(row["client_id"], row["customer_id"], row["expires_at"])
            if len(self._seen) >= self._max_entries:
                self._seen.clear()
            self._seen[digest] = (holder, self._clock())
            return holder

    def _fresh(self, digest: bytes) -> TokenHolder | None:
        entry = self._seen.get(digest)
        if entry is None:
            return None
        holder, read_at = entry
        if self._clock() - read_at > self._ttl_s or holder.expires_at <= datetime.now(UTC):
            return None
        return holder
