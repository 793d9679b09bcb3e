"""The embedded default broker keeps what it accepted, however long the database stalls.

The service runs as `telematics run` does with no `TELEMATICS_MQTT_URL`: it starts its own broker.
Its database sits behind a TCP proxy the test cuts for longer than a broker's usual PUBACK
timeout (amqtt gives up on an unacknowledged QoS 1 delivery after 5 s), while a controller keeps
publishing with QoS 1. Once the database is back, every reading the broker acknowledged to the
controller must be in the store, once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiomqtt
import asyncpg
import orjson
import pytest

from telematics.base import embedded
from telematics.base.config import Settings
from telematics.base.db import create_pool
from telematics.base.metrics import Metrics
from telematics.ingest.gateway import Gateway
from telematics.ingest.mqtt import MqttEndpoint, parse_mqtt_url
from telematics.service import Endpoints, gateway_config, run_service
from telematics.store.registry import SourceDirectory
from tests.conftest import unique
from tests.proxy import TcpProxy, database_proxy
from tests.telematics.harness import count_readings, eventually, now_ms, register

STALL_S = 8.0  # longer than amqtt's fixed 5 s wait for a PUBACK
PER_MESSAGE = 5


@pytest.fixture
async def proxied(database_dsn: str) -> AsyncIterator[tuple[str, TcpProxy]]:
    async with database_proxy(database_dsn) as found:
        yield found


@contextlib.asynccontextmanager
async def embedded_service(
    dsn: str, data_dir: Path, client_id: str | None = None
) -> AsyncIterator[Endpoints]:
    """The service with its own broker (no MQTT URL), its database at `dsn`."""
    settings = Settings(
        database_url=dsn,
        mqtt_url=None,
        mqtt_client_id=client_id or unique("gw-embedded"),
        admin_token="t",
        data_dir=data_dir,
        http_port=0,
        diagnosis_enabled=False,
        db_timeout_s=5,
    )
    stop = asyncio.Event()
    ready: asyncio.Future[Endpoints] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(run_service(settings, stop, on_ready=ready.set_result))
    try:
        done, _ = await asyncio.wait((task, ready), timeout=60, return_when="FIRST_COMPLETED")
        if task in done:
            task.result()  # it ended during start-up: show why
        assert ready in done, "the service did not start within 60 s"
        yield ready.result()
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)


def _message(machine: str, ts_ms: int) -> bytes:
    readings = [{"ts": ts_ms + i, "engine_speed_rpm": 1200 + i} for i in range(PER_MESSAGE)]
    return orjson.dumps({"readings": readings})


@pytest.mark.slow
async def test_embedded_broker_keeps_readings_through_a_database_stall(
    pool: asyncpg.Pool, proxied: tuple[str, TcpProxy], tmp_path: Path
) -> None:
    dsn, proxy = proxied
    machine = unique("EX")
    await register(pool, machine)
    start_ms = now_ms() - 600_000
    async with embedded_service(dsn, tmp_path / "data") as endpoints:
        broker = parse_mqtt_url(endpoints.mqtt_url)
        # A controller as the wire contract has it: QoS 1, each PUBLISH acknowledged by the
        # broker (MQTT 3.1.1, which every broker speaks).
        async with aiomqtt.Client(
            broker.host,
            broker.port,
            identifier=unique("ctrl"),
            protocol=aiomqtt.ProtocolVersion.V311,
        ) as controller:
            sent = 0

            async def send(count: int) -> None:
                nonlocal sent
                for _ in range(count):
                    topic = f"machines/{machine}/telemetry"
                    payload = _message(machine, start_ms + sent * PER_MESSAGE)
                    await controller.publish(topic, payload, qos=1, timeout=10)
                    sent += 1
                    await asyncio.sleep(0.01)

            await send(20)
            assert await eventually(count_readings(pool, machine), 20 * PER_MESSAGE) == 100
            proxy.cut()
            # Readings keep coming while the database is away, longer than 5 s.
            stalled = asyncio.create_task(send(100))
            await asyncio.sleep(STALL_S)
            await stalled
            during = await count_readings(pool, machine)()
            proxy.restore()
            await send(20)
        expected = sent * PER_MESSAGE
        stored = await eventually(count_readings(pool, machine), expected, timeout_s=60)
    assert during == 100  # the stall was real: nothing reached the store meanwhile
    assert stored == expected


def _received(metrics: Metrics) -> float:
    return metrics.registry.get_sample_value("telematics_mqtt_messages_received_total") or 0.0


async def _publish(
    endpoint: MqttEndpoint, machine: str, start_ms: int, first: int, count: int
) -> None:
    async with aiomqtt.Client(
        endpoint.host,
        endpoint.port,
        identifier=unique("ctrl"),
        protocol=aiomqtt.ProtocolVersion.V311,
    ) as controller:
        for n in range(first, first + count):
            payload = _message(machine, start_ms + n * PER_MESSAGE)
            await controller.publish(f"machines/{machine}/telemetry", payload, qos=1, timeout=10)


def _mosquitto() -> str:
    found = embedded.find_mosquitto()
    if found is None:
        pytest.fail("Mosquitto is not installed: the embedded default cannot be tested")
    return found


async def _redelivered_after_a_long_stall(
    broker: embedded.EmbeddedBroker, pool: asyncpg.Pool, proxied: tuple[str, TcpProxy]
) -> int:
    """A gateway holds messages unacknowledged for longer than 5 s (the database is away), then
    dies; more readings arrive while no gateway is connected. Its successor, the same session,
    takes over. Returns how many of the 40 x 5 readings reach the store."""
    dsn, proxy = proxied
    machine = unique("EX")
    await register(pool, machine)
    start_ms = now_ms() - 600_000
    settings = Settings(mqtt_client_id=unique("gw-embedded"))
    config = gateway_config(settings, broker.url, broker.protocol)
    endpoint = parse_mqtt_url(broker.url)
    metrics = Metrics()
    cut_pool = await create_pool(dsn, max_size=2, timeout_s=2)
    first = Gateway(config, cut_pool, SourceDirectory(), metrics)
    task = asyncio.create_task(first.run(asyncio.Event()))
    try:
        await asyncio.wait_for(first.connected.wait(), 10)
        proxy.cut()
        await _publish(endpoint, machine, start_ms, 0, 30)
        # The gateway takes what its window allows and holds it, unacknowledged.
        assert await eventually(lambda: _value(_received(metrics) > 0), True) is True
        await asyncio.sleep(STALL_S)  # longer than amqtt's 5 s
        assert await count_readings(pool, machine)() == 0
    finally:
        task.cancel()  # dies holding unacknowledged messages
        with contextlib.suppress(asyncio.CancelledError):
            await task
        cut_pool.terminate()
    await _publish(endpoint, machine, start_ms, 30, 10)  # nobody connected: the session queues
    successor = Gateway(config, pool, SourceDirectory(), Metrics())
    stop = asyncio.Event()
    task = asyncio.create_task(successor.run(stop))
    try:
        return await count_when(count_readings(pool, machine), 40 * PER_MESSAGE)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


@pytest.mark.slow
async def test_embedded_broker_redelivers_what_a_gateway_held_through_a_long_stall(
    pool: asyncpg.Pool, proxied: tuple[str, TcpProxy], tmp_path: Path
) -> None:
    broker = embedded.EmbeddedBroker(tmp_path, _mosquitto())
    assert broker.protocol == "5"
    await broker.start()
    try:
        stored = await _redelivered_after_a_long_stall(broker, pool, proxied)
    finally:
        await broker.stop()
    assert stored == 40 * PER_MESSAGE


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="amqtt forgets deliveries unacknowledged after 5 s")
async def test_amqtt_fallback_still_loses_what_a_gateway_held_through_a_long_stall(
    pool: asyncpg.Pool, proxied: tuple[str, TcpProxy], tmp_path: Path
) -> None:
    """The documented limitation of the fallback without Mosquitto, kept honest: should amqtt
    stop losing these, this test fails and the docs and the warning can go."""
    broker = embedded.EmbeddedBroker(tmp_path, mosquitto=None)
    await broker.start()
    try:
        stored = await _redelivered_after_a_long_stall(broker, pool, proxied)
    finally:
        await broker.stop()
    assert stored == 40 * PER_MESSAGE


async def _value(x: object) -> object:
    return x


async def count_when(probe: Callable[[], Awaitable[int]], expect: int) -> int:
    """`probe()` once it returns `expect`, or its last value after 30 s."""
    value = await eventually(probe, expect, timeout_s=30)
    assert isinstance(value, int)
    return value


@pytest.mark.slow
async def test_readings_held_when_the_service_stops_during_a_stall_are_stored_after_restart(
    pool: asyncpg.Pool, proxied: tuple[str, TcpProxy], tmp_path: Path
) -> None:
    """The gateway stops with the database away, telling the log "the broker keeps them": the
    embedded broker must keep them on disk, so the next start with the same data folder stores
    them. An in-memory broker stopped with the service would lose every one."""
    dsn, proxy = proxied
    machine, client_id = unique("EX"), unique("gw-embedded")
    await register(pool, machine)
    start_ms = now_ms() - 600_000
    async with embedded_service(dsn, tmp_path / "data", client_id) as endpoints:
        proxy.cut()
        await _publish(parse_mqtt_url(endpoints.mqtt_url), machine, start_ms, 0, 30)
        await asyncio.sleep(STALL_S)
    assert await count_readings(pool, machine)() == 0
    proxy.restore()
    async with embedded_service(dsn, tmp_path / "data", client_id):
        stored = await count_when(count_readings(pool, machine), 30 * PER_MESSAGE)
    assert stored == 30 * PER_MESSAGE


async def test_the_embedded_mosquitto_is_out_of_reach_of_the_services_terminal_signals(
    tmp_path: Path,
) -> None:
    """Ctrl-C signals the terminal's whole process group: were Mosquitto in the service's, it
    would stop at once, before the service drained through it (found running `scripts/demo`)."""
    executable = embedded.find_mosquitto()
    if executable is None:  # pragma: no cover - CI installs it
        pytest.skip("no Mosquitto to embed")
    broker = embedded.EmbeddedBroker(tmp_path, executable)
    await broker.start()
    try:
        process = broker._process
        assert process is not None
        assert os.getpgid(process.pid) != os.getpgid(0)
        assert process.poll() is None
    finally:
        await broker.stop()
    assert process.poll() is not None  # and it still stops with the service
