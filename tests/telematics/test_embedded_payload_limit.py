"""Oversized payloads through the embedded Mosquitto: dead-lettered, or refused to the device.

The gateway tells the broker the largest packet it takes (payload limit plus headroom), so that
its window of unacknowledged messages bounds its memory. A broker discards a larger PUBLISH for
that subscriber as if delivered, which would leave the device thinking it arrived and no dead
letter to say otherwise. The embedded Mosquitto therefore refuses such payloads to the device
itself (`message_size_limit`); between the service's limit and the broker's, a payload still
reaches the gateway and is dead-lettered as too large.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiomqtt
import asyncpg
import orjson
import pytest

from telematics.base import embedded
from telematics.base.config import Settings
from telematics.ingest.mqtt import broker_payload_limit, parse_mqtt_url
from tests.conftest import unique
from tests.telematics.harness import count_readings, eventually, now_ms, register, reject_reasons
from tests.telematics.test_embedded_broker import embedded_service

if embedded.find_mosquitto() is None:  # pragma: no cover - CI installs it
    pytest.skip("no Mosquitto to embed", allow_module_level=True)

LIMIT = Settings.model_fields["max_payload_bytes"].default


def _reading_of(size: int) -> bytes:
    """A reading padded with an extra field to `size` bytes."""
    head = orjson.dumps({"ts": now_ms() - 60_000, "engine_speed_rpm": 1200, "pad": ""})
    return head[:-2] + b"x" * (size - len(head)) + b'"}'


async def test_an_oversized_payload_is_dead_lettered_or_refused_to_the_device(
    pool: asyncpg.Pool, database_dsn: str, tmp_path: Path
) -> None:
    machine = unique("EX")
    await register(pool, machine)
    topic = f"machines/{machine}/telemetry"
    over_ours = _reading_of(LIMIT + 1)
    over_brokers = _reading_of(broker_payload_limit(LIMIT) + 1)
    assert len(over_ours) == LIMIT + 1
    async with embedded_service(database_dsn, tmp_path / "data") as endpoints:
        broker = parse_mqtt_url(endpoints.mqtt_url)
        async with aiomqtt.Client(
            broker.host, broker.port, identifier=unique("ctrl"),
            protocol=aiomqtt.ProtocolVersion.V5,
        ) as device:  # fmt: skip
            await device.publish(topic, over_ours, qos=1, timeout=10)
            reasons = await eventually(reject_reasons(pool, machine), ["payload_too_large"])
        # Over the broker's limit the device is not told "delivered": Mosquitto answers with
        # reason 0x95 (packet too large), which the client reports as a failed publish.
        async with aiomqtt.Client(
            broker.host, broker.port, identifier=unique("ctrl"),
            protocol=aiomqtt.ProtocolVersion.V5,
        ) as device:  # fmt: skip
            with pytest.raises((aiomqtt.MqttError, TimeoutError)):
                await asyncio.wait_for(device.publish(topic, over_brokers, qos=1), 10)
        async with aiomqtt.Client(
            broker.host, broker.port, identifier=unique("ctrl"),
            protocol=aiomqtt.ProtocolVersion.V5,
        ) as device:  # fmt: skip
            await device.publish(topic, _reading_of(1000), qos=1, timeout=10)
            assert await eventually(count_readings(pool, machine), 1) == 1
    assert reasons == ["payload_too_large"]
    assert await reject_reasons(pool, machine)() == ["payload_too_large"]
