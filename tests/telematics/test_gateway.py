"""The gateway against the real Mosquitto and PostgreSQL."""

from __future__ import annotations

import asyncpg

from telematics.ingest.mqtt import MqttEndpoint
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


async def test_single_and_batched_readings_are_stored(
    pool: asyncpg.Pool, mqtt_endpoint: MqttEndpoint
) -> None:
    machine = unique("EX")
    await register(pool, machine)
    t0 = now_ms() - 60_000
    topic = f"machines/{machine}/telemetry"
    batch = {"readings": [{"ts": t0 + i, "engine_speed_rpm": 1500 + i} for i in range(1, 21)]}
    async with running_gateway(pool, gateway_config(mqtt_endpoint)):
        await publish(mqtt_endpoint, [(topic, {"ts": t0, "coolant_temp_c": 85.5}), (topic, batch)])
        assert await eventually(count_readings(pool, machine), 21) == 21
    row = await pool.fetchrow(
        "SELECT coolant_temp_c, engine_speed_rpm FROM readings WHERE machine_id = $1 "
        "ORDER BY ts LIMIT 1",
        machine,
    )
    assert row is not None
    assert row["coolant_temp_c"] == 85.5
    assert row["engine_speed_rpm"] is None  # absent on the wire: NULL, not NaN


async def test_repeated_reading_is_stored_once(
    pool: asyncpg.Pool, mqtt_endpoint: MqttEndpoint
) -> None:
    machine = unique("EX")
    await register(pool, machine)
    reading = {"ts": now_ms() - 1000, "fuel_level_pct": 60.0}
    topic = f"machines/{machine}/telemetry"
    async with running_gateway(pool, gateway_config(mqtt_endpoint)) as gateway:
        await publish(mqtt_endpoint, [(topic, reading)] * 3)
        await publish(mqtt_endpoint, [(topic, {"ts": reading["ts"] + 1, "fuel_level_pct": 59.9})])
        assert await eventually(count_readings(pool, machine), 2) == 2
    assert gateway is not None
    assert await count_readings(pool, machine)() == 2


async def test_bad_payloads_are_dead_lettered_and_the_stream_goes_on(
    pool: asyncpg.Pool, mqtt_endpoint: MqttEndpoint
) -> None:
    machine, stranger = unique("EX"), unique("EX")
    await register(pool, machine)
    topic = f"machines/{machine}/telemetry"
    ts = now_ms() - 5000
    bad: list[tuple[str, bytes | object]] = [
        (topic, b"not json at all"),
        (topic, {"ts": ts, "oil_pressure_kpa": "high"}),
        (topic, b'{"ts": 1, "battery_v": NaN}'),
        (topic, {"ts": ts, "oil_pressure_kpa": 99999}),
        (topic, {"ts": ts + 3_600_000}),
        (topic, {"ts": ts - 40 * 86_400_000}),
        (topic, {"ts": ts, "machine_id": "SOMEONE-ELSE"}),
        (topic, {"readings": [{"ts": ts + i} for i in range(1001)]}),
        (topic, b'{"ts": 1, "pad": "' + b"x" * 300_000 + b'"}'),
        (f"machines/{stranger}/telemetry", {"ts": ts}),
    ]
    expected = [
        "not_json",
        "wrong_type",
        "not_finite",
        "out_of_range",
        "ts_in_future",
        "ts_too_old",
        "machine_id_mismatch",
        "too_many_readings",
        "payload_too_large",
    ]
    async with running_gateway(pool, gateway_config(mqtt_endpoint)):
        await publish(mqtt_endpoint, [*bad, (topic, {"ts": ts, "battery_v": 27.6})])
        assert await eventually(reject_reasons(pool, machine), expected) == expected
        assert await eventually(reject_reasons(pool, stranger), ["unknown_machine"]) == [
            "unknown_machine"
        ]
        assert await eventually(count_readings(pool, machine), 1) == 1
    raw = await pool.fetchval(
        "SELECT payload FROM ingest_rejects WHERE source_id = $1 AND reason = 'not_json'", machine
    )
    assert bytes(raw) == b"not json at all"


async def test_engineer_positions_are_stored(
    pool: asyncpg.Pool, mqtt_endpoint: MqttEndpoint
) -> None:
    engineer = unique("ENG")
    await pool.execute("INSERT INTO engineers (engineer_id, name) VALUES ($1, 'Li')", engineer)
    ts = now_ms() - 2000
    async with running_gateway(pool, gateway_config(mqtt_endpoint)):
        await publish(
            mqtt_endpoint,
            [
                (f"engineers/{engineer}/position", {"ts": ts + i, "lat": 31.2, "lon": 121.5})
                for i in range(3)
            ],
        )

        async def positions() -> int:
            return int(
                await pool.fetchval(
                    "SELECT count(*) FROM engineer_positions WHERE engineer_id = $1", engineer
                )
            )

        assert await eventually(positions, 3) == 3
