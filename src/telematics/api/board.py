"""The dispatch board's clocks: the SLA timers of every order still open, in one read.

The board lists open orders from `GET /v1/orders` and counts each one's timers down from
`GET /v1/sla/timers`, so a page needs two requests, not one per order. Staff and the monitoring
desk (which chases the same deadlines) read it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from telematics.api.context import Conn, allow
from telematics.store import timers as timer_store
from telematics.store.tokens import Principal, Role

router = APIRouter(prefix="/v1/sla", tags=["orders"])


class TimerOut(BaseModel):
    """One service-level timer of an open order."""

    timer_id: int
    order_id: int
    kind: str = Field(description="callback_check, arrival_deadline, completion_escalation, survey")
    due_at: datetime
    fired_at: datetime | None = Field(description="None while pending")
    verdict: str | None = Field(description="breach, satisfied, moot or due once fired")


@router.get("/timers")
async def open_timers(
    conn: Conn,
    caller: Annotated[Principal, Depends(allow(Role.EXPERT, Role.MONITOR))],
    limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
) -> list[TimerOut]:
    """The SLA timers, pending and fired, of orders neither closed nor cancelled, soonest due
    first.
    """
    return [
        TimerOut(timer_id=t.timer_id, order_id=t.order_id, kind=t.kind.value, due_at=t.due_at,
                 fired_at=t.fired_at, verdict=None if t.verdict is None else t.verdict.value)
        for t in await timer_store.open_order_timers(conn, limit=limit)
    ]  # fmt: skip
