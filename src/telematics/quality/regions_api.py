"""A machine's service region over HTTP: KPIs and the satisfaction index are reported by it.

Regions are free identifiers (`east`, `CN-31`); a machine without one is counted in the totals
and under no region.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, Field

from telematics.api.context import Conn, allow
from telematics.api.schemas import ID_PATTERN, BodyIn
from telematics.quality import survey_store
from telematics.store.tokens import Principal

router = APIRouter(prefix="/v1", tags=["machines"])


class RegionIn(BodyIn):
    """A machine's service region (null clears it)."""

    region: str | None = Field(pattern=ID_PATTERN)


class RegionOut(BaseModel):
    """The machine's region now."""

    machine_id: str
    region: str | None


@router.put("/machines/{machine_id}/region")
async def put_region(
    machine_id: Annotated[str, Path(pattern=ID_PATTERN)],
    body: RegionIn,
    conn: Conn,
    caller: Annotated[Principal, Depends(allow())],
) -> RegionOut:
    """Set or clear the machine's service region (admin)."""
    await survey_store.set_region(conn, machine_id, body.region)
    return RegionOut(machine_id=machine_id, region=body.region)
