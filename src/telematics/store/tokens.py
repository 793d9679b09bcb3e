"""API tokens: who a bearer token speaks for. Only a SHA-256 of each token is stored.

`TokenCache` answers "whose token is this?" from memory, so that authenticating a request
takes no database connection in the common case, and a flood of made-up tokens costs at most
one small query at a time, shared by every request waiting on it.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import asyncpg

from telematics.base.db import acquire
from telematics.base.errors import InvalidRequestError, NotFoundError


class Role(StrEnum):
    """What a caller may do (README, "Roles")."""

    ADMIN = "admin"
    EXPERT = "expert"
    ENGINEER = "engineer"
    CUSTOMER = "customer"
    MONITOR = "monitor"


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller behind a request: a role and whom it speaks for.

    Attributes:
        role: The role.
        subject_id: The engineer id, customer id, or the expert's or admin's name.
    """

    role: Role
    subject_id: str

    @property
    def actor(self) -> str:
        """How the caller appears in audit trails."""
        return f"{self.role.value}:{self.subject_id}"


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """A stored token (never the secret)."""

    token_id: int
    role: Role
    subject_id: str
    name: str
    created_at: datetime
    revoked_at: datetime | None


def token_hash(token: str) -> bytes:
    """The stored form of a token."""
    return hashlib.sha256(token.encode()).digest()


async def create_token(
    conn: asyncpg.Connection, role: Role, subject_id: str, name: str
) -> tuple[TokenInfo, str]:
    """A new token for `role` and `subject_id`; the secret is returned once, here.

    Raises:
        InvalidRequestError: An engineer token for an engineer that is not registered.
    """
    token = secrets.token_urlsafe(32)
    row = await conn.fetchrow(
        "INSERT INTO api_tokens (token_hash, role, subject_id, name) "
        "SELECT $1, $2, $3, $4 WHERE $2 <> 'engineer' "
        "OR EXISTS (SELECT 1 FROM engineers WHERE engineer_id = $3) RETURNING *",
        token_hash(token),
        role.value,
        subject_id,
        name,
    )
    if row is None:
        raise InvalidRequestError(f"no engineer {subject_id!r}: register the engineer first")
    return _info(row), token


def _info(row: asyncpg.Record) -> TokenInfo:
    return TokenInfo(
        row["token_id"],
        Role(row["role"]),
        row["subject_id"],
        row["name"],
        row["created_at"],
        row["revoked_at"],
    )


async def principal_of(conn: asyncpg.Connection, token: str) -> Principal | None:
    """The principal of a live token, or None; an engineer token only while its engineer exists."""
    row = await conn.fetchrow(
        "SELECT t.role, t.subject_id FROM api_tokens t WHERE t.token_hash = $1 "
        "AND t.revoked_at IS NULL AND (t.role <> 'engineer' "
        "OR EXISTS (SELECT 1 FROM engineers e WHERE e.engineer_id = t.subject_id))",
        token_hash(token),
    )
    return None if row is None else Principal(Role(row["role"]), row["subject_id"])


async def list_tokens(conn: asyncpg.Connection) -> list[TokenInfo]:
    """Every token, newest first."""
    return [_info(r) for r in await conn.fetch("SELECT * FROM api_tokens ORDER BY token_id DESC")]


async def revoke_token(conn: asyncpg.Connection, token_id: int) -> TokenInfo:
    """Revoke a token (idempotent).

    Raises:
        NotFoundError: No such token.
    """
    row = await conn.fetchrow(
        "UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, now()) WHERE token_id = $1 "
        "RETURNING *",
        token_id,
    )
    if row is None:
        raise NotFoundError("token", str(token_id))
    return _info(row)


# An engineer token speaks only while its engineer is registered.
_SUBJECT_EXISTS = (
    "(t.role <> 'engineer' OR EXISTS "
    "(SELECT 1 FROM engineers e WHERE e.engineer_id = t.subject_id))"
)


class TokenCache:
    """The live tokens, held in memory and kept fresh from `api_tokens`.

    * A known token is answered from memory.
    * An unknown one waits for a catch-up query that starts after it arrived (new tokens are
      read by id, `token_id > the largest seen`): a token created a moment ago by any process
      works at once. Every request that misses while a query runs shares the next one, so a
      flood of junk tokens costs one query at a time, never a connection per request.
    * The whole table is re-read when the copy is older than `ttl_s`, so a revocation by any
      process takes effect within `ttl_s`; `forget_all` makes one by this process immediate.

    Every read runs on the pool handed to `principal` (the API's), with a short acquire
    timeout; a database that cannot be reached is `StoreUnavailableError`, not a refusal.
    """

    def __init__(
        self,
        ttl_s: float = 5.0,
        *,
        acquire_timeout_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """A cache whose full copy is trusted for `ttl_s` seconds."""
        self._ttl_s = ttl_s
        self._acquire_timeout_s = acquire_timeout_s
        self._clock = clock
        self._live: dict[bytes, Principal] = {}
        self._max_id = 0
        self._loaded_at: float | None = None
        self._reads_started = 0
        self._lock = asyncio.Lock()

    def forget_all(self) -> None:
        """Re-read every token on the next lookup (after a revocation here)."""
        self._loaded_at = None

    async def principal(self, pool: asyncpg.Pool, token: str) -> Principal | None:
        """The principal of a live token, or None.

        Raises:
            StoreUnavailableError: The tokens had to be read and the database did not answer.
        """
        return await self.principal_of_digest(pool, token_hash(token))

    async def principal_of_digest(self, pool: asyncpg.Pool, digest: bytes) -> Principal | None:
        """The principal of the live token whose stored form is `digest` (a console session
        carries the digest, never the token), or None.

        Raises:
            StoreUnavailableError: The tokens had to be read and the database did not answer.
        """
        if self._stale():
            await self._read_after(self._reads_started, pool)
        found = self._live.get(digest)
        if found is None:
            await self._read_after(self._reads_started, pool)
            found = self._live.get(digest)
        return found

    def _stale(self) -> bool:
        return self._loaded_at is None or self._clock() - self._loaded_at > self._ttl_s

    async def _read_after(self, seen: int, pool: asyncpg.Pool) -> None:
        """Make sure a read that started after read number `seen` has finished."""
        async with self._lock:
            if self._reads_started > seen:
                return  # one started after we asked, and (we hold the lock) it has finished
            self._reads_started += 1
            started = self._clock()
            full = self._stale()
            async with acquire(pool, timeout_s=self._acquire_timeout_s) as conn:
                if full:
                    await self._read_all(conn)
                    self._loaded_at = started
                else:
                    await self._read_new(conn)

    async def _read_all(self, conn: asyncpg.Connection) -> None:
        # The largest id first: a token inserted between the two reads is read again later.
        max_id = await conn.fetchval("SELECT coalesce(max(token_id), 0) FROM api_tokens")
        rows = await conn.fetch(
            f"SELECT token_hash, role, subject_id FROM api_tokens t "
            f"WHERE revoked_at IS NULL AND {_SUBJECT_EXISTS}"
        )
        self._live = {
            bytes(r["token_hash"]): Principal(Role(r["role"]), r["subject_id"]) for r in rows
        }
        self._max_id = int(max_id)

    async def _read_new(self, conn: asyncpg.Connection) -> None:
        rows = await conn.fetch(
            f"SELECT token_id, token_hash, role, subject_id, revoked_at, {_SUBJECT_EXISTS} AS ok "
            "FROM api_tokens t WHERE token_id > $1",
            self._max_id,
        )
        for r in rows:
            if r["revoked_at"] is None and r["ok"]:
                self._live[bytes(r["token_hash"])] = Principal(Role(r["role"]), r["subject_id"])
            self._max_id = max(self._max_id, int(r["token_id"]))
