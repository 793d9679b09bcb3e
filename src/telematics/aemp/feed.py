"""The feed's routes (ISO 15143-3, AEMP 2.0), mounted under `TELEMATICS_AEMP_PREFIX`.

* `GET /Fleet/{pageNumber}`: the fleet snapshot, 100 machines a page, by machine id
  (`GET /Fleet` is page 1);
* `GET /Fleet/Equipment/ID/{equipmentId}`: one machine's snapshot;
* `GET /Fleet/Equipment/ID/{equipmentId}/{dataElement}/{startDateUTC}/{endDateUTC}/{pageNumber}`:
  a time series over `[start, end)`, at most `TELEMATICS_AEMP_MAX_RANGE_DAYS` long.

XML by default, JSON when `Accept` prefers `application/json`. The caller is authenticated,
scoped and rate limited (`auth`) before a connection is taken; a machine outside its scope
answers 404 as if it did not exist. Errors are problem+json, like the rest of the API.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import quote

import asyncpg
import orjson
from fastapi import APIRouter, Depends, Path, Request, Response

from telematics.aemp import document, elements, store
from telematics.aemp.auth import FeedCallerDep
from telematics.aemp.elements import ITEM_NAME, series_named
from telematics.aemp.summary_elements import (
    SUMMARY_SERIES,
    summary_series_page,
    work_summary_elements,
)
from telematics.aemp.xmltext import parse_utc
from telematics.api.context import Context
from telematics.base.db import acquire
from telematics.base.errors import InvalidRequestError, NotFoundError

router = APIRouter(tags=["aemp"])

_CONTENT: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "An ISO 15143-3 document",
        "content": {document.XML_MEDIA_TYPE: {}, "application/json": {}},
    },
    429: {"description": "Too Many Requests (see Retry-After)"},
}

PageNumber = Annotated[int, Path(ge=1, le=1_000_000, description="Page, from 1")]
EquipmentId = Annotated[str, Path(min_length=1, max_length=200)]
Instant = Annotated[
    str, Path(min_length=1, max_length=40, description="UTC instant, YYYY-MM-DDThh:mm:ssZ")
]


async def feed_connection(
    request: Request, ctx: Context, caller: FeedCallerDep
) -> AsyncIterator[asyncpg.Connection]:
    """A pooled connection for one request, taken only once the caller is known and counted;
    on the read replica when there is one (the feed only reads).
    """
    pool = ctx.pool if ctx.reads is None else ctx.reads.pool_for(caller.key, request.headers)
    async with acquire(pool, timeout_s=ctx.acquire_timeout_s) as conn:
        yield conn


FeedConn = Annotated[asyncpg.Connection, Depends(feed_connection)]


def wants_json(accept: str | None) -> bool:
    """Whether `Accept` prefers JSON to XML. A named type beats a wildcard of the same weight;
    with no preference, XML (the standard's default).
    """
    json_q = xml_q = 0.0
    for entry in (accept or "").split(",")[:50]:
        media, _, params = entry.strip().partition(";")
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.strip().lower() == "q":
                try:
                    q = min(1.0, max(0.0, float(value)))
                except ValueError:
                    q = 0.0
        media = media.strip().lower()
        if media in ("application/json", "text/json"):
            json_q = max(json_q, q)
        elif media in ("application/xml", "text/xml"):
            xml_q = max(xml_q, q)
        elif media in ("*/*", "application/*"):
            xml_q = max(xml_q, q - 0.001)
    return json_q > 0 and json_q > xml_q


def _answer(
    request: Request, xml: Callable[[], bytes], json: Callable[[], dict[str, Any]]
) -> Response:
    if wants_json(request.headers.get("accept")):
        return Response(orjson.dumps(json()), media_type="application/json")
    return Response(xml(), media_type=document.XML_MEDIA_TYPE)


def _base(request: Request, ctx: Context) -> str:
    return str(request.base_url).rstrip("/") + ctx.settings.aemp_prefix


@router.get("/Fleet", responses=_CONTENT, response_class=Response)
async def fleet_first(
    request: Request, ctx: Context, caller: FeedCallerDep, conn: FeedConn
) -> Response:
    """The fleet snapshot's first page (as `/Fleet/1`)."""
    return await fleet(1, request, ctx, caller, conn)


@router.get("/Fleet/{pageNumber}", responses=_CONTENT, response_class=Response)
async def fleet(
    pageNumber: PageNumber,  # noqa: N803 - the standard's name, shown in the OpenAPI
    request: Request,
    ctx: Context,
    caller: FeedCallerDep,
    conn: FeedConn,
) -> Response:
    """The fleet snapshot: 100 machines a page by id, each with its newest reading's elements."""
    now = datetime.now(UTC)
    total, machines = await store.fleet_page(
        conn, caller.customer_id, pageNumber, document.PAGE_SIZE
    )
    summaries = await work_summary_elements(conn, [m.header.machine_id for m in machines])
    fleet = [
        [
            elements.header(m.header),
            *elements.snapshot(m.latest, m.fuel_tank_l),
            *summaries.get(m.header.machine_id, []),
        ]
        for m in machines
    ]
    base = _base(request, ctx)
    links = document.page_links(pageNumber, total, lambda n: f"{base}/Fleet/{n}")
    return _answer(
        request,
        lambda: document.fleet_xml(now, links, fleet),
        lambda: document.fleet_json(now, links, fleet),
    )


@router.get("/Fleet/Equipment/ID/{equipmentId}", responses=_CONTENT, response_class=Response)
async def equipment(
    equipmentId: EquipmentId,  # noqa: N803
    request: Request,
    caller: FeedCallerDep,
    conn: FeedConn,
) -> Response:
    """One machine's snapshot; 404 for a machine that is not the caller's to see."""
    now = datetime.now(UTC)
    machine = await store.machine_snapshot(conn, equipmentId, caller.customer_id)
    summaries = await work_summary_elements(conn, [equipmentId])
    found = [
        elements.header(machine.header),
        *elements.snapshot(machine.latest, machine.fuel_tank_l),
        *summaries.get(equipmentId, []),
    ]
    return _answer(
        request,
        lambda: document.equipment_xml(now, found),
        lambda: document.equipment_json(now, found),
    )


def _range(start_text: str, end_text: str, max_days: int) -> tuple[datetime, datetime]:
    start, end = parse_utc(start_text), parse_utc(end_text)
    if start is None or end is None:
        raise InvalidRequestError(
            "startDateUTC and endDateUTC must be UTC instants like 2024-05-01T00:00:00Z"
        )
    if start >= end:
        raise InvalidRequestError("startDateUTC must be before endDateUTC")
    if end - start > timedelta(days=max_days):
        raise InvalidRequestError(f"a series request spans at most {max_days} days")
    return start, end


@router.get(
    "/Fleet/Equipment/ID/{equipmentId}/{dataElement}/{startDateUTC}/{endDateUTC}/{pageNumber}",
    responses=_CONTENT,
    response_class=Response,
)
async def series(
    equipmentId: EquipmentId,  # noqa: N803
    dataElement: Annotated[str, Path(min_length=1, max_length=64)],  # noqa: N803
    startDateUTC: Instant,  # noqa: N803
    endDateUTC: Instant,  # noqa: N803
    pageNumber: PageNumber,  # noqa: N803
    request: Request,
    ctx: Context,
    caller: FeedCallerDep,
    conn: FeedConn,
) -> Response:
    """A time series of one machine over `[startDateUTC, endDateUTC)`, 100 points a page,
    oldest first. `dataElement` takes the standard's names and the vendors' (docs/aemp.md).
    """
    now = datetime.now(UTC)
    named = series_named(dataElement)
    if named is None:
        raise NotFoundError("data element", dataElement)
    start, end = _range(startDateUTC, endDateUTC, ctx.settings.aemp_max_range_days)
    machine = await store.machine_snapshot(conn, equipmentId, caller.customer_id)
    if named in SUMMARY_SERIES:
        total, points = await summary_series_page(
            conn,
            named,
            equipmentId,
            machine.fuel_tank_l,
            start,
            end,
            pageNumber,
            document.PAGE_SIZE,
        )
    else:
        page = await store.series_page(
            conn, named, machine, start, end, pageNumber, document.PAGE_SIZE
        )
        total, points = page.total, page.points
    header = elements.header(machine.header)
    # The links repeat the range as the client wrote it (it parsed): following them asks for
    # exactly the same range, fractions of a second included.
    path = (
        f"{_base(request, ctx)}/Fleet/Equipment/ID/{quote(equipmentId, safe='')}/{named.value}/"
        f"{quote(startDateUTC, safe=':')}/{quote(endDateUTC, safe=':')}"
    )
    links = document.page_links(pageNumber, total, lambda n: f"{path}/{n}")
    return _answer(
        request,
        lambda: document.series_xml(named.value, now, links, header, points),
        lambda: document.series_json(named.value, ITEM_NAME[named], now, links, header, points),
    )
