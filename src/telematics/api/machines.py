"""Machines: registration one by one or by CSV, the fleet list with status, readings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

import asyncpg
from fastapi import APIRouter, Depends, Query, Request, Response, status

from telematics.api.context import Admin, Caller, Conn, ReadConn, allow
from telematics.api.schemas import (
    Instant,
    MachineImportOut,
    MachineIn,
    MachineOut,
    MachinePage,
    ReadingOut,
    ReadingPage,
)
from telematics.base.errors import InvalidRequestError, NotFoundError
from telematics.services.csvimport import CsvImportError
from telematics.services.machine_csv import parse_machines
from telematics.store import machine_status, registry
from telematics.store import orders as order_store
from telematics.store import readings as readings_store
from telematics.store.machine_fields import MachineClass
from telematics.store.machine_import import upsert_machines
from telematics.store.machine_status import ONLINE_WITHIN_S
from telematics.store.registry import Machine
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
    machine = await registry.register_machine(conn, body.record())
    response.headers["Location"] = f"/v1/machines/{machine.machine_id}"
    return MachineOut.of(machine)


@router.post(
    "/import/machines",
    tags=["machines"],
    dependencies=[Admin],
    openapi_extra={
        "requestBody": {"required": True, "content": {"text/csv": {"schema": {"type": "string"}}}}
    },
)
async def import_machines(conn: Conn, request: Request) -> MachineImportOut:
    """Register or update machines from CSV (`text/csv`, header row first; docs/registry.md).

    Columns: `machine_id`, `model`, `customer_id` (required), `machine_class`, `oem`,
    `serial_number`, `fuel_tank_l`, `delivered_at`, `name`, `site_lat`, `site_lon`,
    `site_radius_m`. All or nothing: a file with any bad line imports nothing, and the answer
    lists every problem with its line number and field. A known machine is updated; the columns
    a file leaves out keep their stored values.
    """
    try:
        text = (await request.body()).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CsvImportError([f"the file is not UTF-8: {exc}"]) from exc
    parsed = parse_machines(text)
    async with conn.transaction():
        counts = await upsert_machines(conn, parsed.records, parsed.columns)
    return MachineImportOut(
        rows=len(parsed.records), created=counts.created, updated=counts.updated
    )


@router.get("/machines", tags=["machines"])
async def list_machines(
    conn: Conn,
    caller: Annotated[Principal, Depends(allow(Role.EXPERT, Role.CUSTOMER))],
    customer_id: str | None = None,
    model: str | None = None,
    machine_class: MachineClass | None = None,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    online_within_s: Annotated[int, Query(ge=1, le=30 * 86_400)] = ONLINE_WITHIN_S,
) -> MachinePage:
    """Machines ordered by id with their newest reading's time, position and engine hours,
    whether they are online (newest reading at most `online_within_s` old) and their open
    alarms; filtered by customer, model designation or class. A customer sees its own machines
    only.
    """
    if caller.role is Role.CUSTOMER:
        customer_id = caller.subject_id
    page = await machine_status.list_with_status(
        conn,
        customer_id=customer_id,
        model=model,
        machine_class=machine_class,
        after=after,
        limit=limit,
        online_within_s=online_within_s,
    )
    return MachinePage(
        machines=[MachineOut.of_status(m) for m in page],
        next_after=page[-1].machine.machine_id if len(page) == limit else None,
    )


@router.get("/machines/{machine_id}", tags=["machines"])
async def get_machine(
    machine_id: str,
    conn: Conn,
    caller: Caller,
    online_within_s: Annotated[int, Query(ge=1, le=30 * 86_400)] = ONLINE_WITHIN_S,
) -> MachineOut:
    """One machine, with how it is doing (as in the list)."""
    machine = await visible_machine(conn, caller, machine_id)
    return MachineOut.of(machine, await machine_status.status_of(conn, machine_id, online_within_s))


@router.get("/machines/{machine_id}/latest", tags=["machines"])
async def latest_reading(machine_id: str, conn: ReadConn, caller: Caller) -> ReadingOut:
    """The machine's newest reading (by its time); 404 if it has none yet."""
    await visible_machine(conn, caller, machine_id)
    reading = await readings_store.latest_reading(conn, machine_id)
    if reading is None:
        raise NotFoundError("reading of machine", machine_id)
    return ReadingOut.of(reading)


@router.get("/machines/{machine_id}/readings", tags=["machines"])
async def machine_readings(
    machine_id: str,
    conn: ReadConn,
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
