"""The engineer's and the customer's console pages in a real browser, by what a person sees:
the engineer's order with the steps already tried, the parts and where they are, the route, and
completion with the parts actually used; the customer's machine charts by period, an alarm and
its diagnosis in Chinese from the knowledge base, and the survey that wants an answer.

Shares the browser tests' Chromium, app and page helpers (`test_console_browser`).
"""

from __future__ import annotations

import re

import asyncpg
import pytest
from playwright.async_api import Browser

from dispatch.orders import Accept, Arrive, Complete, StartTravel
from dispatch.sla import SlaPolicy
from telematics.console import language
from telematics.services.dispatching import act
from telematics.store import orders as order_store
from telematics.store.tokens import Role
from tests.telematics import test_console_browser as console_browser
from tests.telematics.console_live import KB
from tests.telematics.test_console_browser import _dispatched, _page, _shot, _sign_in, _token

pytestmark = pytest.mark.timeout(120)
base_url, browser = console_browser.base_url, console_browser.browser  # shared fixtures
STEPS = KB.diagnose("low_oil_pressure").remote_steps
ZH = language.strings("zh-CN")
ZH_FAULT = KB.diagnose("low_oil_pressure", "zh-CN")


def _zh(key: str, **params: object) -> str:
    """A console string in Chinese, as the page fills it in."""
    text = ZH[key]
    for name, value in params.items():
        text = text.replace(f"{{{name}}}", str(value))
    return text


async def test_the_engineer_sees_what_was_tried_what_to_bring_and_records_what_was_used(
    pool: asyncpg.Pool, base_url: str, browser: Browser
) -> None:
    world, _, order_id = await _dispatched(pool, steps_tried=STEPS[:2])
    page, watch = await _page(
        browser, base_url, viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True
    )
    await _sign_in(page, base_url, await _token(pool, Role.ENGINEER, world.far))
    card = page.get_by_role("article", name=f"Order {order_id}")
    tried = card.get_by_role("region", name="Remote steps already tried")
    await tried.get_by_role("listitem").first.wait_for()
    assert await tried.get_by_role("listitem").all_inner_texts() == list(STEPS[:2])
    parts = card.get_by_role("region", name="Parts to bring")
    await parts.get_by_text("In your van").wait_for()
    await parts.get_by_text("Engine oil filter (OF-2010) \u00d7 1").wait_for()
    diagnosis = card.get_by_role("region", name="Diagnosis")
    await diagnosis.get_by_text("Low engine oil pressure").wait_for()
    route = card.get_by_role("region", name="Route")
    await route.get_by_text(re.compile(r"^\d+\.\d km, about \d+ min$")).wait_for()
    assert await route.get_by_role("img", name="Route sketch").locator("circle").count() >= 1
    for button in ("Accept", "Start travel", "Arrived"):
        await card.get_by_role("button", name=button).click()
    # On site: every reserved part is offered with its reserved quantity; two were not needed.
    await card.get_by_label("Engine oil SAE 15W-40, 20 l (EO-1540)").fill("0")
    await card.get_by_label("Engine oil pressure sender (OPS-3100)").fill("0")
    await _shot(page, "engineer-complete")
    await card.get_by_role("button", name="Complete").click()
    await card.get_by_text("Completed", exact=True).wait_for()
    async with pool.acquire() as conn:
        stored = await order_store.load(conn, order_id)
    assert {(p.part_no, p.quantity) for p in stored.order.consumed} == {("OF-2010", 1)}
    watch.check()


async def test_the_customer_reads_its_machine_and_an_alarm_in_chinese_and_must_answer_a_survey(
    pool: asyncpg.Pool, base_url: str, browser: Browser
) -> None:
    world, alarm_id, order_id = await _dispatched(pool)
    for command in (Accept(), StartTravel(), Arrive(), Complete((), "")):
        await act(pool, SlaPolicy(), order_id, command, actor="engineer:t")
    page, watch = await _page(browser, base_url, locale="zh-CN")
    token = await _token(pool, Role.CUSTOMER, world.customer_id)
    await _sign_in(page, base_url, token, button=ZH["signin.submit"])
    await page.get_by_role("link", name=world.machine_id, exact=True).first.click()
    await page.get_by_role("img", name=ZH["cust.chart_hours"]).wait_for()
    await page.get_by_text(ZH["cust.no_fuel"]).wait_for()  # no tank size registered: no litres
    assert await page.get_by_role("img", name=ZH["cust.chart_util"]).locator("canvas").count() == 1
    await page.get_by_label(ZH["cust.period"]).select_option("week")
    await page.get_by_role("img", name=ZH["cust.chart_hours"]).wait_for()
    assert "period=week" in page.url  # the period is in the address
    await _shot(page, "customer-machine-zh")
    # The alarm's diagnosis comes from the knowledge base in the page's language.
    await page.get_by_role("link", name=ZH_FAULT.title).click()
    heading = _zh("alarm.heading", id=alarm_id, title=ZH_FAULT.title)
    await page.get_by_role("heading", name=heading).wait_for()
    await page.get_by_text(ZH_FAULT.summary).wait_for()
    await page.get_by_text(ZH_FAULT.remote_steps[0]).wait_for()
    await page.get_by_text(ZH_FAULT.parts[0].name).first.wait_for()
    # The survey of the completed order: nothing chosen is refused in the page.
    await page.get_by_role("link", name=ZH["nav.service"]).click()
    order = page.get_by_role("article", name=_zh("order.heading", id=order_id))
    await order.get_by_role("button", name=ZH["survey.send"]).click()
    await order.get_by_text(ZH["survey.empty"]).wait_for()
    await _shot(page, "customer-survey-zh")
    async with pool.acquire() as conn:
        assert (
            await conn.fetchval("SELECT count(*) FROM surveys WHERE order_id = $1", order_id) == 0
        )
    watch.check()
