"""API tokens for the roles: experts, engineers and customers (admin only)."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, status
from pydantic import BaseModel, Field

from telematics.api.context import Admin, Conn, Context
from telematics.api.schemas import ID_PATTERN, BodyIn, PathId
from telematics.store import tokens as token_store
from telematics.store.tokens import Role, TokenInfo

router = APIRouter(prefix="/v1/tokens", dependencies=[Admin], tags=["tokens"])


class TokenIn(BodyIn):
    """A token to create: the role and whom it speaks for."""

    role: Role = Field(strict=False)
    subject_id: str = Field(
        pattern=ID_PATTERN,
        description="engineer_id for engineers, customer_id for customers, a name for experts",
    )
    name: str = Field(default="", max_length=200, description="A label, e.g. the person")


class TokenOut(BaseModel):
    """A stored token, without its secret."""

    token_id: int
    role: Role
    subject_id: str
    name: str
    created_at: datetime
    revoked_at: datetime | None

    @classmethod
    def of(cls, t: TokenInfo) -> TokenOut:
        """From the store's value."""
        return cls(
            token_id=t.token_id,
            role=t.role,
            subject_id=t.subject_id,
            name=t.name,
            created_at=t.created_at,
            revoked_at=t.revoked_at,
        )


class NewTokenOut(TokenOut):
    """A created token: `token` is shown this once and never again."""

    token: str


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_token(body: TokenIn, conn: Conn) -> NewTokenOut:
    """Create a bearer token for a role."""
    info, secret = await token_store.create_token(conn, body.role, body.subject_id, body.name)
    return NewTokenOut(**TokenOut.of(info).model_dump(), token=secret)


@router.get("")
async def list_tokens(conn: Conn) -> list[TokenOut]:
    """Every token, newest first (never the secrets)."""
    return [TokenOut.of(t) for t in await token_store.list_tokens(conn)]


@router.delete("/{token_id}")
async def revoke_token(token_id: PathId, conn: Conn, ctx: Context) -> TokenOut:
    """Revoke a token; it stops working at once here, and within seconds in other workers."""
    revoked = await token_store.revoke_token(conn, token_id)
    ctx.tokens.forget_all()
    return TokenOut.of(revoked)
