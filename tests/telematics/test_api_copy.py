"""A copy of the service with its gateway off serves the API and takes nothing from the broker."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx

from telematics.base.config import Settings
from telematics.ingest.mqtt import MqttEndpoint
from telematics.service import Endpoints
from tests.conftest import unique
from tests.telematics.harness import count_readings, now_ms, publish, register, running_service


@contextlib.asynccontextmanager
async def api_copy(settings: Settings, tmp_path: Path) -> AsyncIterator[Endpoints]:
    cfg = settings.model_copy(
        update={
            "gateway_enabled": False,
            "mqtt_client_id": unique("api-copy"),
            "mqtt_session_expiry_s": 0,
            "http_port": 0,
            "data_dir": tmp_path,
            "alarm_notices": False,
        }
    )
    async with running_service(cfg, 60) as endpoints:
        yield endpoints


async def test_api_copy_serves_http_and_takes_no_telemetry(
    settings: Settings, pool: asyncpg.Pool, mqtt_endpoint: MqttEndpoint, tmp_path: Path
) -> None:
    machine = unique("APIC")
    await register(pool, machine)
    async with (
        api_copy(settings, tmp_path) as ends,
        httpx.AsyncClient(base_url=ends.http_url) as http,
    ):
        ready = await http.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["checks"] == {"database": True}  # no broker session to wait for
        auth = {"Authorization": f"Bearer {ends.admin_token}"}
        assert (await http.get(f"/v1/machines/{machine}", headers=auth)).status_code == 200
        await publish(
            mqtt_endpoint,
            [(f"machines/{machine}/telemetry", {"ts": now_ms(), "engine_speed_rpm": 1500.0})],
        )
        await asyncio.sleep(1.5)  # a gateway here would have committed it by now
        assert await count_readings(pool, machine)() == 0
