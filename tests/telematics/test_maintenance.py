"""Maintenance through the real database and the HTTP app: a plan item goes ok -> due_soon ->
overdue as engine hours are read and resets on completion; the job records each status once per
cycle; the forecast follows the usage rate; a planned order reserves its parts."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, time, timedelta

import asyncpg
import httpx
import pytest

from telematics.base.config import Settings
from telematics.maintenance import job, status_store
from telematics.store import resources
from telematics.store.registry import Site, add_machine
from telematics.store.resources import EngineerProfile, LocationKind, Part, StockLine
from telematics.store.tokens import Role, create_token
from tests.conftest import unique
from tests.telematics.harness import ADMIN_TOKEN, api_client

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
PLAN = {
    "items": [
        {"item": "engine_oil", "name": "Engine oil and filter", "every_h": 500, "every_days": 365,
         "first_at_h": 250, "parts": [{"part_no": "OF-2010", "quantity": 1}],
         "skills": ["engine_mechanical"]},
        {"item": "hydraulic_oil", "name": "Hydraulic oil", "every_h": 2000, "every_days": 730},
    ]
}  # fmt: skip


@pytest.fixture
async def http(pool: asyncpg.Pool, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(pool, settings=settings) as client:
        yield client


async def planned_machine(
    pool: asyncpg.Pool,
    http: httpx.AsyncClient,
    *,
    customer: str | None = None,
    site: tuple[float, float] = (10.0, 20.0),
) -> str:
    """A loader of a model of its own with `PLAN` as its plan, delivered 10 days ago."""
    model = unique("ML")
    put = await http.put(f"/v1/maintenance/plans/{model}", json=PLAN, headers=ADMIN)
    assert put.status_code == 200, put.text
    machine_id = unique("MM")
    async with pool.acquire() as conn:
        await resources.upsert_parts(conn, [Part("OF-2010", "Engine oil filter")])
        await add_machine(conn, machine_id, model, customer or unique("MC"), Site(*site, 300))
        await conn.execute(
            "UPDATE machines SET machine_class = 'loader', delivered_at = $2 WHERE machine_id = $1",
            machine_id,
            datetime.now(UTC).date() - timedelta(days=10),
        )
    return machine_id


async def read_hours(
    pool: asyncpg.Pool, machine_id: str, *points: tuple[datetime, float | None]
) -> None:
    await pool.executemany(
        "INSERT INTO readings (machine_id, ts, engine_hours) VALUES ($1, $2, $3)",
        [(machine_id, ts, h) for ts, h in points],
    )


def ago(days: float) -> datetime:
    return datetime.now(UTC) - timedelta(days=days)


async def items(http: httpx.AsyncClient, machine_id: str) -> dict[str, dict[str, object]]:
    answer = await http.get(f"/v1/machines/{machine_id}/maintenance", headers=ADMIN)
    assert answer.status_code == 200, answer.text
    return {i["item"]: i for i in answer.json()["items"]}


async def alerts(pool: asyncpg.Pool, machine_id: str) -> list[tuple[str, str, int]]:
    """The engine oil's alerts (the class's other items, merged into the plan, have theirs)."""
    async with pool.acquire() as conn:
        found = await status_store.alerts_of(conn, machine_id)
    return [(a.item, a.status, a.cycle) for a in found if a.item == "engine_oil"]


async def test_an_item_goes_ok_due_soon_overdue_and_resets_on_completion(
    pool: asyncpg.Pool, http: httpx.AsyncClient, settings: Settings
) -> None:
    machine_id = await planned_machine(pool, http)
    await read_hours(pool, machine_id, (ago(3), 10.0))
    oil = (await items(http, machine_id))["engine_oil"]
    assert (oil["status"], oil["due_at_h"], oil["remaining_h"]) == ("ok", 250.0, 240.0)
    await job.run_once(pool, settings)
    assert await alerts(pool, machine_id) == []

    await read_hours(pool, machine_id, (ago(2), 210.0))  # 40 h left: within the 50 h lead
    assert (await items(http, machine_id))["engine_oil"]["status"] == "due_soon"
    await job.run_once(pool, settings)
    await job.run_once(pool, settings)  # a second round (or a second copy) records nothing new
    assert await alerts(pool, machine_id) == [("engine_oil", "due_soon", 0)]

    await read_hours(pool, machine_id, (ago(1), 276.0))  # 26 h past: beyond 10 % of 250 h
    oil = (await items(http, machine_id))["engine_oil"]
    assert (oil["status"], oil["remaining_h"]) == ("overdue", -26.0)
    await job.run_once(pool, settings)
    assert await alerts(pool, machine_id) == [
        ("engine_oil", "due_soon", 0), ("engine_oil", "overdue", 0)
    ]  # fmt: skip

    done_at = ago(0.5)
    done = await http.post(
        f"/v1/machines/{machine_id}/maintenance/engine_oil/done",
        json={"engine_hours": 276.0, "done_at": done_at.isoformat(),
              "parts_used": [{"part_no": "OF-2010", "quantity": 1}], "notes": "first service"},
        headers=ADMIN,
    )  # fmt: skip
    assert done.status_code == 201, done.text
    oil = (await items(http, machine_id))["engine_oil"]
    assert (oil["status"], oil["due_at_h"], oil["remaining_h"]) == ("ok", 776.0, 500.0)
    assert oil["due_date"] == (done_at.date() + timedelta(days=365)).isoformat()
    last = oil["last_done"]
    assert isinstance(last, dict)
    assert (last["engine_hours"], last["done_by"], last["notes"]) == (
        276.0,
        "admin:admin",
        "first service",
    )
    assert last["parts_used"] == [{"part_no": "OF-2010", "quantity": 1}]
    # The completion reset the fleet's row at once, without waiting for the job.
    due = await http.get("/v1/maintenance/due", params={"status": "overdue"}, headers=ADMIN)
    assert machine_id not in [i["machine_id"] for i in due.json()["items"]]

    await read_hours(pool, machine_id, (ago(0.1), 730.0))  # the next cycle comes due
    await job.run_once(pool, settings)
    assert (await alerts(pool, machine_id))[-1] == ("engine_oil", "due_soon", 1)


async def test_copies_of_the_job_running_at_once_record_each_status_once(
    pool: asyncpg.Pool, http: httpx.AsyncClient, settings: Settings
) -> None:
    machine_id = await planned_machine(pool, http)
    await read_hours(pool, machine_id, (ago(1), 230.0))
    await asyncio.gather(*(job.run_once(pool, settings) for _ in range(3)))
    assert await alerts(pool, machine_id) == [("engine_oil", "due_soon", 0)]
    rows = await pool.fetchval(
        "SELECT count(*) FROM maintenance_status WHERE machine_id = $1 AND item = 'engine_oil'",
        machine_id,
    )
    assert rows == 1


async def test_a_completion_is_recorded_once_and_checked(
    pool: asyncpg.Pool, http: httpx.AsyncClient
) -> None:
    machine_id = await planned_machine(pool, http)
    await read_hours(pool, machine_id, (ago(1), 100.0))
    url = f"/v1/machines/{machine_id}/maintenance/engine_oil/done"
    body = {"engine_hours": 99.5, "done_at": ago(0.5).isoformat()}
    first = await http.post(url, json=body, headers=ADMIN)
    again = await http.post(url, json=body, headers=ADMIN)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["done"]["done_id"] == again.json()["done"]["done_id"]
    assert again.json()["created"] is False
    count = await pool.fetchval(
        "SELECT count(*) FROM maintenance_done WHERE machine_id = $1", machine_id
    )
    assert count == 1
    other = await http.post(url, json={**body, "engine_hours": 90.0}, headers=ADMIN)
    assert other.status_code == 409
    # The API's description names the three answers a client must handle.
    spec = (await http.get("/openapi.json")).json()
    answers = spec["paths"]["/v1/machines/{machine_id}/maintenance/{item}/done"]["post"]
    assert {"200", "201", "409"} <= set(answers["responses"])
    for bad, why in (
        ({**body, "done_at": (datetime.now(UTC) + timedelta(hours=1)).isoformat()}, "future"),
        ({**body, "engine_hours": 125.0}, "above the machine's counter"),
        ({**body, "parts_used": [{"part_no": "NO-SUCH-PART", "quantity": 1}]}, "unknown parts"),
    ):
        answer = await http.post(url, json={**bad, "done_at": bad["done_at"]}, headers=ADMIN)
        assert answer.status_code == 422, answer.text
        assert why in answer.json()["detail"]
    for junk in (
        {**body, "engine_hours": -1},
        {**body, "engine_hours": 1e300},
        {**body, "engine_hours": "100"},
        {**body, "done_at": "2026-01-01T00:00:00"},  # no offset
        {**body, "done_at": "yesterday"},
        {**body, "notes": "nul\x00"},
        {**body, "notes": "x" * 5000},
        {**body, "parts_used": [{"part_no": "OF-2010"}] * 2},
        {**body, "parts_used": [{"part_no": "OF-2010", "quantity": 0}]},
        {**body, "extra": 1},
        {"engine_hours": 5},
    ):
        assert (await http.post(url, json=junk, headers=ADMIN)).status_code == 422, junk
    assert (
        await http.post(url.replace("engine_oil", "Bad-Item"), json=body, headers=ADMIN)
    ).status_code == 422
    missing = await http.post(url.replace("engine_oil", "coolant"), json=body, headers=ADMIN)
    assert missing.status_code == 404
    assert (
        await http.post(url.replace(machine_id, unique("NOPE")), json=body, headers=ADMIN)
    ).status_code == 404


def workweeks(final_h: float, h_per_day: float) -> list[tuple[datetime, float]]:
    """Counter readings at noon on 5 of every 7 days of the last four weeks, ending at `final_h`."""
    today = datetime.now(UTC).date()
    days = [today - timedelta(days=k) for k in range(29, 0, -1) if k % 7 not in (1, 2)]
    start = final_h - h_per_day * (len(days) - 1)
    return [(datetime.combine(d, time(12), UTC), start + h_per_day * n) for n, d in enumerate(days)]


async def test_the_forecast_follows_the_usage_rate(
    pool: asyncpg.Pool, http: httpx.AsyncClient
) -> None:
    slow, fast = await planned_machine(pool, http), await planned_machine(pool, http)
    await read_hours(pool, slow, *workweeks(150.0, 8.0))
    await read_hours(pool, fast, *workweeks(150.0, 16.0))
    today = datetime.now(UTC).date()
    views = {}
    for machine_id in (slow, fast):
        answer = await http.get(f"/v1/machines/{machine_id}/maintenance", headers=ADMIN)
        views[machine_id] = answer.json()
    assert views[slow]["usage_h_per_day"] == pytest.approx(40 / 7, abs=1e-3)
    assert views[fast]["usage_h_per_day"] == pytest.approx(80 / 7, abs=1e-3)
    oil = {m: next(i for i in v["items"] if i["item"] == "engine_oil") for m, v in views.items()}
    assert oil[slow]["remaining_h"] == oil[fast]["remaining_h"] == 100.0
    # 100 h at 40/7 h a day: 17.5 -> 18 days; at twice the rate, 8.75 -> 9 days.
    assert oil[slow]["forecast_due_date"] == (today + timedelta(days=18)).isoformat()
    assert oil[fast]["forecast_due_date"] == (today + timedelta(days=9)).isoformat()


async def test_a_counter_running_backwards_is_not_usage(
    pool: asyncpg.Pool, http: httpx.AsyncClient
) -> None:
    machine_id = await planned_machine(pool, http)
    readings = workweeks(150.0, 8.0)
    # The controller was swapped ten days ago: its counter restarted near zero.
    swapped = [(ts, h - 140.0 if ts < ago(10) else h) for ts, h in readings]
    await read_hours(pool, machine_id, *swapped)
    answer = await http.get(f"/v1/machines/{machine_id}/maintenance", headers=ADMIN)
    assert answer.json()["usage_h_per_day"] == pytest.approx(40 / 7, abs=1e-3)


async def test_a_planned_order_reserves_the_items_parts_once(
    pool: asyncpg.Pool, http: httpx.AsyncClient
) -> None:
    site = (random.uniform(-50.0, 50.0), random.uniform(-170.0, 170.0))
    machine_id = await planned_machine(pool, http, site=site)
    engineer_id = unique("ME")
    async with pool.acquire() as conn:
        await resources.upsert_parts(conn, [Part("OF-2010", "Engine oil filter")])
        await resources.upsert_engineers(
            conn,
            [EngineerProfile(engineer_id, "Mech", ("engine_mechanical",), site[0] + 0.02, site[1],
                             None, None, "UTC", "available", 3, 50.0)],
        )  # fmt: skip
        await resources.set_stock(conn, [StockLine(LocationKind.VAN, engineer_id, "OF-2010", 2, 0)])
    url = f"/v1/machines/{machine_id}/maintenance/engine_oil/order"
    made = await http.post(url, json={}, headers=ADMIN)
    assert made.status_code == 201, made.text
    order = made.json()
    assert order["fault"] == "maintenance:engine_oil"
    assert order["severity"] == "info"
    assert order["engineer_id"] == engineer_id
    assert order["state"] == "dispatched"
    reserved = await pool.fetchval(
        "SELECT reserved FROM stock WHERE location_kind = 'van' AND location_id = $1 "
        "AND part_no = 'OF-2010'",
        engineer_id,
    )
    assert reserved == 1
    timers = await pool.fetchval(
        "SELECT count(*) FROM sla_timers WHERE order_id = $1", order["order_id"]
    )
    assert timers > 0
    assert (await items(http, machine_id))["engine_oil"]["open_order_id"] == order["order_id"]
    again = await http.post(url, json={}, headers=ADMIN)
    assert again.status_code == 409, again.text
    assert "already exists" in again.json()["detail"]
    # Two at once for another item: the store's unique index lets one through.
    async with pool.acquire() as conn:
        await resources.set_stock(conn, [StockLine(LocationKind.VAN, engineer_id, "OF-2010", 4, 0)])
    both = await asyncio.gather(
        *(http.post(url.replace("engine_oil", "hydraulic_oil"), headers=ADMIN) for _ in range(2))
    )
    assert sorted(a.status_code for a in both) == [201, 409], [a.text for a in both]
    opened = await pool.fetchval(
        "SELECT count(*) FROM orders WHERE machine_id = $1 AND fault = 'maintenance:hydraulic_oil'",
        machine_id,
    )
    assert opened == 1
    assert (await http.post(url.replace("engine_oil", "coolant"), headers=ADMIN)).status_code == 404


async def test_the_due_list_is_sorted_scoped_and_filtered(
    pool: asyncpg.Pool, http: httpx.AsyncClient, settings: Settings
) -> None:
    customer = unique("MDC")
    soon = await planned_machine(pool, http, customer=customer)
    later = await planned_machine(pool, http, customer=customer)
    stranger = await planned_machine(pool, http)
    await read_hours(pool, soon, *workweeks(240.0, 8.0))  # 10 h to its first service: 2 days
    await read_hours(pool, later, *workweeks(100.0, 8.0))
    await read_hours(pool, stranger, *workweeks(245.0, 8.0))
    await job.run_once(pool, settings)
    async with pool.acquire() as conn:
        _, token = await create_token(conn, Role.CUSTOMER, customer, "c")
    mine = {"Authorization": f"Bearer {token}"}
    answer = await http.get(
        "/v1/maintenance/due", params={"customer_id": "someone-else"}, headers=mine
    )
    assert answer.status_code == 200, answer.text
    listed = [(i["machine_id"], i["item"], i["status"]) for i in answer.json()["items"]]
    assert {m for m, _, _ in listed} == {soon, later}
    assert listed[0] == (soon, "engine_oil", "due_soon")  # forecast in 2 days: first
    dates = [i["forecast_due_date"] or "9999" for i in answer.json()["items"]]
    assert dates == sorted(dates)
    statuses = await http.get("/v1/maintenance/due", params={"status": "due_soon"}, headers=mine)
    assert [(i["machine_id"], i["item"]) for i in statuses.json()["items"]] == [
        (soon, "engine_oil")
    ]
    staff = await http.get(
        "/v1/maintenance/due",
        params={"status": ["due_soon", "overdue"], "machine_class": "loader", "limit": 500},
        headers=ADMIN,
    )
    assert {soon, stranger} <= {i["machine_id"] for i in staff.json()["items"]}
    paged, after = [], None
    while True:
        params = {"customer_id": customer, "limit": 1, **({"after": after} if after else {})}
        page = (await http.get("/v1/maintenance/due", params=params, headers=ADMIN)).json()
        paged += [(i["machine_id"], i["item"]) for i in page["items"]]
        after = page["next_after"]
        if after is None:
            break
    assert paged == [(m, i) for m, i, _ in listed]
    for junk in ({"status": "bad"}, {"within_days": -1}, {"limit": 0}, {"limit": 501},
                 {"after": "nonsense"}, {"machine_class": "spaceship"}):  # fmt: skip
        assert (
            await http.get("/v1/maintenance/due", params=junk, headers=ADMIN)
        ).status_code == 422


async def test_plans_are_read_shipped_or_stored_and_checked(http: httpx.AsyncClient) -> None:
    shipped = await http.get("/v1/maintenance/plans/excavator", headers=ADMIN)
    assert shipped.status_code == 200
    assert shipped.json()["source"] == "shipped"
    assert "hydraulic_oil" in [i["item"] for i in shipped.json()["items"]]
    assert (await http.get("/v1/maintenance/plans/NO-PLAN-9", headers=ADMIN)).json()[
        "source"
    ] == "none"
    model = unique("MP")
    warned = await http.put(
        f"/v1/maintenance/plans/{model}",
        json={"items": [{"item": "x", "name": "X", "every_days": 30,
                         "parts": [{"part_no": "NOT-IN-CATALOGUE", "quantity": 1}]}]},
        headers=ADMIN,
    )  # fmt: skip
    assert warned.status_code == 200, warned.text
    assert warned.json()["warnings"] == ["part NOT-IN-CATALOGUE is not in the parts catalogue"]
    stored = await http.get(f"/v1/maintenance/plans/{model}", headers=ADMIN)
    assert (stored.json()["source"], stored.json()["items"][0]["every_days"]) == ("stored", 30)
    good = {"item": "x", "name": "X", "every_h": 10}
    for junk in (
        {"items": [{"item": "x", "name": "X"}]},
        {"items": [{**good, "every_h": 0}]},
        {"items": [{**good, "every_h": 1e9}]},
        {"items": [{**good, "every_days": 0}]},
        {"items": [{**good, "item": "X Y"}]},
        {"items": [{**good, "item": "a" * 41}]},
        {"items": [{**good, "name": ""}]},
        {"items": [{**good, "name": "nul\x00"}]},
        {"items": [good, good]},
        {"items": [{**good, "item": f"i{n}"} for n in range(101)]},
        {"items": [{**good, "skills": ["Bad Skill"]}]},
        {"items": [{**good, "parts": [{"part_no": "P", "quantity": 1001}]}]},
        {"items": [{"item": "x", "name": "X", "every_days": 5, "first_at_h": 5}]},
        {"items": "none"},
        {},
    ):
        answer = await http.put(f"/v1/maintenance/plans/{model}", json=junk, headers=ADMIN)
        assert answer.status_code == 422, junk
    assert (
        await http.put("/v1/maintenance/plans/bad%2Fkey", json={"items": []}, headers=ADMIN)
    ).status_code in (404, 422)
    assert (await http.get("/v1/maintenance/plans/" + "x" * 65, headers=ADMIN)).status_code == 422


async def test_a_customer_sees_and_sets_only_its_own_machines(
    pool: asyncpg.Pool, http: httpx.AsyncClient
) -> None:
    owner, other = unique("MOC"), unique("MOD")
    machine_id = await planned_machine(pool, http, customer=owner)
    async with pool.acquire() as conn:
        _, own_token = await create_token(conn, Role.CUSTOMER, owner, "own")
        _, other_token = await create_token(conn, Role.CUSTOMER, other, "other")
    own = {"Authorization": f"Bearer {own_token}"}
    theirs = {"Authorization": f"Bearer {other_token}"}
    body = {"engine_hours": 5.0, "done_at": ago(1).isoformat()}
    done = f"/v1/machines/{machine_id}/maintenance/engine_oil/done"
    view = f"/v1/machines/{machine_id}/maintenance"
    assert (await http.get(view, headers=theirs)).status_code == 404
    assert (await http.post(done, json=body, headers=theirs)).status_code == 404
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM maintenance_done WHERE machine_id = $1", machine_id
        )
        == 0
    )
    assert (await http.get(view, headers=own)).status_code == 200
    assert (await http.post(done, json=body, headers=own)).status_code == 201
    order = f"/v1/machines/{machine_id}/maintenance/engine_oil/order"
    assert (await http.post(order, json={}, headers=own)).status_code == 403
    plan = await http.put("/v1/maintenance/plans/crane", json={"items": []}, headers=own)
    assert plan.status_code == 403


async def test_a_machine_without_engine_hours_is_judged_by_the_calendar(
    pool: asyncpg.Pool, http: httpx.AsyncClient
) -> None:
    machine_id = await planned_machine(pool, http)
    async with pool.acquire() as conn:
        await conn.execute(
            "UPDATE machines SET delivered_at = $2 WHERE machine_id = $1",
            machine_id,
            datetime.now(UTC).date() - timedelta(days=360),
        )
    await read_hours(pool, machine_id, (ago(1), None))  # reports, but without engine hours
    answer = (await http.get(f"/v1/machines/{machine_id}/maintenance", headers=ADMIN)).json()
    assert (answer["engine_hours"], answer["usage_h_per_day"]) == (None, None)
    oil = next(i for i in answer["items"] if i["item"] == "engine_oil")
    assert (oil["remaining_h"], oil["remaining_days"], oil["status"]) == (None, 5, "due_soon")
    assert oil["forecast_due_date"] == oil["due_date"]
