"""The gateway's memory is bounded by bytes, not only by messages, and it holds no session that
could lose messages: a broker that grants less than QoS 1 is refused, with backoff."""

from __future__ import annotations

import asyncio
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from telematics.base.metrics import Metrics
from telematics.ingest.gateway import Gateway
from telematics.ingest.mqtt import PACKET_HEADROOM_BYTES, MqttEndpoint
from telematics.store.registry import SourceDirectory
from telematics.wire.decode import Limits
from tests.conftest import unique
from tests.telematics.harness import (
    count_readings,
    eventually,
    gateway_config,
    now_ms,
    publish,
    register,
    reject_reasons,
    running_gateway,
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def qos0_broker(tmp_path: Path) -> Iterator[MqttEndpoint]:
    """A Mosquitto of the test's own that grants every subscription at QoS 0 only."""
    port = _free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\nmax_qos 0\n")
    proc = subprocess.Popen(
        ["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        for _ in range(50):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                proc.poll()
                assert proc.returncode is None, "mosquitto did not start"
                subprocess.run(["sleep", "0.1"], check=True)
        yield MqttEndpoint("127.0.0.1", port)
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
async def stop() -> AsyncIterator[asyncio.Event]:
    event = asyncio.Event()
    yield event
    event.set()


async def test_batches_close_at_the_byte_cap(
    pool: asyncpg.Pool, mqtt_endpoint: MqttEndpoint
) -> None:
    machine = unique("EX")
    await register(pool, machine)
    start = now_ms() - 60_000
    messages: list[tuple[str, object]] = [
        (
            f"machines/{machine}/telemetry",
            {"readings": [{"ts": start + m * 30 + i, "load_pct": 50} for i in range(30)]},
        )
        for m in range(20)
    ]  # about 1 KB each
    metrics = Metrics()
    config = gateway_config(mqtt_endpoint, batch_max_delay_s=1.0, batch_max_bytes=4096)
    async with running_gateway(pool, config, metrics):
        await publish(mqtt_endpoint, messages)
        assert await eventually(count_readings(pool, machine), 600) == 600
    # Buckets of messages per batch: <= 1, <= 5, <= 10, ... A batch closes once it holds 4 KiB,
    # so none holds more than five of these 1 KB messages (redeliveries may add batches).
    per_bucket = [bucket.get() for bucket in metrics.batch_messages._buckets]
    assert sum(per_bucket) >= 4
    assert sum(per_bucket[2:]) == 0


async def test_the_broker_is_told_the_largest_packet_the_gateway_takes(
    pool: asyncpg.Pool, mqtt_endpoint: MqttEndpoint
) -> None:
    machine = unique("EX")
    await register(pool, machine)
    limits = Limits(max_payload_bytes=4096)
    topic = f"machines/{machine}/telemetry"
    over_limit = b'{"ts": 1, "pad": "' + b"x" * 8000 + b'"}'
    beyond_headroom = b'{"ts": 1, "pad": "' + b"x" * (PACKET_HEADROOM_BYTES + 8000) + b'"}'
    async with running_gateway(pool, gateway_config(mqtt_endpoint, limits=limits)):
        await publish(mqtt_endpoint, [(topic, over_limit), (topic, beyond_headroom)])
        await publish(mqtt_endpoint, [(topic, {"ts": now_ms()})])
        assert await eventually(count_readings(pool, machine), 1) == 1
        # A little over the limit still arrives and is dead-lettered; far beyond it, the broker
        # never sends it, so it costs the gateway no memory.
        assert await reject_reasons(pool, machine)() == ["payload_too_large"]


async def test_a_broker_granting_only_qos0_is_refused_with_backoff(
    pool: asyncpg.Pool, qos0_broker: MqttEndpoint, stop: asyncio.Event
) -> None:
    metrics = Metrics()
    gateway = Gateway(gateway_config(qos0_broker), pool, SourceDirectory(), metrics)
    task = asyncio.create_task(gateway.run(stop))
    try:
        await asyncio.sleep(4)
        assert not gateway.connected.is_set()  # never reported as holding a session
        attempts = metrics.mqtt_reconnects._value.get()
        assert attempts >= 2  # it keeps trying ...
        assert attempts <= 8  # ... backing off: 0.1 + 0.2 + 0.4 + 0.8 + 1.6 s, not every 0.1 s
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
