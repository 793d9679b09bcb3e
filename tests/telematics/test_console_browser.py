"""The console in a real browser (Debian's Chromium driven by Playwright), by what a person sees
and clicks: the expert's live alarm queue, an alarm with its chart, dispatch; the engineer's
orders on a phone; the customer's fleet, never another customer's; in English and Chinese.

Every test records each request the page makes and every console message: all requests go to
the service's own origin, and nothing is logged as an error. Playwright never downloads a
browser here: it drives /usr/bin/chromium (`apt-get install chromium`). With
TELEMATICS_CONSOLE_SHOTS set to a folder, the tests save a screenshot of each page there
(`scripts/console-screenshots` writes docs/console/).
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from playwright.async_api import Browser, Page, async_playwright

from diagnosis.events import LOW_OIL_PRESSURE, UNEXPLAINED_ANOMALY, AlarmEvent, Transition
from dispatch.sla import SlaPolicy
from telematics.services.dispatching import dispatch_alarm
from telematics.store import alarms as alarm_store
from telematics.store.registry import Site, add_machine
from telematics.store.tokens import Role, create_token
from tests.conftest import unique
from tests.telematics.console_live import KB, live_console
from tests.telematics.test_orders import World, build

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():  # pragma: no cover - CI installs it (.ci/run)
    if os.environ.get("CI"):
        pytest.fail("CI must install Debian's chromium for the console's browser tests")
    pytest.skip("no /usr/bin/chromium: apt-get install chromium", allow_module_level=True)
SHOTS = os.environ.get("TELEMATICS_CONSOLE_SHOTS")
TIMEOUT_MS = 15_000
pytestmark = pytest.mark.timeout(120)


@dataclass
class Watch:
    """What one page asked for and logged."""

    origin: str
    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def check(self) -> None:
        strangers = [u for u in self.requests if not u.startswith((self.origin + "/", "data:"))]
        assert strangers == [], "requests left the host"
        assert self.errors == [], "the page logged errors"


@pytest.fixture(scope="module")
async def base_url(pool: asyncpg.Pool) -> AsyncIterator[str]:
    async with live_console(pool) as url:
        yield url


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        launched = await p.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            yield launched
        finally:
            await launched.close()


async def _page(browser: Browser, base_url: str, **options: object) -> tuple[Page, Watch]:
    context = await browser.new_context(**options)  # type: ignore[arg-type]
    context.set_default_timeout(TIMEOUT_MS)
    page = await context.new_page()
    watch = Watch(base_url)
    page.on("request", lambda r: watch.requests.append(r.url))
    page.on("console", lambda m: m.type == "error" and watch.errors.append(m.text))
    page.on("pageerror", lambda e: watch.errors.append(str(e)))
    return page, watch


async def _sign_in(page: Page, base_url: str, token: str, button: str = "Sign in") -> None:
    await page.goto(f"{base_url}/console")
    await page.get_by_label(re.compile("Access token|访问令牌")).fill(token)
    await page.get_by_role("button", name=button).click()


async def _shot(page: Page, name: str) -> None:
    """A page as a person sees it: no code's leftovers in its text; saved when asked."""
    text = await page.locator("body").inner_text()
    for junk in ("[object ", "undefined", "NaN", "null"):
        assert junk not in text, f"{name} shows {junk!r}"
    if SHOTS:
        await page.screenshot(path=str(Path(SHOTS) / f"{name}.png"), full_page=True)


async def _token(pool: asyncpg.Pool, role: Role, subject: str) -> str:
    async with pool.acquire() as conn:
        _, token = await create_token(conn, role, subject, "browser test")
    return token


async def _raise_with_readings(conn: asyncpg.Connection, machine_id: str) -> int:
    """A low-oil-pressure alarm raised now, after ten minutes of readings of falling pressure."""
    now = datetime.now(UTC).replace(microsecond=0)
    rows = [
        (machine_id, now - timedelta(seconds=10 * i), 1800.0, 420.0 - 35 * max(0, 30 - i) / 3, 88.0)
        for i in range(60, -1, -1)
    ]
    await conn.executemany(
        "INSERT INTO readings (machine_id, ts, engine_speed_rpm, oil_pressure_kpa, coolant_temp_c) "
        "VALUES ($1, $2, $3, $4, $5)",
        rows,
    )
    event = AlarmEvent(machine_id, LOW_OIL_PRESSURE, Transition.RAISED, int(now.timestamp() * 1000))
    async with conn.transaction():
        (change,) = await alarm_store.apply_events(
            conn, [event], lambda f: (KB.diagnose(f).severity, KB.diagnose(f).title)
        )
    return change.alarm_id


async def _dispatched(
    pool: asyncpg.Pool, steps_tried: Sequence[str] = ()
) -> tuple[World, int, int]:
    """A world whose alarm (with its readings) is dispatched as the suggestions rank it: the
    world, the alarm's id and the order's."""
    async with pool.acquire() as conn:
        world = await build(conn)
        alarm_id = await _raise_with_readings(conn, world.machine_id)
    result = await dispatch_alarm(
        pool, KB, SlaPolicy(), alarm_id, actor="expert:t", engineer_id=None, note="",
        steps_tried=steps_tried,
    )  # fmt: skip
    return world, alarm_id, result.order.order_id


async def test_expert_sees_a_new_alarm_live_opens_it_sees_the_chart_and_dispatches(
    pool: asyncpg.Pool, base_url: str, browser: Browser
) -> None:
    async with pool.acquire() as conn:
        world = await build(conn)
    token = await _token(pool, Role.EXPERT, unique("expert"))
    page, watch = await _page(browser, base_url, viewport={"width": 1280, "height": 900})
    await _sign_in(page, base_url, token)
    await page.get_by_role("heading", name="Alarm queue").wait_for()
    await page.get_by_role("status").filter(has_text="Live").wait_for()
    async with pool.acquire() as conn:
        alarm_id = await _raise_with_readings(conn, world.machine_id)
    row = page.get_by_role("row").filter(has_text=world.machine_id)
    await row.get_by_text("New").wait_for()  # appeared without a reload
    await _shot(page, "alarm-queue")
    await page.get_by_label("Severity").select_option("minor")
    await row.wait_for(state="detached")
    await page.get_by_label("Severity").select_option("critical")
    await row.get_by_role("link").wait_for()
    assert "severity=critical" in page.url  # the filter is in the address
    await row.get_by_role("link", name="Low engine oil pressure").click()
    await page.get_by_role("heading", name=f"Alarm {alarm_id}: Low engine oil pressure").wait_for()
    await page.get_by_role("heading", name="Probable causes").wait_for()
    steps = page.get_by_role("checkbox")
    assert await steps.count() >= 1
    await steps.first.check()
    # A count is told as "label: n" (no plural to get wrong with one).
    await page.get_by_text("Steps ticked: 1", exact=True).wait_for()
    chart = page.get_by_role("img", name="Oil pressure (kPa)")
    await chart.wait_for()
    painted = await chart.locator("canvas").evaluate(
        "c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        " let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n; }"
    )
    assert painted > 500  # the line and the axes are drawn, not an empty canvas
    await _shot(page, "alarm")
    await page.get_by_role("button", name="Dispatch an engineer").click()
    await page.get_by_role("status").filter(has_text=re.compile(r"Order \d+ sent to")).wait_for()
    async with pool.acquire() as conn:
        engineer = await conn.fetchval(
            "SELECT engineer_id FROM orders WHERE alarm_id = $1", alarm_id
        )
    assert engineer == world.far
    watch.check()


async def test_expert_overrules_a_mapped_relation_back_to_unexplained(
    pool: asyncpg.Pool, base_url: str, browser: Browser
) -> None:
    detail = (
        "anomaly score 1.40 above the model's threshold 1.00; relation broken: oil_pressure_kpa"
        " low for engine_speed_rpm (-8.2)"
    )
    raised = int(datetime.now(UTC).timestamp() * 1000)
    async with pool.acquire() as conn:
        world = await build(conn)
        event = AlarmEvent(
            world.machine_id, UNEXPLAINED_ANOMALY, Transition.RAISED, raised, detail=detail
        )
        async with conn.transaction():
            (change,) = await alarm_store.apply_events(
                conn, [event], lambda f: (KB.diagnose(f).severity, KB.diagnose(f).title)
            )
    mapped = f"{KB.diagnose(LOW_OIL_PRESSURE).title}: oil_pressure_kpa low for engine_speed_rpm"
    unexplained = KB.diagnose(UNEXPLAINED_ANOMALY).title
    token = await _token(pool, Role.EXPERT, unique("expert"))
    page, watch = await _page(browser, base_url)
    await _sign_in(page, base_url, token)
    await page.get_by_role("heading", name="Alarm queue").wait_for()
    await page.goto(f"{base_url}/console#/alarms/{change.alarm_id}")
    await page.get_by_role("heading", name=f"Alarm {change.alarm_id}: {unexplained}").wait_for()
    await page.get_by_text(mapped, exact=True).wait_for()  # the diagnosis names the relation
    await page.get_by_label("The fault is").select_option(UNEXPLAINED_ANOMALY)
    await page.get_by_role("button", name="Confirm diagnosis").click()
    await page.get_by_text(f"{unexplained} ({UNEXPLAINED_ANOMALY})", exact=True).wait_for()
    assert await page.get_by_text(mapped, exact=True).count() == 0
    async with pool.acquire() as conn:
        confirmed = await conn.fetchval(
            "SELECT confirmed_fault FROM alarms WHERE alarm_id = $1", change.alarm_id
        )
    assert confirmed == UNEXPLAINED_ANOMALY
    watch.check()


async def test_engineer_accepts_travels_arrives_and_completes_on_a_phone(
    pool: asyncpg.Pool, base_url: str, browser: Browser
) -> None:
    world, alarm_id, order_id = await _dispatched(pool)
    token = await _token(pool, Role.ENGINEER, world.far)
    page, watch = await _page(
        browser, base_url, viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True
    )
    await _sign_in(page, base_url, token)
    card = page.get_by_role("article", name=f"Order {order_id}")
    await card.wait_for()
    await _shot(page, "my-orders")
    await card.get_by_role("link", name="Diagnosis and signals").click()
    await page.get_by_role("heading", name=f"Alarm {alarm_id}: Low engine oil pressure").wait_for()
    await page.get_by_role("img", name="Oil pressure (kPa)").wait_for()
    assert await page.get_by_role("button", name="Dispatch an engineer").count() == 0
    await _shot(page, "engineer-alarm")
    await page.get_by_role("link", name="Back to my orders").click()
    await card.wait_for()
    for button, state in (("Accept", "Accepted"), ("Start travel", "On the way"),
                          ("Arrived", "On site"), ("Complete", "Completed")):  # fmt: skip
        await card.get_by_role("button", name=button).click()
        await card.get_by_text(state, exact=True).wait_for()
    async with pool.acquire() as conn:
        state = await conn.fetchval("SELECT state FROM orders WHERE order_id = $1", order_id)
    assert state == "completed"
    watch.check()


async def test_customer_sees_its_own_fleet_and_alarms_never_anothers_in_chinese(
    pool: asyncpg.Pool, base_url: str, browser: Browser
) -> None:
    mine, theirs = unique("BC"), unique("BC")
    own, other = unique("BM"), unique("BM")
    async with pool.acquire() as conn:
        await add_machine(conn, own, "excavator", mine, Site(31.0, 121.0, 200))
        await add_machine(conn, other, "excavator", theirs, Site(31.0, 121.0, 200))
        await _raise_with_readings(conn, other)
    token = await _token(pool, Role.CUSTOMER, mine)
    page, watch = await _page(browser, base_url, locale="zh-CN")
    await page.goto(f"{base_url}/console")
    await page.get_by_role("heading", name="登录").wait_for()
    await _sign_in(page, base_url, token, button="登录")
    await page.get_by_role("heading", name="我的设备").wait_for()
    await page.get_by_role("cell", name=own).wait_for()
    assert await page.get_by_text(other).count() == 0
    await _shot(page, "my-fleet")
    await page.get_by_role("link", name="报警队列").click()
    await page.get_by_role("status").filter(has_text="实时").wait_for()
    async with pool.acquire() as conn:
        await _raise_with_readings(conn, own)
    await page.get_by_role("row").filter(has_text=own).wait_for()
    assert await page.get_by_text(other).count() == 0
    await _shot(page, "alarm-queue-zh")
    # The switch is kept: English after a reload.
    await page.get_by_label("语言").select_option("en")
    await page.get_by_role("heading", name="Alarm queue").wait_for()
    await page.reload()
    await page.get_by_role("heading", name="Alarm queue").wait_for()
    await page.get_by_role("button", name="Sign out").click()
    await page.get_by_role("heading", name="Sign in").wait_for()
    watch.check()
