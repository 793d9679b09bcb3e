"""The control centre's pages in a real browser (Debian's Chromium driven by Playwright), by
what a person sees and clicks: the queue filtered by region and sorted; an alarm with its rule
limits on the chart, its fault-code history, confirmed, escalated and dispatched to an engineer
the expert picked from the suggestions; the dispatch board counting down with a breach in red;
the map; the KPI dashboards by period; the monitoring desk working a callback, in Chinese.

As in test_console_browser.py, every test asserts that each request went to the service's
origin and that the page logged no error. One browser and one server for the module.
"""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from playwright.async_api import Browser, Page

from dispatch.orders import Accept, Arrive, StartTravel
from dispatch.sla import SlaPolicy, TimerKind, TimerSpec, Verdict, judge
from telematics.quality.survey_store import SurveyRecord, insert_survey, set_region
from telematics.services.dispatching import act, dispatch_alarm
from telematics.store import desk
from telematics.store import orders as order_store
from telematics.store.tokens import Role
from tests.conftest import unique
from tests.telematics import test_console_browser as console_browser
from tests.telematics.console_live import KB, live_console
from tests.telematics.test_console_browser import (
    Watch,
    _page,
    _raise_with_readings,
    _shot,
    _sign_in,
    _token,
)
from tests.telematics.test_orders import World, build
from tests.telematics.test_satisfaction import acsi_answers

pytestmark = pytest.mark.timeout(120)
base_url, browser = console_browser.base_url, console_browser.browser  # shared fixtures
RED = "rgb(180, 35, 24)"  # --critical in console.css


async def _expert(pool: asyncpg.Pool, browser: Browser, base_url: str) -> tuple[Page, Watch]:
    page, watch = await _page(browser, base_url, viewport={"width": 1280, "height": 900})
    await _sign_in(page, base_url, await _token(pool, Role.EXPERT, unique("expert")))
    await page.get_by_role("heading", name="Alarm queue").wait_for()
    return page, watch


async def _painted(page: Page, name: str) -> int:
    canvas = page.get_by_role("img", name=name).locator("canvas")
    return int(
        await canvas.evaluate(
            "c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
            " let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n; }"
        )
    )


async def test_expert_filters_sorts_and_works_an_alarm_to_a_chosen_engineer(
    pool: asyncpg.Pool, base_url: str, browser: Browser
) -> None:
    region = unique("east")
    async with pool.acquire() as conn:
        world = await build(conn)
        await set_region(conn, world.machine_id, region)
        alarm_id = await _raise_with_readings(conn, world.machine_id)
    page, watch = await _expert(pool, browser, base_url)
    row = page.get_by_role("row").filter(has_text=world.machine_id)
    await row.wait_for()
    await page.get_by_role("combobox", name="Region").select_option(region)
    await page.wait_for_function("() => document.querySelectorAll('tbody tr').length === 1")
    assert f"region={region}" in page.url
    await page.get_by_role("button", name="Machine").click()
    assert await page.get_by_role("columnheader", name="Machine").get_attribute("aria-sort") == (
        "ascending"
    )
    assert "sort=machine" in page.url
    await row.get_by_role("link", name="Low engine oil pressure").click()
    await page.get_by_role("heading", name=f"Alarm {alarm_id}: Low engine oil pressure").wait_for()
    # The rule book's limits are drawn with the signal, and named in its legend.
    chart = page.get_by_role("figure").filter(has_text="Oil pressure (kPa)")
    await chart.get_by_text("Alarm limit").wait_for()
    assert await _painted(page, "Oil pressure (kPa)") > 500
    await page.get_by_role("heading", name="Fault-code history of the machine").wait_for()
    # Confirm the diagnosis as it stands, then hand the alarm to the 2nd line.
    assert await page.get_by_label("The fault is").locator("option").count() > 1
    await page.get_by_role("button", name="Confirm diagnosis").click()
    await page.get_by_text("Low engine oil pressure (low_oil_pressure)", exact=True).wait_for()
    await page.get_by_label("Hand to").select_option(label="2nd line (expert)")
    await page.get_by_role("button", name="Escalate").click()
    await page.get_by_role("definition").filter(has_text="2nd line (expert)").wait_for()
    # The suggestion says who and why; the expert picks the other one.
    suggested = page.get_by_role("row").filter(has_text="Suggested")
    await suggested.filter(has_text=world.far).get_by_text("Van holds the parts").wait_for()
    near = page.get_by_role("row").filter(has_text=world.near)
    await near.get_by_text(f"Pickup at {world.warehouse}").wait_for()
    await _shot(page, "alarm-dispatch")
    await page.get_by_role("radio", name=world.near).check()
    await page.get_by_role("button", name="Dispatch an engineer").click()
    await page.get_by_role("status").filter(has_text=f"sent to {world.near}").wait_for()
    async with pool.acquire() as conn:
        engineer = await conn.fetchval(
            "SELECT engineer_id FROM orders WHERE alarm_id = $1", alarm_id
        )
        line = await conn.fetchval("SELECT support_line FROM alarms WHERE alarm_id = $1", alarm_id)
    assert (engineer, line) == (world.near, 2)
    watch.check()


async def _dispatched(pool: asyncpg.Pool) -> tuple[int, World]:
    async with pool.acquire() as conn:
        world = await build(conn)
        alarm_id = await _raise_with_readings(conn, world.machine_id)
    result = await dispatch_alarm(
        pool, KB, SlaPolicy(), alarm_id, actor="expert:t", engineer_id=None, note=""
    )
    return result.order.order_id, world


async def test_board_counts_down_and_shows_breaches_in_red_then_the_map(
    pool: asyncpg.Pool, base_url: str, browser: Browser
) -> None:
    (on_time, _), (late, _), (missed, world) = [await _dispatched(pool) for _ in range(3)]
    arrived, _ = await _dispatched(pool)
    for command in (Accept(), StartTravel(), Arrive()):
        await act(pool, SlaPolicy(), arrived, command, actor="engineer:t")
    machine_id = world.machine_id
    async with pool.acquire() as conn:
        # One callback overdue now (the page turns it red itself), one arrival fired as a breach.
        await conn.execute(
            "UPDATE sla_timers SET due_at = now() - interval '2 minutes' "
            "WHERE order_id = $1 AND kind = 'callback_check'",
            late,
        )
        await conn.execute(
            "UPDATE sla_timers SET state = 'fired', fired_at = now(), verdict = 'breach' "
            "WHERE order_id = $1 AND kind = 'arrival_deadline'",
            missed,
        )
    page, watch = await _expert(pool, browser, base_url)
    await page.get_by_role("link", name="Dispatch board").click()
    await page.get_by_role("heading", name="Dispatch board").wait_for()
    fine = page.get_by_role("row", name=f"Order {on_time}", exact=True)
    clock = fine.get_by_role("timer").filter(has_text="Callback")
    first = await clock.inner_text()
    assert re.search(r"Callback \d+:\d\d:\d\d", first)
    for _ in range(50):  # counting down in the page, second by second, without a reload
        await asyncio.sleep(0.1)
        if await clock.inner_text() != first:
            break
    else:
        pytest.fail(f"the callback clock stayed at {first!r}")
    overdue = page.get_by_role("row", name=f"Order {late}", exact=True).get_by_role("alert")
    await overdue.filter(has_text="overdue").wait_for()
    breach = page.get_by_role("row", name=f"Order {missed}", exact=True).get_by_role("alert")
    await breach.filter(has_text="Arrival missed").wait_for()
    # An engineer on site: the arrival clock is met, not counting down (its timer is judged
    # only when due); the completion clock still runs.
    on_site = page.get_by_role("row", name=f"Order {arrived}", exact=True)
    await on_site.get_by_text("Arrival met").wait_for()
    assert await on_site.get_by_role("timer").filter(has_text="Arrival").count() == 0
    await on_site.get_by_role("timer").filter(has_text="Completion").wait_for()
    for alert in (overdue, breach):
        assert await alert.evaluate("e => getComputedStyle(e).backgroundColor") == RED
    assert await clock.evaluate("e => getComputedStyle(e).backgroundColor") != RED
    await _shot(page, "board")
    await page.get_by_role("link", name="Map").click()
    await page.get_by_role("heading", name="Fleet and engineers").wait_for()
    await page.get_by_role("link", name=machine_id).wait_for()
    assert await page.locator(".map-svg .sites circle").count() >= 3
    # One customer's machines, and the engineers and warehouse near them, fill the map.
    await page.get_by_label("Customer").select_option(world.customer_id)
    await page.wait_for_function(
        "() => document.querySelectorAll('.map-svg .sites circle').length === 1"
    )
    for who in (world.near, world.far, world.warehouse):
        await page.get_by_role("img", name=who).wait_for()
    assert f"customer_id={world.customer_id}" in page.url
    await _shot(page, "map")
    await page.get_by_role("link", name=machine_id).click()
    await page.get_by_role("row").filter(has_text=machine_id).first.wait_for()
    assert "machine_id=" in page.url
    watch.check()


def _month_starts(now: datetime, months: int) -> list[datetime]:
    """The starts of this month and the `months - 1` before it (UTC)."""
    found, year, month = [], now.year, now.month
    for _ in range(months):
        found.append(datetime(year, month, 1, tzinfo=UTC))
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    return found


async def test_kpis_and_satisfaction_by_period_for_one_region(
    pool: asyncpg.Pool, base_url: str, browser: Browser
) -> None:
    region = unique("kpi")
    now = datetime.now(UTC)
    _, world = await _dispatched(pool)
    async with pool.acquire() as conn:
        await set_region(conn, world.machine_id, region)
        # Forty answers in each of the last three months: enough for an index each.
        starts = _month_starts(now, 3)
        for m, start in enumerate(starts):
            end = min(start + timedelta(days=28), now - timedelta(minutes=1))
            for k, answers in enumerate(acsi_answers(40, seed=m)):
                at = start + (end - start) * (k / 40)
                record = SurveyRecord(unique("KC"), None, region, None, at, "phone", answers, "t")
                await insert_survey(conn, record)
    page, watch = await _expert(pool, browser, base_url)
    await page.get_by_role("link", name="KPIs and satisfaction").click()
    await page.get_by_role("heading", name="Service KPIs and satisfaction").wait_for()
    await page.get_by_role("combobox", name="Region").select_option(region)
    month = now.strftime("%Y-%m")
    satisfaction = page.get_by_role("region", name="Customer satisfaction index")
    for start in _month_starts(now, 3):
        row = satisfaction.get_by_role("row", name=re.compile(start.strftime("%Y-%m")))
        await row.get_by_role("cell", name="40", exact=True).wait_for()
    assert await _painted(page, "Satisfaction index (0–100)") > 500  # noqa: RUF001
    overall = page.get_by_role("region", name="All orders, period by period")
    await (
        overall.get_by_role("row", name=re.compile(month))
        .get_by_text("1", exact=True)
        .first.wait_for()
    )
    assert f"region={region}" in page.url
    await _shot(page, "kpi")
    await page.get_by_role("button", name="By quarter").click()
    quarter = f"{now.year} Q{(now.month - 1) // 3 + 1}"
    await satisfaction.get_by_role("rowheader", name=quarter).wait_for()
    assert "period=quarter" in page.url
    assert f"region={region}" in page.url
    assert await page.get_by_role("button", name="By quarter").get_attribute("aria-pressed") == (
        "true"
    )
    watch.check()


async def _callback_task(pool: asyncpg.Pool, order_id: int) -> None:
    """The order's callback timer fires now, as the SLA runner would, making a desk task."""
    now = datetime.now(UTC)
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            "SELECT timer_id, anchor_at FROM sla_timers "
            "WHERE order_id = $1 AND kind = 'callback_check'",
            order_id,
        )
        stored = await order_store.load(conn, order_id)
        spec = TimerSpec(str(order_id), TimerKind.CALLBACK_CHECK, row["anchor_at"], now)
        verdict = judge(spec, stored.order, now)
        assert verdict is Verdict.BREACH
        await conn.execute(
            "UPDATE sla_timers SET state = 'fired', fired_at = $2, verdict = $3 "
            "WHERE timer_id = $1",
            row["timer_id"], now - timedelta(seconds=1), verdict.value,
        )  # fmt: skip
        await desk.make_task(conn, row["timer_id"], spec, stored, verdict, now, notify_line=None)


async def test_monitor_works_the_desk_in_chinese(
    pool: asyncpg.Pool, base_url: str, browser: Browser
) -> None:
    order_id, _ = await _dispatched(pool)
    await _callback_task(pool, order_id)
    page, watch = await _page(browser, base_url, locale="zh-CN")
    await _sign_in(page, base_url, await _token(pool, Role.MONITOR, unique("desk")), button="登录")
    await page.get_by_role("heading", name="监控台").wait_for()
    assert await page.get_by_role("link", name="报警队列").count() == 0  # not the monitor's
    assert await page.get_by_role("link", name="地图").count() == 0
    task = page.get_by_role("article", name=f"回访检查 · 工单 {order_id}")
    await task.wait_for()
    await _shot(page, "desk-zh")
    await task.get_by_label("已联系上客户").check()
    await task.get_by_label("工程师是否已联系客户？").select_option("no")  # noqa: RUF001
    await task.get_by_label("客户反馈").fill("还没有人联系我")
    await task.get_by_role("button", name="记录结果").click()
    await task.wait_for(state="detached")
    await page.get_by_label("显示").select_option("done")
    done = page.get_by_role("article", name=f"回访检查 · 工单 {order_id}")
    await done.get_by_text("服务失误：工程师未联系客户。").wait_for()  # noqa: RUF001
    async with pool.acquire() as conn:
        found = await conn.fetchrow(
            "SELECT reached, engineer_called, said FROM desk_tasks WHERE order_id = $1", order_id
        )
    assert tuple(found) == (True, False, "还没有人联系我")
    await page.get_by_role("link", name="派工看板").click()
    row = page.get_by_role("row", name=f"工单 {order_id}", exact=True)
    await row.wait_for()
    assert await row.get_by_role("link").count() == 0  # the alarm behind it is not the desk's
    watch.check()


PIXEL = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


@asynccontextmanager
async def _tile_server() -> AsyncIterator[tuple[str, list[str]]]:
    """A tile server on another port (another origin): a 1x1 PNG for any path it is asked."""
    asked: list[str] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = (await reader.readuntil(b"\r\n\r\n")).decode()
        asked.append(request.split(" ")[1])
        head = f"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: {len(PIXEL)}\r\n"
        writer.write(head.encode() + b"Connection: close\r\n\r\n" + PIXEL)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", asked
    finally:
        server.close()


async def test_with_a_tile_server_the_map_draws_its_tiles_and_loads_nothing_else(
    pool: asyncpg.Pool, browser: Browser
) -> None:
    _, world = await _dispatched(pool)
    async with (
        _tile_server() as (tiles, asked),
        live_console(pool, console_tile_url=f"{tiles}/{{z}}/{{x}}/{{y}}.png") as url,
    ):
        page, watch = await _expert(pool, browser, url)
        await page.goto(f"{url}/console#/map?customer_id={world.customer_id}")
        await page.get_by_role("img", name=world.far).wait_for()
        await page.wait_for_function(
            "() => [...document.querySelectorAll('.map-svg .tiles image')].length > 0"
        )
        await page.wait_for_load_state("networkidle")
    assert asked, "no tile was asked for"
    assert all(re.fullmatch(r"/\d+/\d+/\d+\.png", path) for path in asked)
    strangers = [u for u in watch.requests if not u.startswith((url + "/", "data:"))]
    assert strangers, "the tiles came from the tile server"
    assert all(u.startswith(tiles + "/") for u in strangers)
    assert watch.errors == []  # a tile refused by the page's CSP would be logged here
