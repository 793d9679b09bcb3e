"""The console's whole story in a real browser, one flow through the running service (issue 13).

A simulated fault's readings go through the real broker to the service (gateway, diagnosis, API,
console, all in-process, as `telematics run` wires them). The expert sees the alarm appear live,
opens it, sees the chart and dispatches; the engineer, on a phone-sized viewport, accepts,
travels, arrives and completes with the parts used; the customer follows the order's progress
and answers the survey. Another customer's machine, with its own alarm and order, never appears
in any page the customer visits, neither in the page nor in any answer the page received.
Every request stays on the service's origin and no page logs an error.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiomqtt
import asyncpg
import orjson
import pytest
from playwright.async_api import Browser, Page, Response

from dispatch.sla import SlaPolicy
from telematics.base.config import Settings
from telematics.ingest.mqtt import MqttEndpoint
from telematics.service import Endpoints
from telematics.services.dispatching import dispatch_alarm
from telematics.store.tokens import Role
from tests.conftest import unique
from tests.telematics import test_console_browser as console_browser
from tests.telematics.console_live import KB
from tests.telematics.harness import running_service
from tests.telematics.test_console_browser import _page, _shot, _sign_in, _token
from tests.telematics.test_orders import build, raise_alarm

pytestmark = pytest.mark.timeout(120)
browser = console_browser.browser  # the browser tests' Chromium fixture, for this module too


@contextlib.asynccontextmanager
async def service(settings: Settings, tmp_path: Path) -> AsyncIterator[Endpoints]:
    """`telematics run` in-process: its own gateway session, HTTP on a free port."""
    update = {"mqtt_client_id": unique("gw-console"), "http_port": 0, "data_dir": tmp_path}
    cfg = settings.model_copy(update={**update, "console_poll_s": 0.2})
    async with running_service(cfg, 30) as endpoints:
        yield endpoints


def _fault_readings(now: datetime) -> bytes:
    """A minute of an excavator at work whose oil pressure collapses for the last 20 seconds."""
    readings = []
    for i in range(60):
        ts = now - timedelta(seconds=59 - i)
        readings.append({
            "ts": ts.isoformat(), "engine_speed_rpm": 1800.0, "load_pct": 60.0,
            "oil_pressure_kpa": 420.0 if i < 40 else 45.0, "coolant_temp_c": 88.0,
            "fuel_level_pct": 64.0, "engine_hours": 1520.0 + i / 3600,
        })  # fmt: skip
    return orjson.dumps({"readings": readings})


class Seen:
    """Every answer of the service a customer's pages received (event streams excepted)."""

    def __init__(self) -> None:
        self.responses: list[Response] = []

    def watch(self, page: Page) -> None:
        def keep(response: Response) -> None:  # Playwright marks its handlers: a function
            self.responses.append(response)

        page.on("response", keep)

    async def bodies(self) -> list[str]:
        found = []
        for response in self.responses:
            kind = response.headers.get("content-type", "")
            if "event-stream" in kind or response.request.method != "GET":
                continue
            with contextlib.suppress(Exception):  # a body the browser dropped (navigation)
                found.append(await response.text())
        return found


async def _never_shows(page: Page, seen: Seen, other: str, own: str) -> None:
    assert own in await page.content()  # the page is drawn: this check can see a machine id
    assert other not in await page.content(), "another customer's machine in the page"
    bodies = await seen.bodies()
    assert any(own in body for body in bodies)  # the answers are read: this one can see too
    assert all(other not in body for body in bodies), "another customer's machine in an answer"


async def test_alarm_to_survey_through_the_running_service(
    pool: asyncpg.Pool, settings: Settings, mqtt_endpoint: MqttEndpoint, browser: Browser,
    tmp_path: Path,
) -> None:  # fmt: skip
    async with pool.acquire() as conn:
        world = await build(conn)  # the machine's customer, engineers with and without the kit
        elsewhere = await build(conn)  # another customer's machine, with an alarm and an order
        other = elsewhere.machine_id
        other_alarm = await raise_alarm(conn, other)
    await dispatch_alarm(pool, KB, SlaPolicy(), other_alarm, actor="t", engineer_id=None, note="")
    expert_token = await _token(pool, Role.EXPERT, unique("expert"))
    engineer_token = await _token(pool, Role.ENGINEER, world.far)
    customer_token = await _token(pool, Role.CUSTOMER, world.customer_id)

    async with service(settings, tmp_path) as endpoints:
        base = endpoints.http_url.rstrip("/")
        # The expert watches the queue; the fault's readings arrive through the broker.
        expert, expert_watch = await _page(browser, base, viewport={"width": 1280, "height": 900})
        await _sign_in(expert, base, expert_token)
        await expert.get_by_role("status").filter(has_text="Live").wait_for()
        async with aiomqtt.Client(
            mqtt_endpoint.host, mqtt_endpoint.port, identifier=unique("controller")
        ) as controller:
            await controller.publish(
                f"machines/{world.machine_id}/telemetry", _fault_readings(datetime.now(UTC)), qos=1
            )
        row = expert.get_by_role("row").filter(has_text=world.machine_id)
        await row.get_by_text("New").wait_for(timeout=30_000)  # live: no reload
        await row.get_by_role("link", name="Low engine oil pressure").click()
        await expert.get_by_role("heading", name="Probable causes").wait_for()
        chart = expert.get_by_role("img", name="Oil pressure (kPa)")
        await chart.wait_for()
        painted = await chart.locator("canvas").evaluate(
            "c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
            " let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n; }"
        )
        assert painted > 500
        step = expert.get_by_role("checkbox").first
        await step.check()
        tried = await expert.locator(f"label[for='{await step.get_attribute('id')}']").inner_text()
        await expert.get_by_role("button", name="Dispatch an engineer").click()
        sent = expert.get_by_role("status").filter(has_text=re.compile(r"Order (\d+) sent to"))
        await sent.wait_for()
        order_id = int(re.findall(r"Order (\d+)", await sent.inner_text())[0])
        expert_watch.check()

        # The customer opens its service orders: dispatched, an engineer expected.
        page, watch = await _page(browser, base, viewport={"width": 1280, "height": 900})
        seen = Seen()
        seen.watch(page)
        await _sign_in(page, base, customer_token)
        await page.get_by_role("link", name="Service orders").click()
        mine = page.get_by_role("article", name=f"Order {order_id}")
        now_step = mine.get_by_role("list", name="Progress").locator("[aria-current=step]")
        await now_step.filter(has_text="Dispatched").wait_for()
        await mine.get_by_text(re.compile("^Engineer expected about ")).wait_for()

        # The engineer, on a phone.
        phone, phone_watch = await _page(
            browser, base, viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True
        )
        await _sign_in(phone, base, engineer_token)
        card = phone.get_by_role("article", name=f"Order {order_id}")
        await card.get_by_text("In your van").wait_for()
        # The step the expert ticked before dispatching, as the engineer reads it.
        steps_tried = card.get_by_role("region", name="Remote steps already tried")
        await steps_tried.get_by_role("listitem").filter(has_text=tried).wait_for()
        await card.get_by_role("img", name="Route sketch").wait_for()
        for button, state in (("Accept", "Accepted"), ("Start travel", "On the way")):
            await card.get_by_role("button", name=button).click()
            await card.get_by_text(state, exact=True).wait_for()
        # On the way, the van reports where it is (the wire contract's position topic): the
        # customer's ETA is recomputed from it.
        lat, lon = world.site
        async with aiomqtt.Client(
            mqtt_endpoint.host, mqtt_endpoint.port, identifier=unique("van")
        ) as van:
            position = {"ts": datetime.now(UTC).isoformat(), "lat": lat - 0.05, "lon": lon}
            await van.publish(f"engineers/{world.far}/position", orjson.dumps(position), qos=1)
        await page.reload()
        await now_step.filter(has_text="On the way").wait_for()
        await mine.get_by_text(re.compile(r"^Engineer arriving about .* \(live\)$")).wait_for(
            timeout=30_000
        )
        await card.get_by_role("button", name="Arrived").click()
        await card.get_by_text("On site", exact=True).wait_for()
        await card.get_by_label(re.compile(r"\(OF-2010\)")).fill("1")
        await card.get_by_role("button", name="Complete").click()
        await card.get_by_text("Completed", exact=True).wait_for()
        phone_watch.check()

        # The customer sees the order done, looks round, answers the survey; never sees the other
        # customer's machine.
        await page.reload()
        await now_step.filter(has_text="Completed").wait_for()
        await page.get_by_role("link", name="My fleet").click()
        await page.get_by_role("cell", name=world.machine_id, exact=True).first.wait_for()
        await page.get_by_role("heading", name="Maintenance due").wait_for()
        await _never_shows(page, seen, other, world.machine_id)
        await page.get_by_role("link", name=world.machine_id, exact=True).first.click()
        await page.get_by_role("img", name="Hours (working, idle)").wait_for()
        await page.get_by_role("cell", name="Low engine oil pressure").wait_for()
        await _never_shows(page, seen, other, world.machine_id)
        await _shot(page, "customer-machine")
        await page.get_by_role("link", name="Low engine oil pressure").click()
        await page.get_by_role("heading", name="Probable causes").wait_for()
        await _never_shows(page, seen, other, world.machine_id)
        await page.get_by_role("link", name="Alarm queue").click()
        await page.get_by_role("row").filter(has_text=world.machine_id).first.wait_for()
        await _never_shows(page, seen, other, world.machine_id)
        await page.get_by_role("link", name="Service orders").click()
        await now_step.filter(has_text="Completed").wait_for()
        await _shot(page, "customer-service")
        await mine.get_by_label("Overall, how satisfied are you with our service?").select_option(
            "9"
        )
        await mine.get_by_label("How timely was the engineer's arrival?").select_option("8")
        await mine.get_by_role("button", name="Send answers").click()
        await mine.get_by_text("Thank you: your answers were received.").wait_for()
        await _never_shows(page, seen, other, world.machine_id)
        watch.check()

    async with pool.acquire() as conn:
        survey = await conn.fetchrow(
            "SELECT answers::text, channel FROM surveys WHERE order_id = $1", order_id
        )
        used = await conn.fetchval("SELECT state FROM orders WHERE order_id = $1", order_id)
    assert survey is not None
    assert orjson.loads(survey["answers"]) == {"sat_overall": 9, "pq_timeliness": 8}
    assert (survey["channel"], used) == ("web", "completed")
