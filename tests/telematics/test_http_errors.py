"""A client's fault is a 4xx in problem+json, never a 500: ids, NUL bytes, dates, foreign keys,
number ranges and types, routes that do not exist, bodies too large or left out.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from diagnosis.knowledge import KnowledgeBase
from dispatch.sla import SlaPolicy
from telematics.api.app import create_app
from telematics.api.context import ApiContext
from telematics.base.metrics import Metrics
from telematics.services.dispatching import dispatch_alarm
from telematics.store.registry import SourceDirectory
from telematics.wire.decode import Limits
from tests.conftest import unique
from tests.telematics.test_orders import build, raise_alarm

ADMIN = "errors-admin"
AUTH = {"Authorization": f"Bearer {ADMIN}"}
KB = KnowledgeBase.load()
HUGE = "99999999999999999999"


@pytest.fixture
async def http(pool: asyncpg.Pool) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(
        ApiContext(
            pool=pool, directory=SourceDirectory(), metrics=Metrics(), admin_token=ADMIN,
            limits=Limits(), knowledge=KB,
        )
    )  # fmt: skip
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://api", headers=AUTH
    ) as client:
        yield client


@pytest.fixture
async def order(pool: asyncpg.Pool) -> tuple[int, int]:
    """A dispatched order and its alarm."""
    async with pool.acquire() as conn:
        w = await build(conn)
        alarm_id = await raise_alarm(conn, w.machine_id)
    result = await dispatch_alarm(
        pool, KB, SlaPolicy(), alarm_id, actor="t", engineer_id=None, note=""
    )
    return result.order.order_id, alarm_id


def assert_client_fault(response: httpx.Response, *statuses: int) -> None:
    allowed = statuses or (400, 404, 409, 413, 422)
    assert response.status_code in allowed, (response.status_code, response.text)
    assert response.headers["content-type"] == "application/problem+json", response.headers
    problem = response.json()
    assert problem["status"] == response.status_code
    assert problem["title"]


@pytest.mark.parametrize(
    "path",
    [
        f"/v1/orders/{HUGE}",
        f"/v1/orders/{HUGE}/events",
        f"/v1/alarms/{HUGE}",
        f"/v1/alarms/{HUGE}/events",
        f"/v1/orders?before={HUGE}",
        f"/v1/alarms?before={HUGE}",
        f"/v1/ingest/rejects?before={HUGE}",
        f"/v1/orders/-{HUGE}",
    ],
)
async def test_ids_beyond_int64_are_a_client_fault(http: httpx.AsyncClient, path: str) -> None:
    assert_client_fault(await http.get(path))


@pytest.mark.parametrize("raw", ["%201", "1%20", "+1", "1_0", "%D9%A1", "0x1"])
async def test_an_id_in_the_path_is_digits_only(
    http: httpx.AsyncClient, order: tuple[int, int], raw: str
) -> None:
    """`int()` reads " 1" as 1: an ack or a revocation must not reach row 1 by such a path."""
    _, alarm_id = order
    assert (await http.get(f"/v1/alarms/{alarm_id}")).status_code == 200
    assert_client_fault(await http.post(f"/v1/alarms/{raw}/ack", json={}), 422)
    assert_client_fault(await http.delete(f"/v1/tokens/{raw}"), 422)


async def test_revoking_a_token_id_beyond_int64_is_a_client_fault(
    http: httpx.AsyncClient,
) -> None:
    assert_client_fault(await http.delete(f"/v1/tokens/{HUGE}"))


@pytest.mark.parametrize(
    "path",
    [
        "/v1/machines/EX%00",
        "/v1/machines/EX%00/readings",
        "/v1/engineers/E%00",
        "/v1/warehouses/W%00",
        "/v1/machines?customer_id=C%00",
        "/v1/alarms?fault=x%00",
        "/v1/parts?after=%00",
        "/v1/orders?state=%00",
        "/v1/ingest/rejects?reason=%00",
    ],
)
async def test_nul_in_paths_and_queries_is_a_client_fault(
    http: httpx.AsyncClient, path: str
) -> None:
    assert_client_fault(await http.get(path))


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/parts", {"part_no": "P-NUL", "name": "a\u0000b"}),
        ("POST", "/v1/engineers", {"engineer_id": "E-NUL", "name": "a\u0000b"}),
        ("POST", "/v1/warehouses", {"warehouse_id": "W-NUL", "name": "\u0000", "lat": 1, "lon": 1}),
        ("POST", "/v1/tokens", {"role": "expert", "subject_id": "x", "name": "a\u0000"}),
    ],
)
async def test_nul_in_bodies_is_a_client_fault(
    http: httpx.AsyncClient, method: str, path: str, body: object
) -> None:
    assert_client_fault(await http.request(method, path, json=body), 422)


async def test_nul_in_an_alarm_note_is_a_client_fault(
    http: httpx.AsyncClient, order: tuple[int, int]
) -> None:
    _, alarm_id = order
    response = await http.post(f"/v1/alarms/{alarm_id}/notes", json={"text": "x\u0000"})
    assert_client_fault(response, 422)


@pytest.mark.parametrize(
    "query",
    [
        "end=0001-01-01T00:10:00Z",
        "start=0001-01-01T00:00:00%2B01:00&end=0001-01-01T05:00:00Z",
        "start=9999-12-31T23:00:00Z&end=9999-12-31T23:59:59-05:00",
    ],
)
async def test_dates_beyond_year_1_to_9999_are_a_client_fault(
    http: httpx.AsyncClient, pool: asyncpg.Pool, query: str
) -> None:
    machine = unique("DT")
    created = await http.post(
        "/v1/machines", json={"machine_id": machine, "model": "excavator", "customer_id": "C"}
    )
    assert created.status_code == 201
    assert_client_fault(await http.get(f"/v1/machines/{machine}/readings?{query}"))


@pytest.mark.parametrize(
    "query",
    ["since=0001-01-01T00:00:00%2B14:00", "until=9999-12-31T23:59:59-14:00"],
)
async def test_alarm_filters_beyond_year_1_to_9999_are_a_client_fault(
    http: httpx.AsyncClient, query: str
) -> None:
    assert_client_fault(await http.get(f"/v1/alarms?{query}"))


@pytest.mark.parametrize(
    "path",
    [
        "/v1/sla/breaches?since=2026-01-01T00:00:00",
        "/v1/alarms?since=2026-01-01T00:00:00",
    ],
)
async def test_a_time_without_an_offset_is_a_client_fault(
    http: httpx.AsyncClient, path: str
) -> None:
    """A time without a UTC offset names no instant: refused wherever a time is asked for
    (the satisfaction index and the KPIs: tests/telematics/test_kpis.py)."""
    response = await http.get(path)
    assert_client_fault(response, 422)
    assert "UTC offset" in response.text


async def test_transfer_to_an_unknown_engineer_is_a_client_fault(
    http: httpx.AsyncClient, order: tuple[int, int]
) -> None:
    order_id, _ = order
    response = await http.post(
        f"/v1/orders/{order_id}/transfer", json={"to_engineer_id": unique("NOBODY")}
    )
    assert_client_fault(response)


async def test_transfer_via_an_unknown_warehouse_is_a_client_fault(
    http: httpx.AsyncClient, order: tuple[int, int], pool: asyncpg.Pool
) -> None:
    order_id, _ = order
    someone = unique("ENG")
    async with pool.acquire() as conn:
        await conn.execute("INSERT INTO engineers (engineer_id, name) VALUES ($1, 'x')", someone)
    response = await http.post(
        f"/v1/orders/{order_id}/transfer",
        json={"to_engineer_id": someone, "pickup_warehouse_id": unique("NOWH")},
    )
    assert_client_fault(response)


async def test_half_a_home_location_is_a_client_fault(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/v1/engineers", json={"engineer_id": unique("EH"), "name": "Half", "home_lat": 10.0}
    )
    assert_client_fault(response, 422)


async def test_stock_beyond_int32_is_a_client_fault(http: httpx.AsyncClient) -> None:
    response = await http.put(
        "/v1/stock",
        json=[
            {"location_kind": "warehouse", "location_id": "W", "part_no": "P", "quantity": 2**31}
        ],
    )
    assert_client_fault(response, 422)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/models/excavator/train", {"days": True}),
        ("/v1/warehouses", {"warehouse_id": "W-T", "name": "W", "lat": True, "lon": 1}),
        ("/v1/ingest/rejects/replay", {"limit": True}),
        ("/v1/ingest/rejects/replay", {"limit": "5"}),
        ("/v1/dispatch", {"alarm_ids": [True]}),
    ],
)
async def test_numbers_are_strict(http: httpx.AsyncClient, path: str, body: object) -> None:
    response = await http.post(path, json=body)
    assert_client_fault(response, 422)
    assert response.json()["errors"]


async def test_an_unknown_route_is_a_problem(http: httpx.AsyncClient) -> None:
    assert_client_fault(await http.get("/no/such/route"), 404)


async def test_a_wrong_method_is_a_problem(http: httpx.AsyncClient) -> None:
    response = await http.delete("/v1/machines")
    assert_client_fault(response, 405)
    assert response.headers["allow"]


async def test_an_ack_without_a_body_works(http: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        w = await build(conn)
        alarm_id = await raise_alarm(conn, w.machine_id)
    response = await http.post(f"/v1/alarms/{alarm_id}/ack")
    assert response.status_code == 200, response.text
    assert response.json()["acknowledged_by"] == "admin:admin"


async def test_actions_with_only_optional_fields_need_no_body(
    http: httpx.AsyncClient, order: tuple[int, int]
) -> None:
    order_id, alarm_id = order
    assert (await http.post(f"/v1/alarms/{alarm_id}/confirm")).status_code == 200
    assert (await http.post(f"/v1/orders/{order_id}/contact")).status_code == 200


async def test_a_refused_transition_reads_as_refused(
    http: httpx.AsyncClient, order: tuple[int, int]
) -> None:
    order_id, _ = order
    response = await http.post(f"/v1/orders/{order_id}/close", json={})
    assert_client_fault(response, 409)
    detail = response.json()["detail"]
    assert "cannot close" in detail
    assert "already exists" not in detail


async def test_a_body_over_the_limit_is_refused_before_it_is_read(
    http: httpx.AsyncClient,
) -> None:
    big = b'{"part_no": "P-BIG", "name": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    response = await http.post(
        "/v1/parts", content=big, headers={"content-type": "application/json"}
    )
    assert_client_fault(response, 413)


async def test_a_streamed_body_over_the_limit_is_refused(http: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"part_no": "P-BIG", "name": "'
        for _ in range(40):
            yield b"x" * 64 * 1024
        yield b'"}'

    response = await http.post(
        "/v1/parts", content=chunks(), headers={"content-type": "application/json"}
    )
    assert "content-length" not in response.request.headers
    assert_client_fault(response, 413)


async def test_a_csv_import_may_be_larger_than_a_json_body(http: httpx.AsyncClient) -> None:
    lines = ["part_no,name"] + [f"P-CSV-{i:07d},part number {i}" for i in range(80_000)]
    text = "\n".join(lines) + "\n"
    assert len(text) > 2 * 1024 * 1024
    response = await http.post(
        "/v1/import/parts", content=text, headers={"content-type": "text/csv"}
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"kind": "parts", "rows": 80_000}
