"""`/v1/aemp/clients`: the admin issues, lists and revokes the feed's OAuth clients."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Request, status
from pydantic import BaseModel, Field

from telematics.aemp import clients
from telematics.aemp.auth import feed_state
from telematics.aemp.clients import Client
from telematics.api.context import Admin, Conn
from telematics.api.schemas import ID_PATTERN, BodyIn

router = APIRouter(prefix="/v1/aemp/clients", dependencies=[Admin], tags=["aemp"])


class ClientIn(BodyIn):
    """A client to issue: the customer whose machines it reads."""

    customer_id: str = Field(pattern=ID_PATTERN, examples=["CUST-001"])
    name: str = Field(default="", max_length=200, description="A label, e.g. the fleet tool")


class ClientOut(BaseModel):
    """A client, without its secret."""

    client_id: str
    customer_id: str
    name: str
    created_at: datetime
    revoked_at: datetime | None

    @classmethod
    def of(cls, c: Client) -> ClientOut:
        """From the store's value."""
        return cls(
            client_id=c.client_id,
            customer_id=c.customer_id,
            name=c.name,
            created_at=c.created_at,
            revoked_at=c.revoked_at,
        )


class NewClientOut(ClientOut):
    """An issued client: `client_secret` is shown this once and never again."""

    client_secret: str


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_client(body: ClientIn, conn: Conn) -> NewClientOut:
    """Issue an OAuth client (client credentials) for a customer's fleet tool."""
    client, secret = await clients.create_client(conn, body.customer_id, body.name)
    return NewClientOut(**ClientOut.of(client).model_dump(), client_secret=secret)


@router.get("")
async def list_clients(conn: Conn) -> list[ClientOut]:
    """Every client, newest first (never the secrets)."""
    return [ClientOut.of(c) for c in await clients.list_clients(conn)]


@router.delete("/{client_id}")
async def revoke_client(
    client_id: Annotated[str, Path(pattern=clients.CLIENT_ID.pattern)],
    conn: Conn,
    request: Request,
) -> ClientOut:
    """Revoke a client and its tokens: at once here, within seconds in other workers."""
    revoked = await clients.revoke_client(conn, client_id)
    feed_state(request).tokens.forget()
    return ClientOut.of(revoked)
