"""Dispatch correctness against the real database and the HTTP app: stock beyond a reservation,
transfers that re-plan, authorisation inside the action's transaction, engineer capacity under
concurrent dispatches, the acting identity in audit trails, and tokens of unknown engineers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from telematics.api.app import create_app
from telematics.api.context import ApiContext
from telematics.base.metrics import Metrics
from telematics.store import resources
from telematics.store.registry import Site, SourceDirectory, add_machine
from telematics.store.resources import LocationKind, StockLine
from telematics.store.tokens import Role, create_token
from telematics.wire.decode import Limits
from tests.conftest import unique
from tests.telematics.test_orders import KB, KIT, World, build, raise_alarm

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
