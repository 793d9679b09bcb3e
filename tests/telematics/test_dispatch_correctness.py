"""Dispatch correctness against the real database and the HTTP app: stock beyond a reservation,
transfers that re-plan, authorisation inside the action's transaction, engineer capacity under
concurrent dispatches, the acting identity in audit trails, and tokens of unknown engineers.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from dispatch.orders import Transfer, apply
from dispatch.sla import SlaPolicy
from telematics.api.app import create_app
from telematics.api.context import ApiContext
from telematics.base.metrics import Metrics
from telematics.services.dispatching import dispatch_alarm
from telematics.store import orders as order_store
from telematics.store import resources
from telematics.store.registry import Site, SourceDirectory, add_machine
from telematics.store.resources import EngineerProfile, LocationKind, StockLine
from telematics.store.tokens import Role, create_token, token_hash
from telematics.wire.decode import Limits
from tests.conftest import unique
from tests.telematics.test_orders import KB, KIT, SKILLS, World, build, raise_alarm

ADMIN = "correctness-admin"
AS_ADMIN = {"Authorization": f"Bearer {ADMIN}"}


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


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def second_machine(conn: asyncpg.Connection, w: World) -> int:
    """Another machine at the world's site, with an alarm needing the same kit."""
    machine_id = unique("OM")
    await add_machine(conn, machine_id, "excavator", w.customer_id, Site(*w.site, 300.0))
    return await raise_alarm(conn, machine_id)


async def van(pool: asyncpg.Pool, engineer_id: str) -> dict[str, tuple[int, int]]:
    async with pool.acquire() as conn:
        lines = await resources.stock_at(conn, LocationKind.VAN, engineer_id)
    return {s.part_no: (s.quantity, s.reserved) for s in lines}


async def waiting_on_locks(pool: asyncpg.Pool, n: int) -> None:
    """Until `n` backends of this database wait for a lock (no sleeping on a guess)."""
    async with asyncio.timeout(30):
        while True:
            waiting = await pool.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock'"
            )
            if waiting >= n:
                return
            await asyncio.sleep(0.02)


async def test_parts_beyond_the_reservation_come_from_unreserved_stock_or_are_refused(
    pool: asyncpg.Pool, http: httpx.AsyncClient
) -> None:
    """Two orders hold a kit each in one van. The first uses one unit more than it reserved:
    with nothing unreserved in the van that is refused, naming the part, and the second order's
    reservation stays whole. With one spare unit stocked, the completion takes that unit."""
    part, q = KIT[0]
    async with pool.acquire() as conn:
        w = await build(conn)
        await resources.set_stock(
            conn, [StockLine(LocationKind.VAN, w.far, no, 2 * n, 0) for no, n in KIT]
        )
        first, second = await raise_alarm(conn, w.machine_id), await second_machine(conn, w)
        _, eng = await create_token(conn, Role.ENGINEER, w.far, "far")
    for alarm in (first, second):
        made = await http.post(
            f"/v1/alarms/{alarm}/dispatch", json={"engineer_id": w.far}, headers=AS_ADMIN
        )
        assert made.status_code == 201, made.text
        assert made.json()["plan"]["pickup_warehouse_id"] is None  # both from the van
    oid = (await http.get("/v1/orders", params={"engineer_id": w.far}, headers=AS_ADMIN)).json()[
        -1
    ]["order_id"]
    for step in ("accept", "start-travel", "arrive"):
        assert (await http.post(f"/v1/orders/{oid}/{step}", headers=bearer(eng))).status_code == 200
    before = await van(pool, w.far)
    assert before[part] == (2 * q, 2 * q)

    beyond = [{"part_no": part, "quantity": q + 1}]
    refused = await http.post(
        f"/v1/orders/{oid}/complete", json={"parts_used": beyond}, headers=bearer(eng)
    )
    assert refused.status_code == 422, refused.text
    assert part in refused.json()["detail"]
    assert await van(pool, w.far) == before  # the other order's reservation is whole
    assert (await http.get(f"/v1/orders/{oid}", headers=AS_ADMIN)).json()["state"] == "on_site"

    unknown = [{"part_no": unique("NOPART"), "quantity": 1}]
    missing = await http.post(
        f"/v1/orders/{oid}/complete", json={"parts_used": unknown}, headers=bearer(eng)
    )
    assert missing.status_code == 422, missing.text
    assert unknown[0]["part_no"] in missing.json()["detail"]

    async with pool.acquire() as conn:
        await resources.set_stock(conn, [StockLine(LocationKind.VAN, w.far, part, 2 * q + 1, 0)])
    done = await http.post(
        f"/v1/orders/{oid}/complete", json={"parts_used": beyond}, headers=bearer(eng)
    )
    assert done.status_code == 200, done.text
    after = await van(pool, w.far)
    assert after[part] == (2 * q + 1 - (q + 1), q)  # the second order still holds its kit
    for no, n in KIT[1:]:
        assert after[no] == (2 * n, n)  # released, not consumed


async def test_a_transfer_replans_and_checks_the_new_engineer(
    pool: asyncpg.Pool, http: httpx.AsyncClient
) -> None:
    async with pool.acquire() as conn:
        w = await build(conn)
        alarm_id = await raise_alarm(conn, w.machine_id)
        lat, lon = w.site
        unskilled, off, full = unique("EU"), unique("EO"), unique("EC")
        await resources.upsert_engineers(
            conn,
            [
                EngineerProfile(unskilled, "U", (), lat, lon + 0.01, None, None, "UTC",
                                "available", 3, 50.0),
                EngineerProfile(off, "O", SKILLS, lat, lon + 0.01, None, None, "UTC", "off", 3,
                                50.0),
                EngineerProfile(full, "F", SKILLS, lat, lon + 0.01, None, None, "UTC",
                                "available", 0, 50.0),
            ],
        )  # fmt: skip
    made = await http.post(f"/v1/alarms/{alarm_id}/dispatch", json={}, headers=AS_ADMIN)
    assert made.status_code == 201, made.text
    order = made.json()
    oid = order["order_id"]
    assert order["plan"]["engineer_id"] == w.far

    for who, why in ((unskilled, "lacks"), (off, "off shift"), (full, "0/0 open orders")):
        refused = await http.post(
            f"/v1/orders/{oid}/transfer", json={"to_engineer_id": who}, headers=AS_ADMIN
        )
        assert refused.status_code == 409, (who, refused.text)
        assert who in refused.json()["detail"]
        assert why in refused.json()["detail"]
    nobody = await http.post(
        f"/v1/orders/{oid}/transfer", json={"to_engineer_id": unique("EX")}, headers=AS_ADMIN
    )
    assert nobody.status_code == 404, nobody.text

    moved = await http.post(
        f"/v1/orders/{oid}/transfer",
        json={"to_engineer_id": w.near, "reason": "far one is sick"},
        headers=AS_ADMIN,
    )
    assert moved.status_code == 200, moved.text
    after = moved.json()
    # The near engineer's van is empty: the new plan goes through the warehouse.
    assert after["engineer_id"] == w.near
    assert after["plan"]["engineer_id"] == w.near
    assert after["plan"]["pickup_warehouse_id"] == w.warehouse
    assert [s["kind"] for s in after["plan"]["route"]] == ["warehouse", "site"]
    assert after["eta"] != order["eta"]
    async with pool.acquire() as conn:
        held = await resources.stock_at(conn, LocationKind.WAREHOUSE, w.warehouse)
    assert {s.part_no: s.reserved for s in held} == dict(KIT)
    assert all(reserved == 0 for _, reserved in (await van(pool, w.far)).values())


async def test_an_engineer_action_is_authorised_inside_its_transaction(
    pool: asyncpg.Pool, http: httpx.AsyncClient
) -> None:
    """The order is transferred away while the old engineer's accept waits for the order's row:
    the accept must then find the order no longer theirs."""
    async with pool.acquire() as conn:
        w = await build(conn)
        alarm_id = await raise_alarm(conn, w.machine_id)
        _, eng = await create_token(conn, Role.ENGINEER, w.far, "far")
    result = await dispatch_alarm(
        pool, KB, SlaPolicy(), alarm_id, actor="expert:t", engineer_id=None, note=""
    )
    oid = result.order.order_id
    assert result.order.order.engineer_id == w.far
    async with pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        try:
            stored = await order_store.load(conn, oid, lock=True)
            accept = asyncio.create_task(http.post(f"/v1/orders/{oid}/accept", headers=bearer(eng)))
            await waiting_on_locks(pool, 1)
            moved, event = apply(
                stored.order, Transfer(w.near, w.warehouse, "test"), actor="expert:t",
                now=stored.order.updated_at,
            )  # fmt: skip
            await order_store.save(conn, stored, moved, event)
        except BaseException:
            await tx.rollback()
            raise
        await tx.commit()
    answer = await accept
    assert answer.status_code == 404, answer.text
    async with pool.acquire() as conn:
        now = await order_store.load(conn, oid)
    assert (now.order.state.value, now.order.engineer_id) == ("dispatched", w.near)


async def test_concurrent_dispatches_do_not_push_an_engineer_past_max_orders(
    pool: asyncpg.Pool, http: httpx.AsyncClient
) -> None:
    """Two dispatches to the same engineer (room for one more order) are held at the van's
    stock rows until both have matched; then they race to commit."""
    async with pool.acquire() as conn:
        w = await build(conn)
        await conn.execute("UPDATE engineers SET max_orders = 1 WHERE engineer_id = $1", w.far)
        await resources.set_stock(
            conn, [StockLine(LocationKind.VAN, w.far, no, 2 * n, 0) for no, n in KIT]
        )
        alarms = [await raise_alarm(conn, w.machine_id), await second_machine(conn, w)]
    async with pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        try:
            await conn.execute(
                "SELECT 1 FROM stock WHERE location_kind = 'van' AND location_id = $1 FOR UPDATE",
                w.far,
            )
            requests = [
                asyncio.create_task(
                    http.post(
                        f"/v1/alarms/{a}/dispatch", json={"engineer_id": w.far}, headers=AS_ADMIN
                    )
                )
                for a in alarms
            ]
            await waiting_on_locks(pool, 2)
        finally:
            await tx.rollback()
    answers = await asyncio.gather(*requests)
    assert sorted(a.status_code for a in answers) == [201, 409], [a.text for a in answers]
    assert "1/1 open orders" in next(a for a in answers if a.status_code == 409).json()["detail"]
    async with pool.acquire() as conn:
        profile = await resources.get_engineer(conn, w.far)
    assert profile.open_orders == 1


async def test_the_actor_in_the_audit_trail_is_the_caller(
    pool: asyncpg.Pool, http: httpx.AsyncClient
) -> None:
    async with pool.acquire() as conn:
        w = await build(conn)
        alarm_id = await raise_alarm(conn, w.machine_id)
        _, expert = await create_token(conn, Role.EXPERT, "ecc-real", "Real")
    acked = await http.post(
        f"/v1/alarms/{alarm_id}/ack", json={"by": "ecc-someone-else"}, headers=bearer(expert)
    )
    assert acked.status_code == 200, acked.text
    assert acked.json()["acknowledged_by"] == "expert:ecc-real"
    trail = (await http.get(f"/v1/alarms/{alarm_id}/events", headers=AS_ADMIN)).json()
    (ack,) = [e for e in trail if e["action"] == "acknowledged"]
    assert ack["actor"] == "expert:ecc-real"
    assert ack["detail"]["on_behalf_of"] == "ecc-someone-else"


async def test_tokens_for_engineers_that_do_not_exist_are_refused(
    pool: asyncpg.Pool, http: httpx.AsyncClient
) -> None:
    ghost = unique("GHOST")
    made = await http.post(
        "/v1/tokens", json={"role": "engineer", "subject_id": ghost}, headers=AS_ADMIN
    )
    assert made.status_code == 422, made.text
    assert ghost in made.json()["detail"]
    # A token stored before the check (or whose engineer row went) does not authenticate.
    secret = unique("tok")
    await pool.execute(
        "INSERT INTO api_tokens (token_hash, role, subject_id) VALUES ($1, 'engineer', $2)",
        token_hash(secret),
        ghost,
    )
    assert (await http.get("/v1/orders", headers=bearer(secret))).status_code == 401
