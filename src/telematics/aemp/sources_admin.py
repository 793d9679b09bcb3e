"""`/v1/aemp/sources`: the admin configures the feeds of other brands a customer's machines are
pulled from, and can pull one now.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from urllib.parse import urlsplit

from fastapi import APIRouter, Path, status
from pydantic import BaseModel, Field, field_validator, model_validator

from telematics.aemp import puller, sources
from telematics.aemp.sources import Source
from telematics.api.context import Admin, Conn, Context
from telematics.api.schemas import ID_PATTERN, BodyIn
from telematics.base.db import acquire

router = APIRouter(prefix="/v1/aemp/sources", dependencies=[Admin], tags=["aemp"])

SOURCE_ID = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,23}$"
SourceId = Annotated[str, Path(pattern=SOURCE_ID)]


def _http_url(value: str | None) -> str | None:
    if value is not None:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http(s) URL with a host")
    return value


class SourceIn(BodyIn):
    """A feed to pull: where, how to authenticate, how often, for which customer."""

    source_id: str = Field(pattern=SOURCE_ID, description="Also the prefix of new machines' ids")
    customer_id: str = Field(pattern=ID_PATTERN)
    base_url: str = Field(max_length=2000, examples=["https://aemp.example.com/Telematics"])
    auth: Literal["oauth", "basic", "none"] = "oauth"
    token_url: str | None = Field(default=None, max_length=2000)
    username: str | None = Field(default=None, max_length=500, description="client id or user")
    secret: str | None = Field(
        default=None, max_length=500, description="client secret or password"
    )
    poll_interval_s: int = Field(default=900, ge=60, le=86_400)
    enabled: bool = True

    _urls = field_validator("base_url", "token_url")(_http_url)

    @model_validator(mode="after")
    def _credentials_fit(self) -> SourceIn:
        if self.auth == "oauth" and not (self.token_url and self.username and self.secret):
            raise ValueError("oauth needs token_url, username (client id) and secret")
        if self.auth == "basic" and not (self.username and self.secret is not None):
            raise ValueError("basic needs username and secret")
        return self


class SourceOut(BaseModel):
    """A source, without its secret."""

    source_id: str
    customer_id: str
    base_url: str
    auth: str
    token_url: str | None
    username: str | None
    poll_interval_s: int
    enabled: bool
    next_poll_at: datetime
    last_polled_at: datetime | None
    last_result: str | None
    created_at: datetime

    @classmethod
    def of(cls, s: Source) -> SourceOut:
        """From the store's value."""
        return cls(**{name: getattr(s, name) for name in cls.model_fields})


class PullOut(BaseModel):
    """What a pull did."""

    source_id: str
    pages: int
    machines: int
    registered: int
    readings_inserted: int
    readings_duplicate: int
    stale: int
    dead_letters: int
    error: str | None


@router.post("", status_code=status.HTTP_201_CREATED)
async def add_source(body: SourceIn, conn: Conn) -> SourceOut:
    """Configure a feed to pull."""
    return SourceOut.of(await sources.add_source(conn, body.model_dump()))


@router.get("")
async def list_sources(conn: Conn) -> list[SourceOut]:
    """Every source, by id (never the secrets)."""
    return [SourceOut.of(s) for s in await sources.list_sources(conn)]


@router.delete("/{source_id}")
async def delete_source(source_id: SourceId, conn: Conn) -> SourceOut:
    """Stop pulling a feed; its machines and readings stay."""
    return SourceOut.of(await sources.delete_source(conn, source_id))


@router.post("/{source_id}/pull")
async def pull_now(source_id: SourceId, ctx: Context) -> PullOut:
    """Pull a feed now, whatever its schedule, and say what it did.

    No connection is held while the feed answers: the pull takes one per page it stores.
    """
    async with acquire(ctx.pool, timeout_s=ctx.acquire_timeout_s) as conn:
        source = await sources.get_source(conn, source_id)
    result = await puller.pull_source(ctx.pool, source, ctx.limits)
    return PullOut(**{name: getattr(result, name) for name in PullOut.model_fields})
