"""Field resources over HTTP against the real database: engineers, warehouses, parts, stock,
and CSV import that is all or nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import httpx
import orjson
import pytest

from telematics.api.app import create_app
from telematics.api.context import ApiContext
from telematics.base.metrics import Metrics
from telematics.ingest.pipeline import ingest, now_ms
from telematics.store.registry import SourceDirectory
from telematics.store.tokens import Role, create_token
from telematics.wire.decode import Limits
from tests.conftest import unique

ADMIN = {"Authorization": "Bearer res-admin"}


@pytest.fixture
async def http(pool: asyncpg.Pool) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(
        ApiContext(
            pool=pool, directory=SourceDirectory(), metrics=Metrics(), admin_token="res-admin",
            limits=Limits(),
        )
    )  # fmt: skip
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        yield client


async def test_an_engineer_profile_carries_skills_live_position_and_van_stock(
    http: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    eng, part = unique("EN"), unique("P")
    body = {
        "engineer_id": eng, "name": "Wang", "skills": ["engine_mechanical", "hydraulics"],
        "home_lat": 31.2, "home_lon": 121.4, "shift_start": "08:00", "shift_end": "18:00",
    }  # fmt: skip
    assert (await http.post("/v1/engineers", json=body, headers=ADMIN)).status_code == 201
    again = await http.post("/v1/engineers", json=body, headers=ADMIN)
    assert again.status_code == 409
    assert (await http.post("/v1/parts", json={"part_no": part, "name": "Oil filter"},
                            headers=ADMIN)).status_code == 201  # fmt: skip
    stocked = await http.put(
        "/v1/stock",
        json=[{"location_kind": "van", "location_id": eng, "part_no": part, "quantity": 2}],
        headers=ADMIN,
    )
    assert stocked.status_code == 200, stocked.text
    # Its van reports a position through MQTT's write path.
    async with pool.acquire() as conn:
        position = orjson.dumps({"ts": now_ms(), "lat": 31.3, "lon": 121.5})
        await ingest(
            conn, SourceDirectory(), [(f"engineers/{eng}/position", position)], limits=Limits()
        )
        _, own = await create_token(conn, Role.ENGINEER, eng, "self")
        someone = unique("EN")
        await conn.execute("INSERT INTO engineers (engineer_id, name) VALUES ($1, 'S')", someone)
        _, other = await create_token(conn, Role.ENGINEER, someone, "someone else")
    answer = await http.get(f"/v1/engineers/{eng}", headers={"Authorization": f"Bearer {own}"})
    assert answer.status_code == 200
    profile = answer.json()
    assert profile["skills"] == ["engine_mechanical", "hydraulics"]
    assert (profile["last_lat"], profile["last_lon"]) == (31.3, 121.5)
    assert [(s["part_no"], s["available"]) for s in profile["van_stock"]] == [(part, 2)]
    refused = await http.get(f"/v1/engineers/{eng}", headers={"Authorization": f"Bearer {other}"})
    assert refused.status_code == 403


async def test_stock_for_an_unknown_location_or_part_is_refused(http: httpx.AsyncClient) -> None:
    line = {
        "location_kind": "warehouse",
        "location_id": unique("WH"),
        "part_no": "X",
        "quantity": 1,
    }
    assert (await http.put("/v1/stock", json=[line], headers=ADMIN)).status_code == 404
    negative = {**line, "quantity": -1}
    assert (await http.put("/v1/stock", json=[negative], headers=ADMIN)).status_code == 422


async def test_csv_import_is_all_or_nothing_and_names_every_bad_line(
    http: httpx.AsyncClient,
) -> None:
    a, b, c = unique("CE"), unique("CE"), unique("CE")
    bad = (
        "engineer_id,name,skills,home_lat,home_lon,max_orders\n"
        f"{a},Li,engine_mechanical;electrical,31.2,121.4,3\n"
        f"{b},Zhao,Hydraulics,31.2,121.4,3\n"
        f"{c},Sun,,91,121.4,2\n"
    )
    csv_headers = {**ADMIN, "Content-Type": "text/csv"}
    refused = await http.post("/v1/import/engineers", content=bad, headers=csv_headers)
    assert refused.status_code == 422
    errors = refused.json()["errors"]
    assert [e.split(":")[0] for e in errors] == ["line 3", "line 4"]
    assert "skills" in errors[0]
    assert "home_lat" in errors[1]
    assert (await http.get(f"/v1/engineers/{a}", headers=ADMIN)).status_code == 404

    good = bad.replace("Hydraulics", "hydraulics").replace(",91,", ",31.1,")
    done = await http.post("/v1/import/engineers", content=good, headers=csv_headers)
    assert done.json() == {"kind": "engineers", "rows": 3}
    got = await http.get(f"/v1/engineers/{c}", headers=ADMIN)
    assert got.json()["max_orders"] == 2
    assert got.json()["skills"] == []

    missing = await http.post("/v1/import/parts", content="part_no\nP1\n", headers=csv_headers)
    assert missing.status_code == 422
    assert "name" in missing.json()["errors"][0]
