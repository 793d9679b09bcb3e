"""Shared helpers for tests that run the gateway against the real broker and database."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import aiomqtt
import asyncpg
import httpx
import orjson

from telematics.api.context import ApiContext
from telematics.base.config import Settings
from telematics.base.metrics import Metrics
from telematics.ingest.gateway import Gateway, GatewayConfig
from telematics.ingest.mqtt import MqttEndpoint
from telematics.service import Endpoints, run_service
from telematics.store.registry import Site, SourceDirectory, add_machine
from telematics.web import build_app
from telematics.wire.decode import Limits
from tests.conftest import unique

ADMIN_TOKEN = "test-admin-token"


@asynccontextmanager
async def api_client(pool: asyncpg.Pool, **context: object) -> AsyncIterator[httpx.AsyncClient]:
    """The HTTP app in-process on `pool`, admin token `ADMIN_TOKEN`; `context` overrides the
    ApiContext's other fields."""
    fields: dict[str, object] = {
        "pool": pool,
        "directory": SourceDirectory(),
        "metrics": Metrics(),
        "admin_token": ADMIN_TOKEN,
        "limits": Limits(),
        "gateway_connected": lambda: True,
        **context,
    }
    app = build_app(ApiContext(**fields))  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
        yield http


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def gateway_config(endpoint: MqttEndpoint, **overrides: object) -> GatewayConfig:
    values: dict[str, object] = {
        "endpoint": endpoint,
        "client_id": unique("gw"),
        "session_expiry_s": 60,  # do not leave test sessions queueing in the shared broker
        "batch_max_delay_s": 0.02,
        "limits": Limits(),
    }
    values.update(overrides)
    return GatewayConfig(**values)  # type: ignore[arg-type]


@asynccontextmanager
async def running_gateway(
    pool: asyncpg.Pool, config: GatewayConfig, metrics: Metrics | None = None
) -> AsyncIterator[Gateway]:
    gateway = Gateway(config, pool, SourceDirectory(), metrics or Metrics())
    stop = asyncio.Event()
    task = asyncio.create_task(gateway.run(stop))
    try:
        await asyncio.wait_for(gateway.connected.wait(), 10)
        yield gateway
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def register(pool: asyncpg.Pool, *machine_ids: str) -> None:
    async with pool.acquire() as conn:
        for machine_id in machine_ids:
            await add_machine(conn, machine_id, "excavator", "CUST-T", Site(31.2, 121.5, 500))


async def publish(endpoint: MqttEndpoint, messages: list[tuple[str, bytes | object]]) -> None:
    """Publish with QoS 1 and wait for every PUBACK."""
    async with aiomqtt.Client(
        endpoint.host,
        endpoint.port,
        identifier=unique("pub"),
        protocol=aiomqtt.ProtocolVersion.V5,
    ) as client:
        for topic, payload in messages:
            raw = payload if isinstance(payload, bytes) else orjson.dumps(payload)
            await client.publish(topic, raw, qos=1)


async def eventually(
    probe: Callable[[], Awaitable[object]], expect: object, timeout_s: float = 20.0
) -> object:
    """Poll `probe` until it returns `expect` or the deadline passes; return the last value."""
    deadline = time.monotonic() + timeout_s
    value = await probe()
    while value != expect and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        value = await probe()
    return value


def count_readings(pool: asyncpg.Pool, *machine_ids: str) -> Callable[[], Awaitable[int]]:
    async def probe() -> int:
        return int(
            await pool.fetchval(
                "SELECT count(*) FROM readings WHERE machine_id = ANY($1::text[])",
                list(machine_ids),
            )
        )

    return probe


def reject_reasons(pool: asyncpg.Pool, source_id: str) -> Callable[[], Awaitable[list[str]]]:
    async def probe() -> list[str]:
        rows = await pool.fetch(
            "SELECT reason FROM ingest_rejects WHERE source_id = $1 ORDER BY reject_id", source_id
        )
        return [row["reason"] for row in rows]

    return probe


@asynccontextmanager
async def running_service(cfg: Settings, stop_timeout_s: float = 60) -> AsyncIterator[Endpoints]:
    """`telematics run` in-process with `cfg` while the block runs; then stopped and drained."""
    stop = asyncio.Event()
    ready: asyncio.Future[Endpoints] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(run_service(cfg, stop, ready.set_result))
    try:
        yield await asyncio.wait_for(asyncio.shield(ready), 30)
    finally:
        stop.set()
        await asyncio.wait_for(task, stop_timeout_s)
