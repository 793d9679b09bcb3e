"""A webhook pending across a restart of the real service is delivered once, after it.

The service runs as `telematics run` in a subprocess against the test database and broker. It
takes the notice while the receiver is down and keeps retrying; it is killed (SIGKILL: no
chance to tidy up), the receiver comes up, a new service process starts, and the receiver gets
the notice exactly once.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import asyncpg
import orjson
import pytest

from diagnosis.events import LOW_OIL_PRESSURE, AlarmEvent, Severity, Transition
from telematics.store import alarms as alarm_store
from telematics.store.registry import add_machine
from tests.conftest import MQTT_URL, unique
from tests.telematics.harness import now_ms
from tests.telematics.notice_receiver import Receiver

SECRET = "restart-secret-0123456789"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _service(dsn: str, data_dir: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "TELEMATICS_DATABASE_URL": dsn,
        "TELEMATICS_MQTT_URL": MQTT_URL,
        "TELEMATICS_MQTT_CLIENT_ID": unique("notices-svc"),
        "TELEMATICS_MQTT_SESSION_EXPIRY_S": "60",
        "TELEMATICS_HTTP_PORT": "0",
        "TELEMATICS_ADMIN_TOKEN": "t",
        "TELEMATICS_DATA_DIR": str(data_dir),
        "TELEMATICS_WEBHOOK_ALLOW_PRIVATE": "true",
        "TELEMATICS_NOTICE_INTERVAL_S": "0.1",
        "TELEMATICS_NOTICE_RETRY_BASE_S": "0.2",
        "TELEMATICS_NOTICE_RETRY_MAX_S": "0.5",
        "TELEMATICS_NOTICE_MAX_ATTEMPTS": "100",
        "TELEMATICS_NOTICE_LEASE_S": "2",
        "TELEMATICS_WEBHOOK_TIMEOUT_S": "1",
    }
    data_dir.mkdir(parents=True, exist_ok=True)
    with (data_dir / "service.log").open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "telematics", "run"], env=env, stdout=log, stderr=log
        )


def _end(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


async def _delivery(pool: asyncpg.Pool, customer: str) -> tuple[str, int] | None:
    row = await pool.fetchrow(
        "SELECT status, attempts FROM notice_deliveries WHERE customer_id = $1", customer
    )
    return None if row is None else (row["status"], row["attempts"])


def _logs(log_dir: Path) -> str:
    return "".join(p.read_text()[-3000:] for p in log_dir.glob("*/service.log"))


async def _wait_for(
    pool: asyncpg.Pool,
    customer: str,
    done: Callable[[tuple[str, int]], bool],
    what: str,
    log_dir: Path,
    proc: subprocess.Popen[bytes],
) -> tuple[str, int]:
    deadline = time.monotonic() + 60
    while True:
        found = await _delivery(pool, customer)
        if found is not None and done(found):
            return found
        assert time.monotonic() < deadline, f"{what}: the delivery is {found}\n{_logs(log_dir)}"
        assert proc.poll() is None, f"the service exited: {_logs(log_dir)}"
        await asyncio.sleep(0.1)


@pytest.mark.slow
async def test_a_pending_webhook_is_delivered_once_across_a_restart(
    pool: asyncpg.Pool, database_dsn: str, tmp_path: Path
) -> None:
    customer, machine = unique("RC"), unique("RM")
    port = _free_port()
    async with pool.acquire() as conn:
        await add_machine(conn, machine, "excavator", customer, None)
        await conn.execute(
            "INSERT INTO notice_subscriptions (customer_id, channel, target, secret) "
            "VALUES ($1, 'webhook', $2, $3)",
            customer,
            f"http://127.0.0.1:{port}/hook",
            SECRET,
        )
        async with conn.transaction():
            await alarm_store.apply_events(
                conn,
                [AlarmEvent(machine, LOW_OIL_PRESSURE, Transition.RAISED, now_ms())],
                lambda _: (Severity.CRITICAL, "Low oil pressure"),
            )
    first = _service(database_dsn, tmp_path / "first")
    try:
        # The receiver is down: the service queues the notice and retries it.
        status, _ = await _wait_for(
            pool, customer, lambda f: f[1] >= 3, "the first service never retried", tmp_path, first
        )
        assert status != "sent"
    finally:
        _end(first, signal.SIGKILL)
    killed_at = await _delivery(pool, customer)
    assert killed_at is not None
    assert killed_at[0] != "sent"

    receiver = Receiver(SECRET, port=port)
    await receiver.start()
    second = _service(database_dsn, tmp_path / "second")
    try:
        status, _ = await _wait_for(
            pool,
            customer,
            lambda f: f[0] == "sent",
            "the second service never delivered",
            tmp_path,
            second,
        )
        # Give a duplicate every chance to arrive: a few more rounds of the running service.
        await asyncio.sleep(1.5)
    finally:
        _end(second, signal.SIGTERM)
        await receiver.stop()
    assert len(receiver.receipts) == 1
    (got,) = receiver.receipts
    assert got.signed
    assert orjson.loads(got.body)["subject"]["machine_id"] == machine
    final = await _delivery(pool, customer)
    assert final is not None
    assert final[0] == "sent"
    assert final[1] > killed_at[1]  # the attempts of before the restart were counted
