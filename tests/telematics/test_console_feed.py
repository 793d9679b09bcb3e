"""The console's live alarm feed: server-sent events over a real socket, in the caller's scope,
bounded, and closed by sign-out."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from telematics.api.session_cookie import COOKIE
from telematics.base.config import Settings
from telematics.console.feed import STREAMS_PER_SESSION
from telematics.console.feed_queries import alarm_mark
from telematics.service import Endpoints, run_service
from telematics.store import resources
from telematics.store.registry import Site, add_machine
from telematics.store.tokens import Role, create_token
from tests.conftest import unique
from tests.telematics.console_live import live_console
from tests.telematics.harness import ADMIN_TOKEN
from tests.telematics.test_orders import engineer as profile
from tests.telematics.test_orders import raise_alarm


@pytest.fixture(scope="module")
async def base_url(pool: asyncpg.Pool) -> AsyncIterator[str]:
    async with live_console(pool) as url:
        yield url


async def _events(lines: AsyncIterator[str]) -> AsyncIterator[tuple[str, dict[str, object]]]:
    name = ""
    async for line in lines:
        if line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("data: "):
            yield name, json.loads(line.removeprefix("data: "))


async def _machine(pool: asyncpg.Pool, customer: str) -> str:
    machine = unique("FM")
    async with pool.acquire() as conn:
        await add_machine(conn, machine, "excavator", customer, Site(30.0, 120.0, 200))
    return machine


async def _signed_in(http: httpx.AsyncClient, token: str, base_url: str) -> str:
    answer = await http.post(
        "/console/session", json={"token": token}, headers={"Origin": base_url}
    )
    assert answer.status_code == 200
    return str(answer.json()["csrf_token"])


async def test_a_new_alarm_is_announced_on_the_open_stream(
    pool: asyncpg.Pool, base_url: str
) -> None:
    customer = unique("FC")
    machine = await _machine(pool, customer)
    async with pool.acquire() as conn:
        _, token = await create_token(conn, Role.CUSTOMER, customer, "feed")
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        await _signed_in(http, token, base_url)
        async with http.stream("GET", "/console/events") as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            events = _events(stream.aiter_lines())
            assert (await anext(events)) == ("alarms", {"newest": 0, "recent": 0})
            async with pool.acquire() as conn:
                alarm_id = await raise_alarm(conn, machine)
            name, data = await anext(events)
    assert (name, data["newest"]) == ("alarms", alarm_id)


async def test_a_customers_mark_moves_with_its_own_alarms_only(pool: asyncpg.Pool) -> None:
    mine, theirs = unique("FC"), unique("FC")
    own_machine, their_machine = await _machine(pool, mine), await _machine(pool, theirs)
    async with pool.acquire() as conn:
        before = await alarm_mark(conn, mine)
        await raise_alarm(conn, their_machine)
        assert await alarm_mark(conn, mine) == before
        own = await raise_alarm(conn, own_machine)
        after = await alarm_mark(conn, mine)
        assert after != before
        assert after.newest == own
        assert (await alarm_mark(conn, None)).newest >= own
        await conn.execute("UPDATE alarms SET updated_at = now() WHERE alarm_id = $1", own)
        assert await alarm_mark(conn, mine) != after  # an ack, a clear, a resolve: any change


async def test_sign_out_closes_the_stream(pool: asyncpg.Pool, base_url: str) -> None:
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        await _signed_in(http, ADMIN_TOKEN, base_url)
        cookie = http.cookies[COOKIE]
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as other_tab:
            other_tab.cookies.set(COOKIE, cookie)
            async with other_tab.stream("GET", "/console/events") as stream:
                events = _events(stream.aiter_lines())
                assert (await anext(events))[0] == "alarms"
                out = await http.delete("/console/session", headers={"Origin": base_url})
                assert out.status_code == 204
                assert [e async for e in events] == [("signed-out", {})]


async def test_streams_are_bounded_per_session_and_refused_to_engineers(
    pool: asyncpg.Pool, base_url: str
) -> None:
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        await _signed_in(http, ADMIN_TOKEN, base_url)
        streams = [http.stream("GET", "/console/events") for _ in range(STREAMS_PER_SESSION)]
        opened = [await s.__aenter__() for s in streams]
        try:
            assert all(o.status_code == 200 for o in opened)
            refused = await http.get("/console/events")
            assert refused.status_code == 409
        finally:
            for s in streams:
                await s.__aexit__(None, None, None)
    async with pool.acquire() as conn:
        engineer = unique("FE")
        await resources.upsert_engineers(conn, [profile(engineer, 30.0, 120.0)])
        _, token = await create_token(conn, Role.ENGINEER, engineer, "feed")
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        await _signed_in(http, token, base_url)
        assert (await http.get("/console/events")).status_code == 403
        assert (await http.get("/console/events", headers={"Cookie": ""})).status_code in (401, 403)
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as anonymous:
        assert (await anonymous.get("/console/events")).status_code == 401


async def test_the_service_stops_with_a_console_stream_open(
    settings: Settings, tmp_path: Path
) -> None:
    cfg = settings.model_copy(
        update={
            "mqtt_client_id": unique("gw-console"), "mqtt_session_expiry_s": 60, "http_port": 0,
            "data_dir": tmp_path, "alarm_notices": False, "console_stream_s": 3600,
        }
    )  # fmt: skip
    stop = asyncio.Event()
    ready: asyncio.Future[Endpoints] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(run_service(cfg, stop, ready.set_result))
    try:
        endpoints = await asyncio.wait_for(asyncio.shield(ready), 30)
        auth = {"Authorization": f"Bearer {endpoints.admin_token}"}
        async with (
            httpx.AsyncClient(base_url=endpoints.http_url, timeout=60) as http,
            http.stream("GET", "/console/events", headers=auth) as stream,
        ):
            assert (await anext(_events(stream.aiter_lines())))[0] == "alarms"
            stop.set()
            # Stopping must not wait out the stream's hour.
            await asyncio.wait_for(task, 60)
    finally:
        stop.set()
        if not task.done():
            task.cancel()


async def test_behind_a_local_tls_proxy_the_cookie_is_secure_and_the_origin_is_https(
    base_url: str,
) -> None:
    host = base_url.removeprefix("http://")
    body = {"token": ADMIN_TOKEN}
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        proxied = {"X-Forwarded-Proto": "https", "Origin": f"https://{host}"}
        answer = await http.post("/console/session", json=body, headers=proxied)
        assert answer.status_code == 200
        assert "Secure" in answer.headers["set-cookie"]
        # The same https origin without the proxy's word is another origin.
        direct = await http.post(
            "/console/session", json=body, headers={"Origin": f"https://{host}"}
        )
        assert direct.status_code == 403
