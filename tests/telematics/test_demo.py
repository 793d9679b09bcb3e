"""`telematics demo` tells the whole story: the network it seeds over the HTTP API, its role
tokens, and a short run in which an injected fault raises an alarm whose dispatched order the
autopilot takes to completed.

Everything real: a database of its own (the demo's machine and engineer ids are fixed, so it must
not share the session's), the service in-process and, for the run, an embedded Mosquitto on a
free port (so the demo's fleet publishes to no other test's gateway).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from diagnosis.knowledge import KnowledgeBase
from simulators.machines import make_fleet
from telematics.base.config import Settings
from telematics.demo import MACHINES_PER_CUSTOMER, DemoOptions, run_demo
from telematics.firstlook.faults import CARRIED_OVER_S, DEMO_ORDER, DemoTiming, schedule
from telematics.firstlook.network import diagnoses, plan_network, seed_network
from telematics.firstlook.positions import along
from telematics.firstlook.roles import TOKENS_FILE, ensure_tokens, seats
from telematics.service import prepare_database
from tests.conftest import fresh_database
from tests.telematics.harness import ADMIN_TOKEN, api_client

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def own_dsn() -> AsyncIterator[str]:
    async with fresh_database("telematics_demo") as dsn:
        yield dsn


async def test_seeding_creates_the_network_once_and_tokens_are_reused(
    own_dsn: str, tmp_path: Path
) -> None:
    machines = make_fleet(20, machines_per_customer=MACHINES_PER_CUSTOMER, seed=0)
    knowledge = KnowledgeBase.load()
    plan = plan_network(machines, knowledge)
    pool = await asyncpg.create_pool(own_dsn, min_size=1, max_size=4)
    try:
        await prepare_database(pool, Settings(database_url=own_dsn, data_dir=tmp_path))
        async with api_client(pool) as http:
            http.headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"
            for m in machines:
                assert (await http.post("/v1/machines", json=m.registration_body())).is_success
            first = await seed_network(http, plan)
            again = await seed_network(http, plan)

            assert first.created == {"parts": len(plan.parts), "warehouses": 3, "engineers": 8,
                                     "customers": 3}  # fmt: skip
            assert again.created == {}
            assert again.existing == first.created
            engineers = (await http.get("/v1/engineers")).json()
            assert len(engineers) == 8
            assert all(e["skills"] for e in engineers)
            parts = {p["part_no"] for p in (await http.get("/v1/parts?limit=1000")).json()}
            referenced = {p.part_no for d in diagnoses(knowledge) for p in d.parts}
            assert referenced
            assert referenced <= parts
            central = (await http.get("/v1/warehouses/WH-CENTRAL")).json()
            assert {s["part_no"] for s in central["stock"] if s["available"] > 0} == referenced
            # Every skill set a fault needs is held by at least two engineers.
            for d in diagnoses(knowledge):
                able = [e for e in engineers if set(d.skills) <= set(e["skills"])]
                assert len(able) >= 2, d.fault
            van = (await http.get("/v1/engineers/ENG-01")).json()["van_stock"]
            assert van
            assert all(line["quantity"] == 2 for line in van)

            wanted = seats([e.engineer_id for e in plan.engineers], plan.customers)
            tokens, made = await ensure_tokens(http, tmp_path, wanted)
            assert made == len(wanted) == 2 + 8 + 3
            assert (tmp_path / TOKENS_FILE).stat().st_mode & 0o077 == 0
            kept, made_again = await ensure_tokens(http, tmp_path, wanted)
            assert made_again == 0
            assert kept == tokens
            expert = next(t for t in tokens if t.role == "expert")
            assert (await http.delete(f"/v1/tokens/{expert.token_id}")).is_success
            renewed, made_after_revoke = await ensure_tokens(http, tmp_path, wanted)
            assert made_after_revoke == 1
            assert next(t for t in renewed if t.role == "expert").token != expert.token
            customer = next(t for t in renewed if t.role == "customer")
            mine = await http.get(
                "/v1/alarms", headers={"Authorization": f"Bearer {customer.token}"}
            )
            assert mine.status_code == 200
    finally:
        await pool.close()


def test_schedule_rotates_kinds_and_machines_and_starts_soon() -> None:
    machines = make_fleet(20, machines_per_customer=MACHINES_PER_CUSTOMER, seed=0)
    timing = DemoTiming(first_after_s=30, every_s=180, horizon_s=3600, replay_s=3600)
    faults = schedule(machines, timing, first_customer="CUST-002")
    assert faults[0].start_ts_ms == 30_000
    owner = {m.machine_id: m.customer_id for m in machines}
    assert owner[faults[0].machine_id] == "CUST-002"
    assert [f.kind for f in faults[: len(DEMO_ORDER)]] == list(DEMO_ORDER)
    assert len({f.machine_id for f in faults}) >= len(DEMO_ORDER)
    for a in faults:  # one fault at a time on a machine
        for b in faults:
            if a is not b and a.machine_id == b.machine_id:
                assert a.end_ts_ms <= b.start_ts_ms or b.end_ts_ms <= a.start_ts_ms


def test_a_restart_faults_no_machine_whose_earlier_alarm_is_still_open() -> None:
    """A demo restarted on its data folder within minutes: the first fault would go to the same
    machine as before, whose alarm is still open, and only extend it (no new alarm to see).
    """
    machines = make_fleet(20, machines_per_customer=MACHINES_PER_CUSTOMER, seed=0)
    timing = DemoTiming(first_after_s=30, every_s=180, horizon_s=3600, replay_s=3600)
    fresh = schedule(machines, timing, first_customer="CUST-001")
    alarmed = {fresh[0].machine_id}
    again = schedule(machines, timing, first_customer="CUST-001", alarmed=alarmed)
    owner = {m.machine_id: m.customer_id for m in machines}
    assert again[0].machine_id not in alarmed
    assert owner[again[0].machine_id] == "CUST-001"  # still the banner's customer
    assert [f.kind for f in again[: len(DEMO_ORDER)]] == list(DEMO_ORDER)
    assert all(f.start_ts_ms >= CARRIED_OVER_S * 1000 for f in again if f.machine_id in alarmed)


async def _wait_for(out: io.StringIO, pattern: str, timeout_s: float) -> re.Match[str]:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while asyncio.get_running_loop().time() < deadline:
        if found := re.search(pattern, out.getvalue(), re.MULTILINE):
            return found
        await asyncio.sleep(0.2)
    raise AssertionError(f"the demo never printed {pattern!r}; it printed:\n{out.getvalue()}")


async def test_demo_run_raises_an_alarm_and_the_autopilot_completes_the_order(
    own_dsn: str, tmp_path: Path
) -> None:
    settings = Settings(
        database_url=own_dsn,
        mqtt_url=None,
        embedded_mqtt_port=0,
        http_port=0,
        data_dir=tmp_path,
        admin_token="demo-admin",
    )
    options = DemoOptions(
        machines=4,
        timing=DemoTiming(first_after_s=2, every_s=600, horizon_s=1200, replay_s=600),
        autopilot_step_s=0.5,
        poll_s=0.5,
        report_every_s=5,
    )
    out, stop = io.StringIO(), asyncio.Event()
    demo = asyncio.create_task(run_demo(settings, stop, options, out))
    try:
        api = (await _wait_for(out, r"^\s+API\s+(http://\S+)", 60))[1]
        injected = await _wait_for(out, r"fault injected: (\S+) on (\S+)", 30)
        assert injected[1].startswith("dtc_")  # the first kind shows in any state
        alarm = await _wait_for(out, rf"alarm (\d+) raised: .* on {injected[2]}", 30)
        kept = json.loads((tmp_path / TOKENS_FILE).read_text())["tokens"]
        expert = next(t["token"] for t in kept if t["role"] == "expert")
        async with httpx.AsyncClient(
            base_url=api, headers={"Authorization": f"Bearer {expert}"}, timeout=10
        ) as http:
            order = (await http.post(f"/v1/alarms/{alarm[1]}/dispatch")).json()
            assert order["state"] == "dispatched", order
            await _wait_for(out, rf"completed order {order['order_id']}\b", 30)
            done = (await http.get(f"/v1/orders/{order['order_id']}")).json()
            assert done["state"] == "completed"
            # The autopilot's van reported its way there: the arrival was at the site.
            assert done["tracking"]["arrived_off_site"] is False, done["tracking"]
            assert done["consumed"] == done["reserved"] or done["consumed"]
            events = (await http.get(f"/v1/orders/{order['order_id']}/events")).json()
            actors = {e["actor"] for e in events if e["action"] in ("accept", "arrive")}
            assert actors, events
            assert all(a.startswith("engineer:") for a in actors), events
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(demo, 60)


def test_a_van_moves_along_its_route_at_an_even_pace() -> None:
    home, warehouse, site = (31.0, 121.0), (31.0, 121.1), (31.1, 121.1)
    assert along([home, warehouse, site], 0) == home
    assert along([home, warehouse, site], 1.5) == site
    lat, lon = along([home, warehouse, site], 0.25)
    assert lat == pytest.approx(31.0)
    assert 121.05 < lon < 121.06  # past a quarter of the first leg: it is the shorter one
