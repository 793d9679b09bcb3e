"""HTTP API in-process (httpx ASGITransport) against the real database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import orjson
import pytest

from telematics.ingest.mqtt import MqttEndpoint
from tests.conftest import unique
from tests.telematics.harness import (
    api_client,
    count_readings,
    eventually,
    gateway_config,
    now_ms,
    publish,
    reject_reasons,
    running_gateway,
)

TOKEN = "test-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def client(pool: asyncpg.Pool) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(pool) as http:
        yield http


async def test_requests_without_the_admin_token_are_refused(client: httpx.AsyncClient) -> None:
    for method, path in [
        ("GET", "/v1/machines"),
        ("POST", "/v1/machines"),
        ("GET", "/v1/machines/X"),
        ("GET", "/v1/machines/X/readings"),
        ("GET", "/v1/ingest/rejects"),
        ("POST", "/v1/ingest/rejects/replay"),
        ("GET", "/v1/engineers"),
        ("GET", "/v1/alarms"),
        ("GET", "/v1/alarms/1"),
        ("POST", "/v1/alarms/1/ack"),
        ("GET", "/v1/models"),
        ("POST", "/v1/models/excavator/train"),
    ]:
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            response = await client.request(method, path, headers=headers, json={})
            assert response.status_code == 401, (method, path, headers)
            assert response.headers["content-type"] == "application/problem+json"


async def test_machine_is_registered_listed_and_fetched(client: httpx.AsyncClient) -> None:
    machine = unique("EX")
    body = {
        "machine_id": machine,
        "model": "excavator",
        "customer_id": "CUST-9",
        "site": {"lat": 31.2, "lon": 121.5, "radius_m": 800},
    }
    created = await client.post("/v1/machines", json=body, headers=AUTH)
    assert created.status_code == 201
    assert created.headers["location"] == f"/v1/machines/{machine}"
    again = await client.post("/v1/machines", json=body, headers=AUTH)
    assert again.status_code == 409
    fetched = (await client.get(f"/v1/machines/{machine}", headers=AUTH)).json()
    assert fetched["site"] == {"lat": 31.2, "lon": 121.5, "radius_m": 800}
    listed = (await client.get("/v1/machines?customer_id=CUST-9", headers=AUTH)).json()
    assert machine in [m["machine_id"] for m in listed["machines"]]
    missing = await client.get(f"/v1/machines/{unique('NOPE')}", headers=AUTH)
    assert missing.status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {"machine_id": "has space", "model": "excavator", "customer_id": "C"},
        {"machine_id": "EX-1", "model": "Excavator!", "customer_id": "C"},
        {
            "machine_id": "EX-1",
            "model": "excavator",
            "customer_id": "C",
            "site": {"lat": 95, "lon": 0},
        },
        {"machine_id": "EX-1", "model": "excavator"},
        {"machine_id": "EX-1", "model": "excavator", "customer_id": "C", "colour": "yellow"},
    ],
)
async def test_bad_machine_registration_is_a_clear_422(
    client: httpx.AsyncClient, body: dict[str, object]
) -> None:
    response = await client.post("/v1/machines", json=body, headers=AUTH)
    assert response.status_code == 422
    problem = response.json()
    assert problem["status"] == 422
    assert problem["errors"]


async def test_readings_are_paged_in_time_order(
    client: httpx.AsyncClient, pool: asyncpg.Pool, mqtt_endpoint: MqttEndpoint
) -> None:
    machine = unique("EX")
    await client.post(
        "/v1/machines",
        json={"machine_id": machine, "model": "crane", "customer_id": "C1"},
        headers=AUTH,
    )
    t0 = now_ms() - 100_000
    readings = [{"ts": t0 + i * 1000, "fuel_level_pct": 80 - i, "dtc": []} for i in range(25)]
    readings[3]["dtc"] = [{"spn": 110, "fmi": 0, "oc": 2}]
    readings[4]["site_note"] = "pit 2"
    async with running_gateway(pool, gateway_config(mqtt_endpoint)):
        await publish(mqtt_endpoint, [(f"machines/{machine}/telemetry", {"readings": readings})])
        assert await eventually(count_readings(pool, machine), 25) == 25
    start = datetime.fromtimestamp(t0 / 1000, UTC)
    end = start + timedelta(minutes=5)
    seen = []
    params: dict[str, str | int] = {"start": start.isoformat(), "end": end.isoformat(), "limit": 10}
    pages = 0
    while True:
        page = (
            await client.get(f"/v1/machines/{machine}/readings", params=params, headers=AUTH)
        ).json()
        pages += 1
        seen.extend(page["readings"])
        if page["next_start"] is None:
            break
        params["start"] = page["next_start"]
    assert pages == 3
    assert [r["fuel_level_pct"] for r in seen] == [80 - i for i in range(25)]
    assert seen[3]["dtc"] == [{"spn": 110, "fmi": 0, "oc": 2}]
    assert seen[4]["extra"] == {"site_note": "pit 2"}
    assert seen[0]["oil_pressure_kpa"] is None
    bad = await client.get(
        f"/v1/machines/{machine}/readings",
        params={"start": end.isoformat(), "end": start.isoformat()},
        headers=AUTH,
    )
    assert bad.status_code == 422


async def test_dead_letters_are_replayed_after_the_machine_is_registered(
    client: httpx.AsyncClient, pool: asyncpg.Pool, mqtt_endpoint: MqttEndpoint
) -> None:
    machine = unique("EX")
    topic = f"machines/{machine}/telemetry"
    t0 = now_ms() - 30_000
    batch = {"readings": [{"ts": t0 + i, "battery_v": 27.0} for i in range(10)]}
    batch["readings"][7]["battery_v"] = 400.0  # refused again on replay, alone
    async with running_gateway(pool, gateway_config(mqtt_endpoint)):
        await publish(mqtt_endpoint, [(topic, batch), (topic, {"ts": t0 + 100, "battery_v": 26})])
        reasons = await eventually(reject_reasons(pool, machine), ["unknown_machine"] * 2)
        assert reasons == ["unknown_machine"] * 2
    listed = (
        await client.get("/v1/ingest/rejects", params={"source_id": machine}, headers=AUTH)
    ).json()
    assert {r["reason"] for r in listed["rejects"]} == {"unknown_machine"}
    assert orjson.loads(listed["rejects"][-1]["payload_text"]) == batch

    registered = await client.post(
        "/v1/machines",
        json={"machine_id": machine, "model": "pump_truck", "customer_id": "C2"},
        headers=AUTH,
    )
    assert registered.status_code == 201
    replay = await client.post(
        "/v1/ingest/rejects/replay", json={"source_id": machine}, headers=AUTH
    )
    assert replay.json() == {
        "replayed": 2,
        "accepted": 2,
        "refused": 0,
        "readings_inserted": 10,
        "new_rejects": 1,
    }
    assert await count_readings(pool, machine)() == 10
    again = await client.post(
        "/v1/ingest/rejects/replay", json={"source_id": machine}, headers=AUTH
    )
    assert again.json()["replayed"] == 1  # only the out-of-range reading is still pending
    assert again.json()["refused"] == 1
    assert await count_readings(pool, machine)() == 10
    pending = (
        await client.get(
            "/v1/ingest/rejects", params={"source_id": machine, "pending": "true"}, headers=AUTH
        )
    ).json()["rejects"]
    assert [r["reason"] for r in pending] == ["out_of_range"]
    assert pending[0]["replay_of"] is not None


async def test_health_ready_and_metrics(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": True, "broker": True}
    metrics = await client.get("/metrics")
    assert "telematics_readings_stored_total" in metrics.text
    openapi = (await client.get("/openapi.json")).json()
    assert "/v1/ingest/rejects/replay" in openapi["paths"]
