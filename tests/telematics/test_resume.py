"""A gateway that resumes its broker session acknowledges nothing before the commit.

A persistent session's queued messages arrive right after CONNACK. If the client's PUBACKs were
still automatic at that moment, a gateway killed before its first post-resume batch committed
would lose every message acknowledged on arrival. These tests kill the real service process
(SIGKILL) while that first batch is in flight to a database the test holds up.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from telematics.ingest.mqtt import MqttEndpoint, parse_mqtt_url
from tests.conftest import unique
from tests.proxy import TcpProxy
from tests.telematics.harness import count_readings, eventually, now_ms, publish, register

# 36,000 readings in 90 messages, through a broker of the test's own (`private_broker`): the
# stock Mosquitto shared with other suites queues at most 1,000 messages per offline session
# (docs/operations.md), counting every other suite's machines/+/telemetry, and dropped the rest.
MESSAGES = 90
PER_MESSAGE = 400


@pytest.fixture
async def proxy(database_dsn: str) -> AsyncIterator[TcpProxy]:
    parts = urlsplit(database_dsn)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()


def _via(dsn: str, proxy: TcpProxy) -> str:
    parts = urlsplit(dsn)
    user = f"{parts.username}@" if parts.username else ""
    return urlunsplit(parts._replace(netloc=f"{user}127.0.0.1:{proxy.port}"))


def _service(dsn: str, mqtt_url: str, client_id: str, data_dir: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "TELEMATICS_DATABASE_URL": dsn,
        "TELEMATICS_MQTT_URL": mqtt_url,
        "TELEMATICS_MQTT_CLIENT_ID": client_id,
        "TELEMATICS_MQTT_SESSION_EXPIRY_S": "300",
        "TELEMATICS_HTTP_PORT": "0",
        "TELEMATICS_ADMIN_TOKEN": "t",
        "TELEMATICS_DATA_DIR": str(data_dir),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "telematics", "run"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _end(proc: subprocess.Popen[bytes], sig: signal.Signals = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


async def _subscribed(pool: asyncpg.Pool, endpoint: MqttEndpoint, warmup: str) -> None:
    """Wait until the service stores a reading: its session exists and is subscribed."""
    probe = count_readings(pool, warmup)
    before = await probe()
    deadline = time.monotonic() + 60
    while await probe() == before:
        assert time.monotonic() < deadline, "the service never stored a warm-up reading"
        await publish(endpoint, [(f"machines/{warmup}/telemetry", {"ts": now_ms()})])
        await asyncio.sleep(0.3)


@pytest.mark.slow
async def test_killed_during_first_batch_after_resume_loses_nothing(
    pool: asyncpg.Pool,
    private_broker: str,
    database_dsn: str,
    proxy: TcpProxy,
    tmp_path: Path,
) -> None:
    machine, warmup = unique("EX"), unique("EX")
    await register(pool, machine, warmup)
    client_id = unique("gw-resume")
    mqtt_endpoint = parse_mqtt_url(private_broker)
    first = _service(database_dsn, private_broker, client_id, tmp_path)
    try:
        await _subscribed(pool, mqtt_endpoint, warmup)
    finally:
        _end(first)
    # Queue a backlog for the session while no gateway holds it.
    start_ms = now_ms() - 3_600_000
    await publish(
        mqtt_endpoint,
        [
            (
                f"machines/{machine}/telemetry",
                {
                    "readings": [
                        {"ts": start_ms + m * PER_MESSAGE + i, "engine_speed_rpm": 900 + i}
                        for i in range(PER_MESSAGE)
                    ]
                },
            )
            for m in range(MESSAGES)
        ],
    )
    # Resume through a database that holds the first batch's COPY: kill while it is in flight.
    proxy.hold_bulk_bytes = 16 * 1024
    resumed = _service(_via(database_dsn, proxy), private_broker, client_id, tmp_path)
    try:
        await asyncio.wait_for(proxy.bulk_seen.wait(), 90)
    finally:
        _end(resumed, signal.SIGKILL)
    stored_at_kill = await count_readings(pool, machine)()
    proxy.cut()
    last = _service(database_dsn, private_broker, client_id, tmp_path)
    try:
        total = MESSAGES * PER_MESSAGE
        assert await eventually(count_readings(pool, machine), total, timeout_s=90) == total
    finally:
        _end(last)
    assert stored_at_kill == 0  # killed before the first post-resume batch committed
    distinct = await pool.fetchval(
        "SELECT count(DISTINCT ts) FROM readings WHERE machine_id = $1", machine
    )
    assert distinct == MESSAGES * PER_MESSAGE
