"""Failure injection: nothing accepted is lost when the database or the gateway goes away.

The shared PostgreSQL stays up for the other tests: the gateway under test reaches it through a
TCP proxy that the test cuts.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from telematics.base.db import create_pool
from telematics.base.metrics import Metrics
from telematics.ingest.gateway import Gateway
from telematics.ingest.mqtt import MqttEndpoint, parse_mqtt_url
from telematics.store.registry import SourceDirectory
from tests.conftest import unique
from tests.proxy import TcpProxy
from tests.telematics.harness import (
    count_readings,
    eventually,
    gateway_config,
    now_ms,
    publish,
    register,
)


@pytest.fixture
async def proxied_dsn(database_dsn: str) -> AsyncIterator[tuple[str, TcpProxy]]:
    parts = urlsplit(database_dsn)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    await proxy.start()
    netloc = (
        f"{parts.username}@127.0.0.1:{proxy.port}" if parts.username else f"127.0.0.1:{proxy.port}"
    )
    try:
        yield urlunsplit(parts._replace(netloc=netloc)), proxy
    finally:
        await proxy.close()


def batches(
    machine: str, start_ms: int, messages: int, per_message: int
) -> list[tuple[str, object]]:
    topic = f"machines/{machine}/telemetry"
    return [
        (
            topic,
            {
                "readings": [
                    {"ts": start_ms + m * per_message + i, "engine_speed_rpm": 1000 + i}
                    for i in range(per_message)
                ]
            },
        )
        for m in range(messages)
    ]


def unacked(metrics: Metrics) -> float:
    return metrics.registry.get_sample_value("telematics_unacked_messages") or 0.0


def received(metrics: Metrics) -> float:
    return metrics.registry.get_sample_value("telematics_mqtt_messages_received_total") or 0.0


async def test_puback_waits_for_the_commit(
    pool: asyncpg.Pool, mqtt_endpoint: MqttEndpoint, proxied_dsn: tuple[str, TcpProxy]
) -> None:
    """Messages received while the database is away are not acknowledged: when the gateway dies
    then, the broker redelivers them to its successor. Acking on receipt would lose them."""
    dsn, proxy = proxied_dsn
    machine = unique("EX")
    await register(pool, machine)
    config = gateway_config(mqtt_endpoint, stall_s=0.3)
    metrics = Metrics()
    cut_pool = await create_pool(dsn, max_size=2, timeout_s=2)
    gateway = Gateway(config, cut_pool, SourceDirectory(), metrics)
    stop = asyncio.Event()
    task = asyncio.create_task(gateway.run(stop))
    try:
        await asyncio.wait_for(gateway.connected.wait(), 10)
        assert gateway.heard_since() is not None
        proxy.cut()
        await publish(mqtt_endpoint, batches(machine, now_ms() - 60_000, 10, 5))
        assert await eventually(lambda: _value(received(metrics)), 10.0) == 10.0
        await asyncio.sleep(0.5)  # ample time for a wrongly early PUBACK to go out
        assert await count_readings(pool, machine)() == 0
        # Batches stuck on their way to the store: machines are not heard, so none is silent.
        assert gateway.heard_since() is None
    finally:
        task.cancel()  # the gateway dies holding ten unacknowledged messages
        with contextlib.suppress(asyncio.CancelledError):
            await task
        cut_pool.terminate()

    successor = Gateway(config, pool, SourceDirectory(), Metrics())
    stop = asyncio.Event()
    task = asyncio.create_task(successor.run(stop))
    try:
        assert await eventually(count_readings(pool, machine), 50) == 50
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def _value(x: float) -> float:
    return x


@pytest.mark.slow
async def test_database_away_for_30_seconds_mid_stream_loses_nothing(
    pool: asyncpg.Pool, mqtt_endpoint: MqttEndpoint, proxied_dsn: tuple[str, TcpProxy]
) -> None:
    dsn, proxy = proxied_dsn
    machine = unique("EX")
    await register(pool, machine)
    config = gateway_config(mqtt_endpoint, receive_maximum=2000)
    metrics = Metrics()
    cut_pool = await create_pool(dsn, max_size=3, timeout_s=2)
    gateway = Gateway(config, cut_pool, SourceDirectory(), metrics)
    stop = asyncio.Event()
    task = asyncio.create_task(gateway.run(stop))
    await asyncio.wait_for(gateway.connected.wait(), 10)
    # 15,000 readings over ~23 s. Stock Mosquitto queues at most 1,000 messages for a session
    # and drops the rest: what arrives during the 30 s cut (~470 messages) must stay well
    # under that, or the broker's drops would read as the gateway's loss.
    messages = batches(machine, now_ms() - 600_000, 750, 20)
    peak_unacked = 0.0

    async def stream() -> None:
        for i in range(0, len(messages), 10):
            await publish(mqtt_endpoint, messages[i : i + 10])
            await asyncio.sleep(0.3)

    publisher = asyncio.create_task(stream())
    try:
        await asyncio.sleep(8)
        heard_before = gateway.heard_since()
        proxy.cut()
        stored_at_cut = await count_readings(pool, machine)()
        assert 0 < stored_at_cut < 15_000
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            peak_unacked = max(peak_unacked, unacked(metrics))
            await asyncio.sleep(0.5)
        stored_during = await count_readings(pool, machine)()
        proxy.restore()
        await publisher
        assert await eventually(count_readings(pool, machine), 15_000, timeout_s=60) == 15_000
        heard_after = gateway.heard_since()
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await cut_pool.close()
    # Silence counts again only from when the held batches reached the store.
    assert heard_before is not None
    assert heard_after is not None
    assert heard_after > heard_before + 25
    assert stored_during == stored_at_cut  # nothing reached the database while it was away
    assert peak_unacked > 0  # the gateway held messages, unacknowledged ...
    assert peak_unacked <= config.receive_maximum  # ... no more than the broker lets it


@pytest.mark.slow
async def test_gateway_killed_mid_stream_stores_everything_exactly_once(
    pool: asyncpg.Pool, private_broker: str, database_dsn: str, tmp_path: object
) -> None:
    mqtt_endpoint = parse_mqtt_url(private_broker)
    machine, warmup = unique("EX"), unique("EX")
    await register(pool, machine, warmup)
    env = {
        **os.environ,
        "TELEMATICS_DATABASE_URL": database_dsn,
        "TELEMATICS_MQTT_URL": private_broker,
        "TELEMATICS_MQTT_CLIENT_ID": unique("gw-proc"),
        "TELEMATICS_MQTT_SESSION_EXPIRY_S": "120",
        "TELEMATICS_HTTP_PORT": "0",
        "TELEMATICS_ADMIN_TOKEN": "t",
        "TELEMATICS_DATA_DIR": str(tmp_path),
    }

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "telematics", "run"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    # 20,000 readings in 200 messages, through a broker of the test's own: the stock Mosquitto
    # shared with other suites queues at most 1,000 messages for the dead gateway's session
    # (docs/operations.md), counting everybody's machines/+/telemetry, and dropped the rest.
    messages = batches(machine, now_ms() - 600_000, 200, 100)
    probe = count_readings(pool, machine)
    proc = start()
    try:
        # The broker queues messages for the gateway's session only once it has subscribed:
        # wait for the first start to be through before streaming.
        deadline = time.monotonic() + 30
        while not await count_readings(pool, warmup)() and time.monotonic() < deadline:
            await publish(mqtt_endpoint, [(f"machines/{warmup}/telemetry", {"ts": now_ms()})])
            await asyncio.sleep(0.2)
        publisher = asyncio.create_task(_paced(mqtt_endpoint, messages, per_s=30))
        assert await eventually(lambda: _positive(probe), True, timeout_s=30) is True
        await asyncio.sleep(1.5)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        killed_at = await probe()
        assert killed_at < 20_000  # killed mid-stream
        await asyncio.sleep(1)
        proc = start()
        await publisher
        assert await while_growing(probe, 20_000) == 20_000
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
    distinct = await pool.fetchval(
        "SELECT count(DISTINCT ts) FROM readings WHERE machine_id = $1", machine
    )
    assert distinct == 20_000


async def while_growing(
    probe: Callable[[], Awaitable[int]],
    expect: int,
    stall_s: float = 30.0,
    bound_s: float = 300.0,
) -> int:
    """Poll `probe` until it returns `expect`, for as long as its value still grows.

    Gives up once it has not grown for `stall_s` or after `bound_s` overall: a loaded machine
    gets there slowly, a lost reading never.
    """
    start = time.monotonic()
    value = await probe()
    grew = start
    while value != expect and time.monotonic() - grew < stall_s:
        if time.monotonic() - start > bound_s:
            break
        await asyncio.sleep(0.2)
        latest = await probe()
        if latest > value:
            grew = time.monotonic()
        value = latest
    return value


async def _positive(probe: object) -> bool:
    return bool(await probe() > 0)  # type: ignore[operator]


async def _paced(endpoint: MqttEndpoint, messages: list[tuple[str, object]], per_s: int) -> None:
    step = max(1, per_s // 10)
    for i in range(0, len(messages), step):
        await publish(endpoint, messages[i : i + step])
        await asyncio.sleep(0.1)
