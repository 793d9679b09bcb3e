"""Machines, engineers and readings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

import asyncpg
from fastapi import APIRouter, Depends, Query, Response, status

from telematics.api.context import Admin, Caller, Conn, allow
from telematics.api.schemas import (
    Instant,
    MachineIn,
    MachineOut,
    MachinePage,
    ReadingOut,
    ReadingPage,
)
from telematics.base.errors import InvalidRequestError, NotFoundError
from telematics.store import orders as order_store
from telematics.store import readings as readings_store
from telematics.store import registry
from telematics.store.registry import Machine, Site
from telematics.store.tokens import Principal, Role

router = APIRouter(prefix="/v1")


async def visible_machine(conn: asyncpg.Connection, caller: Principal, machine_id: str) -> Machine:
    """The machine if the caller may see it: staff see all, a customer only its own, an engineer
    those behind an order assigned to them (dispatched up to completed).

    Raises:
        NotFoundError: No such machine, or not the caller's to see: the answer does not tell
            the two apart, so machine ids of others do not leak.
    """
    machine = await registry.get_machine(conn, machine_id)
    if caller.role is Role.CUSTOMER and machine.customer_id != caller.subject_id:
        raise NotFoundError("machine", machine_id)
    if caller.role is Role.ENGINEER and not await order_store.engineer_serves(
        conn, caller.subject_id, machine_id=machine_id
    ):
        raise NotFoundError("machine", machine_id)
    return machine


@router.post(
    "/machines", status_code=status.HTTP_201_CREATED, tags=["machines"], dependencies=[Admin]
)
async def register_machine(body: MachineIn, conn: Conn, response: Response) -> MachineOut:
    """Register a machine, so its telemetry is accepted."""
    site = Site(body.site.lat, body.site.lon, body.site.radius_m) if body.site else None
    machine = await registry.add_machine(conn, body.machine_id, body.model, body.customer_id, site)
    response.headers["Location"] = f"/v1/machines/{machine.machine_id}"
    return MachineOut.of(machine)


@router.get("/machines", tags=["machines"])
async def list_machines(
    conn: Conn,
    caller: Annotated[Principal, Depends(allow(Role.EXPERT, Role.CUSTOMER))],
    customer_id: str | None = None,
    model: str | None = None,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> MachinePage:
    """Machines ordered by id, optionally filtered by customer or model; a customer sees its
    own machines only.
    """
    if caller.role is Role.CUSTOMER:
        customer_id = caller.subject_id
    machines = await registry.list_machines(
        conn, customer_id=customer_id, model=model, after=after, limit=limit
    )
    return MachinePage(
        machines=[MachineOut.of(m) for m in machines],
        next_after=machines[-1].machine_id if len(machines) == limit else None,
    )


@router.get("/machines/{machine_id}", tags=["machines"])
async def get_machine(machine_id: str, conn: Conn, caller: Caller) -> MachineOut:
    """One machine."""
    return MachineOut.of(await visible_machine(conn, caller, machine_id))


@router.get("/machines/{machine_id}/readings", tags=["machines"])
async def machine_readings(
    machine_id: str,
    conn: Conn,
    caller: Caller,
    start: Instant | None = None,
    end: Instant | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> ReadingPage:
    """Readings with `start <= ts < end` (default: the last hour), oldest first, paged.

    When `next_start` is set in the answer, ask again with `start=next_start` for the rest.
    """
    await visible_machine(conn, caller, machine_id)  # 404 for an unknown machine, not no rows
    end = end or datetime.now(UTC)
    start = start or end - timedelta(hours=1)
    if start.tzinfo is None or end.tzinfo is None:
        raise InvalidRequestError("start and end need a UTC offset")
    if start >= end:
        raise InvalidRequestError("start must be before end")
    rows = await readings_store.readings_between(conn, machine_id, start, end, limit)
    more = len(rows) == limit
    return ReadingPage(
        machine_id=machine_id,
        readings=[ReadingOut.of(r) for r in rows],
        # ts resolution is the millisecond, so the next page starts 1 ms after the last reading.
        next_start=rows[-1].ts + timedelta(milliseconds=1) if more else None,
    )
