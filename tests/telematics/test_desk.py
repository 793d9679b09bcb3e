"""The monitoring desk: SLA timers that come due become tasks, once, and the desk records calls."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg

from diagnosis.knowledge import KnowledgeBase
from dispatch.orders import Arrive, ContactCustomer, StartTravel
from dispatch.sla import SlaPolicy
from telematics.services.dispatching import act, dispatch_alarm
from telematics.services.sla_worker import fire_due
from telematics.store.tokens import Role, create_token
from tests.telematics.harness import ADMIN_TOKEN, api_client
from tests.telematics.test_orders import build, raise_alarm

KB = KnowledgeBase.load()
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


async def _tasks(pool: asyncpg.Pool, order_ids: list[int]) -> list[asyncpg.Record]:
    async with pool.acquire() as conn:
        return await conn.fetch(
            "SELECT t.order_id, t.kind, t.timer_id, t.notified_line FROM desk_tasks t "
            "WHERE order_id = ANY($1) ORDER BY order_id, kind",
            order_ids,
        )


async def test_a_due_timer_makes_one_task_once_with_two_runners_and_after_a_restart(
    pool: asyncpg.Pool,
) -> None:
    policy = SlaPolicy(callback_after=timedelta(seconds=1))
    async with pool.acquire() as conn:
        w1, w2 = await build(conn), await build(conn)
        a1, a2 = await raise_alarm(conn, w1.machine_id), await raise_alarm(conn, w2.machine_id)
    t0 = datetime.now(UTC)
    o1 = await dispatch_alarm(pool, KB, policy, a1, actor="t", engineer_id=None, note="", now=t0)
    o2 = await dispatch_alarm(pool, KB, policy, a2, actor="t", engineer_id=None, note="", now=t0)
    ids = [o1.order.order_id, o2.order.order_id]
    await act(pool, policy, ids[0], ContactCustomer("called"), actor="t",
              now=t0 + timedelta(milliseconds=100))  # fmt: skip
    await fire_due(pool, worker_id="a", now=t0)
    assert await _tasks(pool, ids) == []
    later = t0 + timedelta(seconds=2)
    # Two runners at once, three times over (as if restarted): each timer is claimed once.
    for attempt in range(3):
        await asyncio.gather(*(
            fire_due(pool, worker_id=f"w{attempt}{i}", now=later + timedelta(seconds=attempt))
            for i in range(2)
        ))  # fmt: skip
    tasks = await _tasks(pool, ids)
    assert [(t["order_id"], t["kind"]) for t in tasks] == [
        (ids[0], "callback_check"), (ids[1], "callback_check"),
    ]  # fmt: skip
    assert len({t["timer_id"] for t in tasks}) == 2


async def test_a_breached_deadline_is_an_escalation_that_notifies_the_second_line(
    pool: asyncpg.Pool,
) -> None:
    policy = SlaPolicy(callback_after=timedelta(seconds=1))
    async with pool.acquire() as conn:
        w = await build(conn)
        alarm = await raise_alarm(conn, w.machine_id)
    t0 = datetime.now(UTC) - timedelta(hours=72)
    made = await dispatch_alarm(pool, KB, policy, alarm, actor="t", engineer_id=None, note="",
                                now=t0)  # fmt: skip
    oid = made.order.order_id
    fired = await fire_due(pool, worker_id="x", now=t0 + timedelta(hours=49), notify_line=2)
    ours = sorted((f.kind.value, f.verdict.value) for f in fired if f.order_id == oid)
    assert ours == [("arrival_deadline", "breach"), ("callback_check", "breach"),
                    ("completion_escalation", "breach")]  # fmt: skip
    tasks = await _tasks(pool, [oid])
    assert [(t["kind"], t["notified_line"]) for t in tasks] == [
        ("arrival_escalation", 2), ("callback_check", None), ("completion_escalation", 2),
    ]  # fmt: skip
    async with pool.acquire() as conn:
        line = await conn.fetchval("SELECT support_line FROM alarms WHERE alarm_id = $1", alarm)
        escalated = await conn.fetchval(
            "SELECT count(*) FROM alarm_events WHERE alarm_id = $1 AND action = 'escalated'", alarm
        )
    assert (line, escalated) == (2, 1)  # the second escalation finds it there already


async def test_the_desk_lists_open_tasks_oldest_first_and_records_a_service_failure(
    pool: asyncpg.Pool,
) -> None:
    policy = SlaPolicy(callback_after=timedelta(seconds=1))
    async with pool.acquire() as conn:
        w1, w2 = await build(conn), await build(conn)
        a1, a2 = await raise_alarm(conn, w1.machine_id), await raise_alarm(conn, w2.machine_id)
    t0 = datetime.now(UTC) - timedelta(minutes=30)
    o1 = await dispatch_alarm(pool, KB, policy, a1, actor="t", engineer_id=None, note="", now=t0)
    o2 = await dispatch_alarm(pool, KB, policy, a2, actor="t", engineer_id=None,
                              note="", now=t0 + timedelta(minutes=1))  # fmt: skip
    ids = [o1.order.order_id, o2.order.order_id]
    engineer = o1.order.order.engineer_id
    async with pool.acquire() as conn:
        # The engineer reports a position 0.01 degrees (about 1.1 km) north of the site.
        await conn.execute(
            "INSERT INTO engineer_positions VALUES ($1, $2, $3, $4)",
            engineer, t0 + timedelta(minutes=5), w1.site[0] + 0.01, w1.site[1],
        )  # fmt: skip
    await fire_due(pool, worker_id="d", now=t0 + timedelta(minutes=3))
    async with api_client(pool) as http:
        listed = await http.get("/v1/desk/tasks", params={"state": "open"}, headers=ADMIN)
        assert listed.status_code == 200
        ours = [t for t in listed.json() if t["order_id"] in ids]
        assert [t["order_id"] for t in ours] == ids  # oldest first
        first = ours[0]
        assert first["kind"] == "callback_check"
        assert first["verdict"] == "breach"
        assert first["customer_id"] == w1.customer_id
        assert first["engineer_id"] == engineer
        assert "has engineer" in first["ask"]
        assert 1.3 < first["tracking"]["distance_km"] < 1.6  # 1.11 km straight x road factor 1.3
        assert first["tracking"]["eta"] is not None
        done = await http.post(
            f"/v1/desk/tasks/{first['task_id']}/result",
            json={"reached": True, "said": "nobody called us", "engineer_called": False},
            headers=ADMIN,
        )
        assert done.status_code == 200, done.text
        assert done.json()["result"]["service_failure"] is True
        assert done.json()["result"]["done_by"] == "admin:admin"
        again = await http.post(
            f"/v1/desk/tasks/{first['task_id']}/result", json={"reached": True}, headers=ADMIN
        )
        assert again.status_code == 409
        assert again.headers["content-type"].startswith("application/problem+json")
        still = await http.get("/v1/desk/tasks", params={"order_id": ids[0]}, headers=ADMIN)
        assert still.json() == []
        closed = await http.get(
            "/v1/desk/tasks", params={"order_id": ids[0], "state": "done"}, headers=ADMIN
        )
        assert [t["task_id"] for t in closed.json()] == [first["task_id"]]
        for bad in (
            {"reached": "yes"},
            {"reached": True, "said": "a\u0000b"},
            {"reached": True, "said": "x" * 5000},
            {"reached": True, "extra": 1},
        ):
            refused = await http.post(
                f"/v1/desk/tasks/{ours[1]['task_id']}/result", json=bad, headers=ADMIN
            )
            assert refused.status_code == 422, bad
        missing = await http.post(
            "/v1/desk/tasks/999999999999/result", json={"reached": False}, headers=ADMIN
        )
        assert missing.status_code == 404
        junk = await http.get("/v1/desk/tasks", params={"state": "closed"}, headers=ADMIN)
        assert junk.status_code == 422


async def test_an_arrival_far_from_the_site_is_flagged(pool: asyncpg.Pool) -> None:
    policy = SlaPolicy()
    async with pool.acquire() as conn:
        w = await build(conn)
        alarm = await raise_alarm(conn, w.machine_id)
    t0 = datetime.now(UTC) - timedelta(hours=30)
    made = await dispatch_alarm(pool, KB, policy, alarm, actor="t", engineer_id=None, note="",
                                now=t0)  # fmt: skip
    oid, engineer = made.order.order_id, made.order.order.engineer_id
    from dispatch.orders import Accept  # noqa: PLC0415

    for i, command in enumerate((Accept(), StartTravel(), Arrive())):
        await act(pool, policy, oid, command, actor="t", now=t0 + timedelta(minutes=10 * (i + 1)))
    async with pool.acquire() as conn:
        # Reported 0.05 degrees (5.6 km) away just before "arriving": the machine's radius is 300 m.
        await conn.execute(
            "INSERT INTO engineer_positions VALUES ($1, $2, $3, $4)",
            engineer, t0 + timedelta(minutes=29), w.site[0] + 0.05, w.site[1],
        )  # fmt: skip
    await fire_due(pool, worker_id="f", now=t0 + timedelta(hours=25))
    async with api_client(pool) as http:
        listed = await http.get(
            "/v1/desk/tasks", params={"order_id": oid, "state": "all"}, headers=ADMIN
        )
        order = await http.get(f"/v1/orders/{oid}", headers=ADMIN)
    tasks = listed.json()
    assert tasks, listed.text
    tracking = tasks[0]["tracking"]
    assert tracking["arrived_off_site"] is True
    assert 5000 < tracking["arrival_distance_m"] < 6000
    assert tracking["eta"] is None  # on site: no ETA to recompute
    assert order.json()["tracking"] == tracking


async def test_an_order_shows_live_tracking_by_role(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        w = await build(conn)
        alarm = await raise_alarm(conn, w.machine_id)
    made = await dispatch_alarm(pool, KB, SlaPolicy(), alarm, actor="t", engineer_id=None, note="")
    oid, engineer = made.order.order_id, made.order.order.engineer_id
    async with pool.acquire() as conn:
        _, customer = await create_token(conn, Role.CUSTOMER, w.customer_id, "c")
        _, own = await create_token(conn, Role.ENGINEER, str(engineer), "e")
    async with api_client(pool) as http:
        before = await http.get(f"/v1/orders/{oid}", headers=ADMIN)
        assert before.json()["tracking"]["at"] is None  # no position reported yet
        async with pool.acquire() as conn:
            # 0.1 degrees (11.1 km) south, reported now: 14.5 road km at the engineer's speed.
            await conn.execute(
                "INSERT INTO engineer_positions VALUES ($1, now(), $2, $3)",
                engineer, w.site[0] - 0.1, w.site[1],
            )  # fmt: skip
        staff = (await http.get(f"/v1/orders/{oid}", headers=ADMIN)).json()
        mine = await http.get(f"/v1/orders/{oid}", headers={"Authorization": f"Bearer {own}"})
        theirs = await http.get(
            f"/v1/orders/{oid}", headers={"Authorization": f"Bearer {customer}"}
        )
        listed = await http.get("/v1/orders", params={"machine_id": w.machine_id}, headers=ADMIN)
    assert 14.0 < staff["tracking"]["distance_km"] < 15.0
    eta = datetime.fromisoformat(staff["tracking"]["eta"])
    assert timedelta(minutes=10) < eta - datetime.now(UTC) < timedelta(minutes=30)
    assert staff["tracking"]["arrived_off_site"] is None
    assert mine.json()["tracking"]["distance_km"] == staff["tracking"]["distance_km"]
    assert "tracking" not in theirs.json()
    assert theirs.json()["live_eta"] is not None
    assert listed.json()[0]["tracking"]["distance_km"] == staff["tracking"]["distance_km"]
