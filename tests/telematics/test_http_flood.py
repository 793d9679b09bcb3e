"""Nobody can starve the service without credentials: a bad token is refused before any database
connection is taken, token lookups are cached, and ingestion has a pool the API cannot touch.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from telematics.api.app import create_app
from telematics.api.context import ApiContext
from telematics.base.config import Settings
from telematics.base.db import create_pool
from telematics.base.metrics import Metrics
from telematics.ingest.mqtt import MqttEndpoint
from telematics.service import Endpoints
from telematics.store.registry import SourceDirectory
from telematics.store.tokens import Role, TokenCache, create_token
from telematics.wire.decode import Limits
from tests.conftest import unique
from tests.telematics.harness import (
    count_readings,
    eventually,
    now_ms,
    publish,
    register,
    running_service,
)

ADMIN = "flood-admin"


@contextlib.asynccontextmanager
async def small_api(
    database_dsn: str, *, pool_size: int, token_ttl_s: float = 5.0
) -> AsyncIterator[tuple[httpx.AsyncClient, asyncpg.Pool]]:
    pool = await create_pool(database_dsn, max_size=pool_size)
    app = create_app(
        ApiContext(
            pool=pool, directory=SourceDirectory(), metrics=Metrics(), admin_token=ADMIN,
            limits=Limits(), tokens=TokenCache(token_ttl_s),
        )
    )  # fmt: skip
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://api", timeout=60
        ) as http:
            yield http, pool
    finally:
        await asyncio.wait_for(pool.close(), 10)


async def test_junk_tokens_are_refused_without_holding_a_connection(
    database_dsn: str, pool: asyncpg.Pool
) -> None:
    async with pool.acquire() as conn:
        _, good = await create_token(conn, Role.EXPERT, unique("ecc"), "flood test")
    async with small_api(database_dsn, pool_size=2) as (http, _):
        answers = await asyncio.gather(
            *(
                http.get("/v1/machines", headers={"Authorization": f"Bearer junk-{i}"})
                for i in range(48)
            ),
            http.get("/v1/machines", headers={"Authorization": f"Bearer {good}"}),
        )
    statuses = [a.status_code for a in answers]
    assert Counter(statuses[:-1]) == {401: 48}
    assert all(a.headers["content-type"] == "application/problem+json" for a in answers[:-1])
    assert statuses[-1] == 200


async def test_a_token_created_elsewhere_works_at_once_and_a_revocation_within_seconds(
    database_dsn: str, pool: asyncpg.Pool
) -> None:
    async with small_api(database_dsn, pool_size=2, token_ttl_s=0.5) as (http, _):
        # The cache holds a copy of the tokens before the new one exists.
        assert (
            await http.get("/v1/tokens", headers={"Authorization": f"Bearer {ADMIN}"})
        ).is_success
        async with pool.acquire() as conn:
            info, token = await create_token(conn, Role.EXPERT, unique("ecc"), "elsewhere")
        auth = {"Authorization": f"Bearer {token}"}
        assert (await http.get("/v1/machines", headers=auth)).status_code == 200
        async with pool.acquire() as conn:
            await conn.execute(
                "UPDATE api_tokens SET revoked_at = now() WHERE token_id = $1", info.token_id
            )

        async def status() -> int:
            return (await http.get("/v1/machines", headers=auth)).status_code

        assert await eventually(status, 401, timeout_s=10) == 401


async def test_a_revocation_through_the_api_works_at_once(
    database_dsn: str, pool: asyncpg.Pool
) -> None:
    async with small_api(database_dsn, pool_size=2, token_ttl_s=300) as (http, _):
        created = await http.post(
            "/v1/tokens",
            json={"role": "expert", "subject_id": unique("ecc")},
            headers={"Authorization": f"Bearer {ADMIN}"},
        )
        token, token_id = created.json()["token"], created.json()["token_id"]
        auth = {"Authorization": f"Bearer {token}"}
        assert (await http.get("/v1/machines", headers=auth)).status_code == 200
        revoked = await http.delete(
            f"/v1/tokens/{token_id}", headers={"Authorization": f"Bearer {ADMIN}"}
        )
        assert revoked.status_code == 200
        assert (await http.get("/v1/machines", headers=auth)).status_code == 401


@contextlib.asynccontextmanager
async def service(settings: Settings, tmp_path: Path) -> AsyncIterator[Endpoints]:
    cfg = settings.model_copy(
        update={
            "mqtt_client_id": unique("gw-flood"),
            "mqtt_session_expiry_s": 60,
            "http_port": 0,
            "data_dir": tmp_path,
            "alarm_notices": False,
        }
    )
    async with running_service(cfg, 60) as endpoints:
        yield endpoints


@pytest.mark.slow
async def test_a_flood_of_junk_tokens_neither_stalls_ingestion_nor_waits_for_a_connection(
    settings: Settings, pool: asyncpg.Pool, mqtt_endpoint: MqttEndpoint, tmp_path: Path
) -> None:
    machines = [unique("FLD") for _ in range(10)]
    await register(pool, *machines)
    per_machine, per_message = 300, 10
    start_ms = now_ms() - per_machine * 1000
    messages: list[tuple[str, bytes | object]] = [
        (
            f"machines/{m}/telemetry",
            {
                "readings": [
                    {"ts": start_ms + (i + j) * 1000, "engine_speed_rpm": 1500.0}
                    for j in range(per_message)
                ]
            },
        )
        for i in range(0, per_machine, per_message)
        for m in machines
    ]
    readings = len(machines) * per_machine
    statuses: Counter[int] = Counter()
    flooding = asyncio.Event()
    flooding.set()

    async with service(settings, tmp_path) as endpoints:

        async def junk(worker: int) -> None:
            async with httpx.AsyncClient(base_url=endpoints.http_url, timeout=60) as http:
                n = 0
                while flooding.is_set():
                    n += 1
                    answer = await http.get(
                        "/v1/machines", headers={"Authorization": f"Bearer junk-{worker}-{n}"}
                    )
                    statuses[answer.status_code] += 1

        flood = [asyncio.create_task(junk(w)) for w in range(48)]
        try:
            await publish(mqtt_endpoint, messages)
            stored = await eventually(count_readings(pool, *machines), readings, 60)
        finally:
            flooding.clear()
            await asyncio.gather(*flood)

    assert stored == readings
    assert sum(statuses.values()) > 48
    assert set(statuses) == {401}, statuses
