"""What the console's pages read beyond the first slice: the knowledge base's texts in the
language asked for, the steps an expert tried before dispatching, shown to the engineer, and
whether a customer answered an order's survey."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import httpx
import pytest

from telematics.store.tokens import Role, create_token
from tests.telematics.console_live import KB
from tests.telematics.harness import ADMIN_TOKEN, api_client
from tests.telematics.test_orders import World, build, raise_alarm

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
async def http(pool: asyncpg.Pool) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(pool, knowledge=KB) as client:
        yield client


async def _bearer(pool: asyncpg.Pool, role: Role, subject: str) -> dict[str, str]:
    async with pool.acquire() as conn:
        _, token = await create_token(conn, role, subject, "console data test")
    return {"Authorization": f"Bearer {token}"}


async def _world(pool: asyncpg.Pool) -> tuple[World, int]:
    async with pool.acquire() as conn:
        world = await build(conn)
        return world, await raise_alarm(conn, world.machine_id)


async def test_an_alarm_reads_in_the_language_asked_for(
    pool: asyncpg.Pool, http: httpx.AsyncClient
) -> None:
    world, alarm_id = await _world(pool)
    english = await http.get(f"/v1/alarms/{alarm_id}", headers=ADMIN)
    chinese = await http.get(
        f"/v1/alarms/{alarm_id}", headers={**ADMIN, "Accept-Language": "zh-CN,zh;q=0.9,en;q=0.5"}
    )
    assert english.headers["content-language"] == "en"
    assert chinese.headers["content-language"] == "zh-CN"
    assert "Accept-Language" in chinese.headers["vary"]
    en, zh = english.json(), chinese.json()
    assert en["diagnosis"]["title"] == "Low engine oil pressure"
    assert (zh["diagnosis"]["title"], zh["alarm"]["title"]) == (
        "发动机机油压力低",
        "发动机机油压力低",
    )
    assert zh["diagnosis"]["lang"] == "zh-CN"
    assert zh["diagnosis"]["remote_steps"] == list(
        KB.diagnose("low_oil_pressure", "zh-CN").remote_steps
    )
    assert [p["part_no"] for p in zh["diagnosis"]["parts"]] == [
        p["part_no"] for p in en["diagnosis"]["parts"]
    ]
    assert zh["diagnosis"]["parts"][0]["name"] == "机油滤清器"
    assert zh["diagnosis"]["skill_names"][0].startswith("柴油发动机")
    # ?lang= wins over the header; an unknown one falls back to the header, then English.
    asked = await http.get(
        f"/v1/alarms/{alarm_id}?lang=en", headers={**ADMIN, "Accept-Language": "zh-CN"}
    )
    assert asked.json()["diagnosis"]["title"] == "Low engine oil pressure"
    odd = await http.get(f"/v1/alarms/{alarm_id}?lang=fr", headers=ADMIN)
    assert odd.headers["content-language"] == "en"
    queue = await http.get(
        f"/v1/alarms?machine_id={world.machine_id}", headers={**ADMIN, "Accept-Language": "zh"}
    )
    assert [a["title"] for a in queue.json()["alarms"]] == ["发动机机油压力低"]


async def test_the_engineer_sees_the_steps_tried_and_the_customer_whether_it_answered(
    pool: asyncpg.Pool, http: httpx.AsyncClient
) -> None:
    world, alarm_id = await _world(pool)
    steps = list(KB.diagnose("low_oil_pressure").remote_steps[:2])
    sent = await http.post(
        f"/v1/alarms/{alarm_id}/dispatch", headers=ADMIN, json={"steps_tried": steps}
    )
    assert sent.status_code == 201, sent.text
    order_id = sent.json()["order_id"]
    engineer = await _bearer(pool, Role.ENGINEER, world.far)
    (mine,) = (await http.get("/v1/orders", headers=engineer)).json()
    assert (mine["order_id"], mine["steps_tried"]) == (order_id, steps)
    one = (await http.get(f"/v1/orders/{order_id}", headers=engineer)).json()
    assert one["steps_tried"] == steps
    # Ticked in English, read in Chinese: the knowledge base's same steps, in the same order.
    zh = {**engineer, "Accept-Language": "zh-CN"}
    one = (await http.get(f"/v1/orders/{order_id}", headers=zh)).json()
    assert one["steps_tried"] == list(KB.diagnose("low_oil_pressure", "zh-CN").remote_steps[:2])
    for action in ("accept", "start-travel", "arrive", "complete"):
        answer = await http.post(f"/v1/orders/{order_id}/{action}", headers=engineer)
        assert answer.status_code == 200, answer.text
    customer = await _bearer(pool, Role.CUSTOMER, world.customer_id)
    (theirs,) = (await http.get("/v1/orders", headers=customer)).json()
    assert (theirs["view"], theirs["survey_answered"]) == ("customer", False)
    assert "steps_tried" not in theirs
    survey = {
        "customer_id": world.customer_id, "order_id": order_id, "channel": "web",
        "answered_at": datetime.now(UTC).isoformat(), "answers": {"sat_overall": 9},
    }  # fmt: skip
    assert (await http.post("/v1/surveys", headers=customer, json=survey)).status_code == 201
    one = (await http.get(f"/v1/orders/{order_id}", headers=customer)).json()
    assert one["survey_answered"] is True


async def test_steps_tried_are_bounded_like_any_request_body(
    pool: asyncpg.Pool, http: httpx.AsyncClient
) -> None:
    _, alarm_id = await _world(pool)
    for junk in (["x" * 1001], [""], ["step"] * 51, "not a list"):
        answer = await http.post(
            f"/v1/alarms/{alarm_id}/dispatch", headers=ADMIN, json={"steps_tried": junk}
        )
        assert answer.status_code == 422, junk
        assert answer.headers["content-type"].startswith("application/problem+json")
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM orders WHERE alarm_id = $1", alarm_id) == 0
