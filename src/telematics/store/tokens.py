"""API tokens: who a bearer token speaks for. Only a SHA-256 of each token is stored."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import asyncpg

from telematics.base.errors import InvalidRequestError, NotFoundError


class Role(StrEnum):
    """What a caller may do (README, "Roles")."""

    ADMIN = "admin"
    EXPERT = "expert"
    ENGINEER = "engineer"
    CUSTOMER = "customer"


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
