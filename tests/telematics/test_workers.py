"""Two `telematics run` copies on one shared subscription, one of them SIGKILLed mid-stream.

Each reading is stored exactly once; the other worker carries on while the first is dead; an
overheat whose readings went to both workers, and across the kill, is one alarm episode. The
background jobs run in both copies and still fire each timer and send each notice once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
import httpx
import orjson
import pytest

from diagnosis.events import ENGINE_OVERHEAT, LOW_OIL_PRESSURE, AlarmEvent, Severity, Transition
from dispatch.sla import SlaPolicy
from telematics.ingest.mqtt import MqttEndpoint, parse_mqtt_url
from telematics.services.dispatching import dispatch_alarm
from telematics.store import alarms as alarm_store
from telematics.store.registry import add_machine
from tests.conftest import unique
from tests.diagnosis.test_engine import HEALTHY
from tests.telematics.harness import count_readings, eventually, now_ms, publish
from tests.telematics.notice_receiver import Receiver
from tests.telematics.processes import ServiceProcess
from tests.telematics.test_diagnose import register
from tests.telematics.test_failures import batches
from tests.telematics.test_notices_restart import SECRET
from tests.telematics.test_orders import KB, build, raise_alarm

PER_MESSAGE = 20


def overheat_messages(machine_id: str, start_ms: int) -> list[tuple[str, object]]:
    """Warm for 2 min, overheating for 3, cooled for 3: one reading a second, 20 a message."""
    coolant = [85.0] * 120 + [109.0] * 180 + [88.0] * 180
    rows = [
        {**HEALTHY, "ts": start_ms + i * 1000, "coolant_temp_c": c} for i, c in enumerate(coolant)
    ]
    return [
        (f"machines/{machine_id}/telemetry", {"readings": rows[i : i + PER_MESSAGE]})
        for i in range(0, len(rows), PER_MESSAGE)
    ]


async def metric(worker: ServiceProcess, name: str) -> float:
    """The sum of a metric's samples on a worker's `/metrics`."""
    async with httpx.AsyncClient(timeout=5) as http:
        text = (await http.get(f"{worker.url}/metrics")).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name) and line[len(name)] in " {"
    )


async def stored_by(worker: ServiceProcess) -> float:
    """Readings the worker stored, from its `/metrics`."""
    return await metric(worker, "telematics_readings_stored_total")


@pytest.fixture(scope="module")
async def pair(
    database_dsn: str, private_broker: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[ServiceProcess, ServiceProcess]]:
    """Two copies of the service: one shared subscription on a broker of the module's own,
    every background job in both."""
    group, data_dir = unique("ingest"), tmp_path_factory.mktemp("pair")
    a, b = (
        ServiceProcess(
            database_dsn,
            data_dir,
            unique(f"gw-{name}"),
            TELEMATICS_MQTT_URL=private_broker,
            TELEMATICS_MQTT_SHARED_GROUP=group,
            TELEMATICS_ALARM_NOTICES="false",
            TELEMATICS_SLA_CHECK_INTERVAL_S="0.2",
            TELEMATICS_NOTICE_INTERVAL_S="0.1",
            TELEMATICS_WEBHOOK_ALLOW_PRIVATE="true",
        )
        for name in ("a", "b")
    )
    try:
        a.start()
        b.start()
        await asyncio.gather(a.ready(), b.ready())
        yield a, b
    finally:
        codes = a.stop(), b.stop()
    assert codes == (0, 0), a.log_tail() + b.log_tail()


@pytest.mark.slow
async def test_two_workers_one_killed_store_each_reading_once_and_raise_one_alarm(
    pool: asyncpg.Pool,
    private_broker: str,
    pair: tuple[ServiceProcess, ServiceProcess],
) -> None:
    mqtt_endpoint = parse_mqtt_url(private_broker)
    a, b = pair
    bulk, hot = unique("EX"), unique("EX")
    async with pool.acquire() as conn:
        await register(conn, bulk)
        await register(conn, hot)
    stream = batches(bulk, now_ms() - 600_000, 600, PER_MESSAGE)  # 12,000 readings
    for i, message in enumerate(overheat_messages(hot, now_ms() - 900_000)):
        stream.insert(i * 26, message)  # 24 messages spread through the stream
    total_bulk, total_hot = 600 * PER_MESSAGE, 480
    b_before = await stored_by(b)
    publisher = asyncio.create_task(_paced(mqtt_endpoint, stream, per_s=150))
    await asyncio.sleep(1.5)
    a.kill()
    at_kill = await count_readings(pool, bulk)()
    await asyncio.sleep(1.5)
    while_dead = await count_readings(pool, bulk)()
    a.start()
    await a.ready()
    await publisher
    stored = count_readings(pool, bulk, hot)
    assert await eventually(stored, total_bulk + total_hot, timeout_s=60) == 12_480
    b_stored = await stored_by(b) - b_before
    assert 0 < at_kill < while_dead < total_bulk  # B carried on while A was dead
    assert 0 < b_stored < total_bulk + total_hot  # the stream was shared
    distinct = await pool.fetchval(
        "SELECT count(DISTINCT (machine_id, ts)) FROM readings WHERE machine_id = ANY($1)",
        [bulk, hot],
    )
    assert distinct == total_bulk + total_hot
    overheats = await pool.fetch(
        "SELECT state, raised_at, cleared_at, readings FROM alarms "
        "WHERE machine_id = $1 AND fault = $2 ORDER BY alarm_id",
        hot,
        ENGINE_OVERHEAT,
    )
    episodes = [tuple(r) for r in overheats]
    assert [r["state"] for r in overheats] == ["cleared"], (episodes, a.log_tail(), b.log_tail())


@pytest.mark.slow
async def test_two_copies_fire_each_timer_and_send_each_notice_once(
    pool: asyncpg.Pool, pair: tuple[ServiceProcess, ServiceProcess]
) -> None:
    """SLA timers and customer notices are claimed with FOR UPDATE SKIP LOCKED: with both
    copies polling every 0.1-0.2 s, each timer fires once (the copies' counters add up to the
    timers) and each notice reaches the webhook once. Both copies answer the API."""
    policy = SlaPolicy(callback_after=timedelta(seconds=1))
    receiver = Receiver(SECRET)
    await receiver.start()
    customer = unique("SC")
    orders = []
    before = sum([await timers_fired(w) for w in pair])
    try:
        async with pool.acquire() as conn:
            worlds = [await build(conn) for _ in range(6)]
            alarms = [await raise_alarm(conn, w.machine_id) for w in worlds]
            await conn.execute(
                "INSERT INTO notice_subscriptions (customer_id, channel, target, secret) "
                "VALUES ($1, 'webhook', $2, $3)",
                customer,
                receiver.url,
                SECRET,
            )
            noticed = [unique("SM") for _ in range(8)]
            for m in noticed:
                await add_machine(conn, m, "excavator", customer, None)
            async with conn.transaction():
                await alarm_store.apply_events(
                    conn,
                    [AlarmEvent(m, LOW_OIL_PRESSURE, Transition.RAISED, now_ms()) for m in noticed],
                    lambda _: (Severity.CRITICAL, "Low oil pressure"),
                )
        for alarm_id in alarms:
            dispatched = await dispatch_alarm(
                pool, KB, policy, alarm_id, actor="expert:t", engineer_id=None, note=""
            )
            orders.append(dispatched.order.order_id)

        async def fired() -> int:
            return int(
                await pool.fetchval(
                    "SELECT count(*) FROM sla_timers WHERE order_id = ANY($1) "
                    "AND kind = 'callback_check' AND state = 'fired'",
                    orders,
                )
            )

        assert await eventually(fired, len(orders), timeout_s=20) == len(orders)
        assert await eventually(lambda: _len(receiver), len(noticed), timeout_s=20) == 8
        await asyncio.sleep(1.0)  # a duplicate's chance to arrive: several rounds of both
        after = sum([await timers_fired(w) for w in pair])
        async with httpx.AsyncClient(timeout=5) as http:
            answers = [
                await http.get(
                    f"{w.url}/v1/orders/{orders[0]}", headers={"Authorization": "Bearer t"}
                )
                for w in pair
            ]
    finally:
        await receiver.stop()
    assert after - before == len(orders)
    assert len(receiver.receipts) == len(noticed)
    subjects = {orjson.loads(r.body)["subject"]["machine_id"] for r in receiver.receipts}
    assert subjects == set(noticed)
    by = await pool.fetch(
        "SELECT fired_by, count(*) FROM sla_timers WHERE order_id = ANY($1) "
        "AND kind = 'callback_check' GROUP BY fired_by",
        orders,
    )
    assert {r["fired_by"] for r in by} <= {w.client_id for w in pair}
    assert [r.status_code for r in answers] == [200, 200]
    assert answers[0].json() == answers[1].json()


async def timers_fired(worker: ServiceProcess) -> float:
    return await metric(worker, "telematics_sla_timers_total")


async def _len(receiver: Receiver) -> int:
    return len(receiver.receipts)


async def _paced(endpoint: MqttEndpoint, messages: list[tuple[str, object]], per_s: int) -> None:
    step = max(1, per_s // 10)
    for i in range(0, len(messages), step):
        await publish(endpoint, messages[i : i + step])
        await asyncio.sleep(0.1)
