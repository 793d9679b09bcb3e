"""Dispatch and the order lifecycle against the real database: matching on stored resources,
reservations under concurrency, the audit trail, and SLA timers claimed by several runners.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest

from diagnosis.events import LOW_OIL_PRESSURE, AlarmEvent, Transition
from diagnosis.knowledge import KnowledgeBase
from dispatch.sla import SlaPolicy
from telematics.api.app import create_app
from telematics.api.context import ApiContext
from telematics.base.metrics import Metrics
from telematics.services.dispatching import dispatch_alarm
from telematics.services.sla_worker import fire_due
from telematics.store import alarms as alarm_store
from telematics.store import resources
from telematics.store.registry import Site, SourceDirectory, add_machine
from telematics.store.resources import EngineerProfile, LocationKind, Part, StockLine, Warehouse
from telematics.store.tokens import Role, create_token
from telematics.wire.decode import Limits
from tests.conftest import unique

KB = KnowledgeBase.load()
KIT = [(p.part_no, p.quantity) for p in KB.diagnose(LOW_OIL_PRESSURE).parts]
SKILLS = KB.diagnose(LOW_OIL_PRESSURE).skills
ADMIN = "orders-admin"


def engineer(eid: str, lat: float, lon: float, skills: tuple[str, ...] = SKILLS) -> EngineerProfile:
    return EngineerProfile(eid, eid, skills, lat, lon, None, None, "UTC", "available", 3, 50.0)


@dataclass
class World:
    site: tuple[float, float]
    machine_id: str
    customer_id: str
    near: str  # 3 km away, nothing in the van
    far: str  # 15 km away, the whole kit in the van
    warehouse: str


async def build(conn: asyncpg.Connection, *, far_has_kit: bool = True) -> World:
    """A machine with a low-oil-pressure alarm and two engineers: a near one with an empty van
    and a far one with the kit; a warehouse with the kit 40 km the other way."""
    # Each world sits in a patch of map of its own, so other tests' engineers and warehouses (the
    # fleet is shared by the whole session) are hundreds of kilometres away.
    site = (random.uniform(-50.0, 50.0), random.uniform(-170.0, 170.0))
    w = World(site, unique("OM"), unique("OC"), unique("EN"), unique("EF"), unique("OW"))
    await add_machine(conn, w.machine_id, "excavator", w.customer_id, Site(*site, 300.0))
    await resources.upsert_parts(conn, [Part(no, no) for no, _ in KIT])
    lat, lon = site
    await resources.upsert_engineers(
        conn, [engineer(w.near, lat + 0.027, lon), engineer(w.far, lat - 0.135, lon)]
    )
    await resources.upsert_warehouses(conn, [Warehouse(w.warehouse, "W", lat + 0.36, lon)])
    lines = [StockLine(LocationKind.WAREHOUSE, w.warehouse, no, 5, 0) for no, _ in KIT]
    if far_has_kit:
        lines += [StockLine(LocationKind.VAN, w.far, no, q, 0) for no, q in KIT]
    await resources.set_stock(conn, lines)
    return w


async def raise_alarm(conn: asyncpg.Connection, machine_id: str) -> int:
    async with conn.transaction():
        (change,) = await alarm_store.apply_events(
            conn,
            [AlarmEvent(machine_id, LOW_OIL_PRESSURE, Transition.RAISED, 1_795_000_000_000)],
            lambda f: (KB.diagnose(f).severity, KB.diagnose(f).title),
        )
    return change.alarm_id


@pytest.fixture
async def http(pool: asyncpg.Pool) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(
        ApiContext(
            pool=pool, directory=SourceDirectory(), metrics=Metrics(), admin_token=ADMIN,
            limits=Limits(), knowledge=KB,
        )
    )  # fmt: skip
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        yield client


async def test_the_far_engineer_with_the_parts_beats_the_near_one_without(
    pool: asyncpg.Pool,
) -> None:
    async with pool.acquire() as conn:
        w = await build(conn)
        alarm_id = await raise_alarm(conn, w.machine_id)
    result = await dispatch_alarm(
        pool, KB, SlaPolicy(), alarm_id, actor="expert:t", engineer_id=None, note=""
    )
    # Near: 3 km out, but 40 km to the warehouse and back; far: 15 km straight, van stocked.
    assert result.chosen.engineer_id == w.far
    assert result.chosen.pickup_warehouse_id is None
    plan = result.order.plan
    assert plan is not None
    assert plan["route"][-1]["kind"] == "site"
    assert "km" in plan["explanation"]
    assert result.order.order.state.value == "dispatched"
    async with pool.acquire() as conn:
        van = {
            s.part_no: s.reserved for s in await resources.stock_at(conn, LocationKind.VAN, w.far)
        }
        alarm = await alarm_store.get_alarm(conn, alarm_id)
    assert van == dict(KIT)
    assert alarm.resolution == "dispatched"


async def test_without_a_stocked_van_the_warehouse_detour_is_planned(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        w = await build(conn, far_has_kit=False)
        alarm_id = await raise_alarm(conn, w.machine_id)
    result = await dispatch_alarm(
        pool, KB, SlaPolicy(), alarm_id, actor="expert:t", engineer_id=None, note=""
    )
    assert result.chosen.pickup_warehouse_id == w.warehouse
    assert [s.kind.value for s in result.chosen.route] == ["warehouse", "site"]
    async with pool.acquire() as conn:
        held = await resources.stock_at(conn, LocationKind.WAREHOUSE, w.warehouse)
    assert {s.part_no: s.reserved for s in held} == dict(KIT)


async def test_concurrent_dispatches_never_reserve_the_same_units(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        w = await build(conn)
        # Two more machines beside the first, each with an alarm needing the same kit; the far
        # van holds one kit, the warehouse five.
        others = [unique("OM") for _ in range(3)]
        for m in others:
            await add_machine(conn, m, "excavator", w.customer_id, Site(*w.site, 300.0))
        alarms = [await raise_alarm(conn, m) for m in [w.machine_id, *others]]
    results = await asyncio.gather(
        *(dispatch_alarm(pool, KB, SlaPolicy(), a, actor="expert:t", engineer_id=None, note="")
          for a in alarms)
    )  # fmt: skip
    from_van = [
        r for r in results if r.chosen.pickup_warehouse_id is None and r.chosen.engineer_id == w.far
    ]
    assert len(from_van) <= 1
    async with pool.acquire() as conn:
        for kind, where in ((LocationKind.VAN, w.far), (LocationKind.WAREHOUSE, w.warehouse)):
            for line in await resources.stock_at(conn, kind, where):
                assert line.reserved <= line.quantity
        total = await conn.fetchval(
            "SELECT coalesce(sum(quantity), 0) FROM order_reservations WHERE order_id = ANY($1)",
            [r.order.order_id for r in results],
        )
    assert total == len(results) * sum(q for _, q in KIT)


async def test_the_lifecycle_through_the_api_with_roles_and_audit_trail(
    pool: asyncpg.Pool, http: httpx.AsyncClient
) -> None:
    async with pool.acquire() as conn:
        w = await build(conn)
        alarm_id = await raise_alarm(conn, w.machine_id)
        _, eng = await create_token(conn, Role.ENGINEER, w.far, "far")
        _, other_eng = await create_token(conn, Role.ENGINEER, w.near, "near")
        _, customer = await create_token(conn, Role.CUSTOMER, w.customer_id, "c")
        _, stranger = await create_token(conn, Role.CUSTOMER, unique("OC"), "s")
    admin = {"Authorization": f"Bearer {ADMIN}"}
    as_eng = {"Authorization": f"Bearer {eng}"}
    made = await http.post(f"/v1/alarms/{alarm_id}/dispatch", json={}, headers=admin)
    assert made.status_code == 201, made.text
    order = made.json()
    oid = order["order_id"]
    assert order["engineer_id"] == w.far
    assert order["eta"] is not None
    again = await http.post(f"/v1/alarms/{alarm_id}/dispatch", json={}, headers=admin)
    assert again.status_code == 409
    not_theirs = await http.post(
        f"/v1/orders/{oid}/accept", headers={"Authorization": f"Bearer {other_eng}"}
    )
    assert not_theirs.status_code == 404  # another engineer's order does not exist for them
    assert (await http.post(f"/v1/orders/{oid}/arrive", headers=as_eng)).status_code == 409
    for step in ("accept", "start-travel", "arrive"):
        answer = await http.post(f"/v1/orders/{oid}/{step}", headers=as_eng)
        assert answer.status_code == 200, (step, answer.text)
    used = [{"part_no": KIT[0][0], "quantity": 1}]
    done = await http.post(f"/v1/orders/{oid}/complete", json={"parts_used": used}, headers=as_eng)
    assert done.json()["state"] == "completed"
    assert (await http.post(f"/v1/orders/{oid}/close", json={}, headers=as_eng)).status_code == 403
    closed = await http.post(f"/v1/orders/{oid}/close", json={}, headers=admin)
    assert closed.json()["state"] == "closed"

    mine = await http.get(f"/v1/orders/{oid}", headers={"Authorization": f"Bearer {customer}"})
    assert mine.status_code == 200
    theirs = await http.get(f"/v1/orders/{oid}", headers={"Authorization": f"Bearer {stranger}"})
    assert theirs.status_code == 404
    listed = await http.get("/v1/orders", headers={"Authorization": f"Bearer {stranger}"})
    assert oid not in [o["order_id"] for o in listed.json()]

    trail = (await http.get(f"/v1/orders/{oid}/events", headers=admin)).json()
    assert [e["action"] for e in trail] == [
        "create", "dispatch", "accept", "start_travel", "arrive", "complete", "close",
    ]  # fmt: skip
    assert trail[2]["actor"] == f"engineer:{w.far}"
    async with pool.acquire() as conn:
        van = {
            s.part_no: (s.quantity, s.reserved)
            for s in await resources.stock_at(conn, LocationKind.VAN, w.far)
        }
    # One unit of the first part consumed; the rest of the reservation released.
    assert van[KIT[0][0]] == (KIT[0][1] - 1, 0)
    assert all(reserved == 0 for _, reserved in van.values())


async def test_timers_fire_once_with_two_runners_and_after_a_restart(pool: asyncpg.Pool) -> None:
    policy = SlaPolicy(callback_after=timedelta(seconds=1))
    async with pool.acquire() as conn:
        w1 = await build(conn)
        a1 = await raise_alarm(conn, w1.machine_id)
        w2 = await build(conn)
        a2 = await raise_alarm(conn, w2.machine_id)
    t0 = datetime.now(UTC)
    contacted = await dispatch_alarm(
        pool, KB, policy, a1, actor="expert:t", engineer_id=None, note="", now=t0
    )
    ignored = await dispatch_alarm(
        pool, KB, policy, a2, actor="expert:t", engineer_id=None, note="", now=t0
    )
    from dispatch.orders import ContactCustomer  # noqa: PLC0415
    from telematics.services.dispatching import act  # noqa: PLC0415

    await act(pool, policy, contacted.order.order_id, ContactCustomer("called"), actor="expert:t",
              now=t0 + timedelta(milliseconds=500))  # fmt: skip
    # Nothing is due yet.
    assert [t for t in await fire_due(pool, worker_id="a", now=t0) if t.order_id in
            (contacted.order.order_id, ignored.order.order_id)] == []  # fmt: skip
    later = t0 + timedelta(seconds=2)
    first, second = await asyncio.gather(
        fire_due(pool, worker_id="a", now=later), fire_due(pool, worker_id="b", now=later)
    )
    ours = {contacted.order.order_id, ignored.order.order_id}
    fired = [t for t in [*first, *second] if t.order_id in ours]
    assert sorted((t.order_id, t.kind.value, t.verdict.value) for t in fired) == sorted(
        [(contacted.order.order_id, "callback_check", "satisfied"),
         (ignored.order.order_id, "callback_check", "breach")]
    )  # fmt: skip
    # A "restarted" runner (a new call, as after a crash) finds nothing left to fire for them.
    again = await fire_due(pool, worker_id="c", now=later + timedelta(seconds=1))
    assert [t for t in again if t.order_id in ours and t.kind.value == "callback_check"] == []
    async with pool.acquire() as conn:
        breaches = await conn.fetch(
            "SELECT order_id FROM sla_timers WHERE verdict = 'breach' AND order_id = ANY($1)",
            list(ours),
        )
        pending = await conn.fetchval(
            "SELECT count(*) FROM sla_timers WHERE state = 'pending' AND order_id = ANY($1)",
            list(ours),
        )
    assert [r["order_id"] for r in breaches] == [ignored.order.order_id]
    assert pending == 4  # arrival deadline and 48 h escalation of each order, still ahead


async def test_a_batch_is_assigned_jointly_not_greedily(pool: asyncpg.Pool) -> None:
    """Two alarms, two engineers. Engineer X is a little nearer to alarm 1 and much nearer to
    alarm 2; engineer Y is near alarm 1 only. Greedy (worst first, both critical: the first)
    gives alarm 1 to X and leaves alarm 2 to Y, far away; jointly, Y takes 1 and X takes 2."""
    from dispatch.assignment import assign_greedy  # noqa: PLC0415
    from telematics.services.dispatching import dispatch_alarms, fleet_snapshot  # noqa: PLC0415

    async with pool.acquire() as conn:
        w = await build(conn, far_has_kit=True)
        lat, lon = w.site
        second = unique("OM")
        await add_machine(conn, second, "excavator", w.customer_id, Site(lat + 0.5, lon, 300.0))
        x, y = unique("EX"), unique("EY")
        await resources.upsert_engineers(
            conn, [engineer(x, lat + 0.2, lon), engineer(y, lat - 0.22, lon)]
        )
        await resources.set_stock(
            conn, [StockLine(LocationKind.VAN, e, no, q, 0) for e in (x, y) for no, q in KIT]
        )
        # The world's own engineers stand aside for this one.
        await conn.execute(
            "UPDATE engineers SET status = 'off' WHERE engineer_id = ANY($1)", [w.near, w.far]
        )
        alarms = [await raise_alarm(conn, w.machine_id), await raise_alarm(conn, second)]
        now = datetime.now(UTC)
        from dispatch.geo import GeoPoint  # noqa: PLC0415
        from dispatch.needs import OrderNeed, PartNeed  # noqa: PLC0415

        needs = [
            OrderNeed(str(i), GeoPoint(la, lon), tuple(PartNeed(n, q) for n, q in KIT),
                      frozenset(SKILLS))
            for i, la in enumerate((lat, lat + 0.5))
        ]  # fmt: skip
        snapshot = await fleet_snapshot(conn, needs[0].parts, now)
        greedy = assign_greedy(needs, snapshot, now=now)
    result = await dispatch_alarms(pool, KB, SlaPolicy(), alarms, actor="expert:t", now=now)
    chosen = {o.alarm_id: o.order.engineer_id for o in result.orders}
    assert chosen == {alarms[0]: y, alarms[1]: x}
    assert result.unassigned == ()
    assert result.total_eta_min < greedy.total_delay_min
