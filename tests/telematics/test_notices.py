"""Customer notifications end to end: trigger -> outbox -> webhook, MQTT and e-mail, for real.

The receivers are real servers (an asyncio HTTP server, the test broker, an aiosmtpd server);
events come from the real triggers on alarms and order events, or are inserted the way the
maintenance capability will insert them.
"""

from __future__ import annotations

import asyncio
import email
import socket
from collections.abc import AsyncIterator
from email.message import Message
from email.policy import default as default_policy

import aiomqtt
import asyncpg
import orjson
import pytest
from aiosmtpd.controller import Controller

from diagnosis.events import LOW_OIL_PRESSURE, AlarmEvent, Severity, Transition
from telematics.base.config import Settings
from telematics.ingest.mqtt import MqttEndpoint
from telematics.notices import worker
from telematics.notices.broker import NoticeBroker
from telematics.notices.mail import SmtpConfig
from telematics.notices.retry import RetryPolicy
from telematics.notices.webhook import WebhookSender
from telematics.store import alarms as alarm_store
from telematics.store.registry import add_machine
from telematics.store.tokens import Role, create_token
from tests.conftest import unique
from tests.telematics.harness import ADMIN_TOKEN, api_client, now_ms
from tests.telematics.notice_receiver import Receiver

SECRET = "s3cret-key-0123456789"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
FAST = RetryPolicy(base_s=0.01, cap_s=0.05, max_attempts=4)


def channels(
    *, endpoint: MqttEndpoint | None = None, smtp: SmtpConfig | None = None
) -> worker.Channels:
    return worker.Channels(
        webhook=WebhookSender(timeout_s=5, max_response_bytes=1024, allow_private=True),
        broker=None if endpoint is None else NoticeBroker(endpoint, unique("notices")),
        smtp=smtp,
    )


async def settle(pool: asyncpg.Pool, ch: worker.Channels, rounds: int = 1) -> None:
    """Fan out what is pending, then run `rounds` delivery rounds."""
    config = worker.NoticeConfig(worker_id="test", retry=FAST, lease_s=30)
    await worker.fan_out(pool)
    for _ in range(rounds):
        await worker.deliver_due(pool, ch, config)


async def raise_alarm(pool: asyncpg.Pool, machine_id: str, severity: Severity) -> int:
    async with pool.acquire() as conn, conn.transaction():
        (change,) = await alarm_store.apply_events(
            conn,
            [AlarmEvent(machine_id, LOW_OIL_PRESSURE, Transition.RAISED, now_ms())],
            lambda _: (severity, "Low oil pressure"),
        )
    return change.alarm_id


async def customer_with_machine(pool: asyncpg.Pool) -> tuple[str, str, dict[str, str]]:
    customer, machine = unique("NC"), unique("NM")
    async with pool.acquire() as conn:
        await add_machine(conn, machine, "excavator", customer, None)
        _, token = await create_token(conn, Role.CUSTOMER, customer, "notices test")
    return customer, machine, {"Authorization": f"Bearer {token}"}


async def statuses(pool: asyncpg.Pool, customer: str) -> list[tuple[str, int]]:
    rows = await pool.fetch(
        "SELECT status, attempts FROM notice_deliveries WHERE customer_id = $1 "
        "ORDER BY delivery_id",
        customer,
    )
    return [(r["status"], r["attempts"]) for r in rows]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver(SECRET)
    await r.start()
    try:
        yield r
    finally:
        await r.stop()


def private_ok(settings: Settings) -> Settings:
    return settings.model_copy(update={"webhook_allow_private": True})


async def test_a_raised_alarm_reaches_the_webhook_once_signed(
    pool: asyncpg.Pool, settings: Settings, receiver: Receiver
) -> None:
    _, machine, auth = await customer_with_machine(pool)
    async with api_client(pool, settings=private_ok(settings)) as http:
        put = await http.put(
            "/v1/notifications/subscriptions",
            json={"subscriptions": [{"channel": "webhook", "url": receiver.url, "secret": SECRET}]},
            headers=auth,
        )
        assert put.status_code == 200, put.text
        assert "secret" not in put.text.replace("has_secret", "")
        alarm_id = await raise_alarm(pool, machine, Severity.MAJOR)
        await settle(pool, channels(), rounds=3)
        assert len(receiver.receipts) == 1
        (got,) = receiver.receipts
        assert got.signed
        doc = orjson.loads(got.body)
        assert doc["kind"] == "alarm.raised"
        assert doc["severity"] == "major"
        assert doc["subject"]["alarm_id"] == alarm_id
        assert doc["subject"]["machine_id"] == machine
        assert machine in doc["title"]
        assert got.headers["x-notice-id"] == str(doc["notice_id"])
        log = (await http.get("/v1/notifications", headers=auth)).json()["notifications"]
        assert [(n["status"], n["attempts"], n["kind"]) for n in log] == [
            ("sent", 1, "alarm.raised")
        ]


async def test_a_receiver_failing_twice_gets_the_notice_on_the_third_attempt(
    pool: asyncpg.Pool, settings: Settings
) -> None:
    receiver = Receiver(SECRET, fail_first=2)
    await receiver.start()
    try:
        customer, machine, auth = await customer_with_machine(pool)
        async with api_client(pool, settings=private_ok(settings)) as http:
            sub = {"channel": "webhook", "url": receiver.url, "secret": SECRET}
            put = await http.put(
                "/v1/notifications/subscriptions", json={"subscriptions": [sub]}, headers=auth
            )
            assert put.status_code == 200, put.text
        await raise_alarm(pool, machine, Severity.CRITICAL)
        ch = channels()
        await settle(pool, ch)
        for _ in range(50):
            if (await statuses(pool, customer))[0][0] == "sent":
                break
            await asyncio.sleep(0.05)
            await settle(pool, ch)
        assert await statuses(pool, customer) == [("sent", 3)]
        assert len(receiver.receipts) == 3
        assert len({r.headers["x-notice-id"] for r in receiver.receipts}) == 1
        assert len({r.body for r in receiver.receipts}) == 1  # every attempt sends the same
        await settle(pool, ch, rounds=2)
        assert len(receiver.receipts) == 3  # a recorded success is never sent again
    finally:
        await receiver.stop()


async def test_a_receiver_that_never_answers_well_ends_failed_after_the_last_attempt(
    pool: asyncpg.Pool, settings: Settings
) -> None:
    receiver = Receiver(SECRET, fail_first=1000)
    await receiver.start()
    try:
        customer, machine, auth = await customer_with_machine(pool)
        async with api_client(pool, settings=private_ok(settings)) as http:
            sub = {"channel": "webhook", "url": receiver.url, "secret": SECRET}
            await http.put(
                "/v1/notifications/subscriptions", json={"subscriptions": [sub]}, headers=auth
            )
            await raise_alarm(pool, machine, Severity.CRITICAL)
            ch = channels()
            for _ in range(100):
                await settle(pool, ch)
                if (await statuses(pool, customer))[0][0] == "failed":
                    break
                await asyncio.sleep(0.03)
            assert await statuses(pool, customer) == [("failed", FAST.max_attempts)]
            (row,) = (await http.get("/v1/notifications", headers=auth)).json()["notifications"]
            assert row["last_error"].startswith("HTTP 503")
    finally:
        await receiver.stop()


async def test_filters_pick_the_kinds_and_the_severity_floor(
    pool: asyncpg.Pool, settings: Settings, receiver: Receiver
) -> None:
    customer, machine, auth = await customer_with_machine(pool)
    async with api_client(pool, settings=private_ok(settings)) as http:
        sub = {
            "channel": "webhook", "url": receiver.url, "secret": SECRET,
            "kinds": ["alarm.raised", "maintenance.overdue"], "min_severity": "major",
        }  # fmt: skip
        put = await http.put(
            "/v1/notifications/subscriptions", json={"subscriptions": [sub]}, headers=auth
        )
        assert put.status_code == 200, put.text
    await raise_alarm(pool, machine, Severity.MINOR)  # below the floor
    async with pool.acquire() as conn:
        for kind in ("maintenance.due_soon", "maintenance.overdue"):  # only one is wanted
            await conn.execute(
                "INSERT INTO notice_events (customer_id, kind, subject, occurred_at) "
                "VALUES ($1, $2, $3::jsonb, now())",
                customer,
                kind,
                orjson.dumps({"machine_id": machine, "item": "engine oil 500 h"}).decode(),
            )
    await settle(pool, channels(), rounds=2)
    assert [orjson.loads(r.body)["kind"] for r in receiver.receipts] == ["maintenance.overdue"]
    assert "engine oil 500 h" in orjson.loads(receiver.receipts[0].body)["text"]


async def test_an_mqtt_notice_reaches_a_subscriber_in_chinese(
    pool: asyncpg.Pool, mqtt_endpoint: MqttEndpoint
) -> None:
    customer, machine, auth = await customer_with_machine(pool)
    async with api_client(pool) as http:
        sub = {"channel": "mqtt", "language": "zh-CN", "tz": "Asia/Shanghai"}
        put = await http.put(
            "/v1/notifications/subscriptions", json={"subscriptions": [sub]}, headers=auth
        )
        assert put.json()["subscriptions"][0]["topic"] == f"customers/{customer}/notices"
    async with aiomqtt.Client(
        mqtt_endpoint.host, mqtt_endpoint.port, identifier=unique("sub"),
        protocol=aiomqtt.ProtocolVersion.V5,
    ) as client:  # fmt: skip
        await client.subscribe(f"customers/{customer}/notices", qos=1)
        await raise_alarm(pool, machine, Severity.CRITICAL)
        ch = channels(endpoint=mqtt_endpoint)
        await settle(pool, ch)
        await ch.close()
        async with asyncio.timeout(10):
            message = await anext(aiomqtt_messages(client))
    doc = orjson.loads(bytes(message.payload))  # type: ignore[arg-type]
    assert doc["kind"] == "alarm.raised"
    assert doc["language"] == "zh-CN"
    assert "严重" in doc["title"]
    assert "CST" in doc["text"]  # the time in the subscription's zone (China Standard Time)
    assert await statuses(pool, customer) == [("sent", 1)]


async def aiomqtt_messages(client: aiomqtt.Client) -> AsyncIterator[aiomqtt.Message]:
    async for message in client.messages:
        yield message


class Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], Message]] = []

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:  # noqa: N802
        content = envelope.content  # type: ignore[attr-defined]
        parsed = email.message_from_bytes(content, policy=default_policy)
        self.messages.append((list(envelope.rcpt_tos), parsed))  # type: ignore[attr-defined]
        return "250 OK"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_an_email_notice_reaches_an_smtp_server(
    pool: asyncpg.Pool, settings: Settings
) -> None:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        smtp_settings = settings.model_copy(update={"smtp_host": "127.0.0.1", "smtp_port": port})
        customer, machine, auth = await customer_with_machine(pool)
        async with api_client(pool, settings=smtp_settings) as http:
            sub = {"channel": "email", "email": "fleet@example.com", "language": "zh-CN"}
            put = await http.put(
                "/v1/notifications/subscriptions", json={"subscriptions": [sub]}, headers=auth
            )
            assert put.status_code == 200, put.text
        await raise_alarm(pool, machine, Severity.CRITICAL)
        smtp = SmtpConfig(host="127.0.0.1", port=port, sender="notices@telematics.example")
        await settle(pool, channels(smtp=smtp))
        assert await statuses(pool, customer) == [("sent", 1)]
        ((rcpt, mail),) = inbox.messages
        assert rcpt == ["fleet@example.com"]
        assert machine in str(mail["Subject"])
        assert "严重" in str(mail["Subject"])
        assert mail["Message-ID"].startswith("<notice-")
        assert "Low oil pressure" in mail.get_content()
    finally:
        controller.stop()


async def test_a_send_cut_short_is_resent_once_its_lease_runs_out(
    pool: asyncpg.Pool, settings: Settings
) -> None:
    # A receiver that takes the request and never answers: the worker is cut off mid-send
    # (as by a crash), so no outcome is recorded and the row stays `sending` under its lease.
    taken, released = asyncio.Event(), asyncio.Event()

    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        taken.set()
        await released.wait()
        writer.close()

    silent = await asyncio.start_server(hang, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    customer, machine, _ = await customer_with_machine(pool)
    await pool.execute(
        "INSERT INTO notice_subscriptions (customer_id, channel, target, secret) "
        "VALUES ($1, 'webhook', $2, $3)",
        customer,
        f"http://127.0.0.1:{port}/hook",
        SECRET,
    )
    await raise_alarm(pool, machine, Severity.CRITICAL)
    await worker.fan_out(pool)
    config = worker.NoticeConfig(worker_id="crashing", retry=FAST, lease_s=1)
    ch = channels()
    sending = asyncio.create_task(worker.deliver_due(pool, ch, config))
    await asyncio.wait_for(taken.wait(), 10)
    sending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await sending
    released.set()
    silent.close()
    await silent.wait_closed()
    assert await statuses(pool, customer) == [("sending", 1)]
    # Another worker, the receiver now answering on the same address, once the lease is over.
    receiver = Receiver(SECRET, port=port)
    await receiver.start()
    try:
        successor = worker.NoticeConfig(worker_id="successor", retry=FAST, lease_s=30)
        for _ in range(100):
            await worker.deliver_due(pool, ch, successor)
            if receiver.receipts:
                break
            await asyncio.sleep(0.05)
        assert await statuses(pool, customer) == [("sent", 2)]
        assert len(receiver.receipts) == 1
    finally:
        await receiver.stop()
        await ch.close()


async def test_two_workers_at_once_send_each_notice_once(
    pool: asyncpg.Pool, receiver: Receiver
) -> None:
    customers = [await customer_with_machine(pool) for _ in range(3)]
    for customer, machine, _ in customers:
        await pool.execute(
            "INSERT INTO notice_subscriptions (customer_id, channel, target, secret) "
            "VALUES ($1, 'webhook', $2, $3)",
            customer,
            receiver.url,
            SECRET,
        )
        for _ in range(4):
            await raise_alarm(pool, machine, Severity.CRITICAL)
            async with pool.acquire() as conn:  # clear it, so that the next raise is new
                await conn.execute(
                    "UPDATE alarms SET state = 'cleared', cleared_at = now() "
                    "WHERE machine_id = $1 AND state = 'open'",
                    machine,
                )
    ch_a, ch_b = channels(), channels()
    # Several fan-outs racing over the same events, then two delivery workers.
    await asyncio.gather(*(worker.fan_out(pool, limit=2) for _ in range(4)))
    await worker.fan_out(pool)
    a = worker.NoticeConfig(worker_id="a", retry=FAST, batch=5)
    b = worker.NoticeConfig(worker_id="b", retry=FAST, batch=5)
    for _ in range(5):
        await asyncio.gather(worker.deliver_due(pool, ch_a, a), worker.deliver_due(pool, ch_b, b))
    await ch_a.close()
    await ch_b.close()
    ids = [r.headers["x-notice-id"] for r in receiver.receipts]
    assert len(ids) == 12
    assert len(set(ids)) == 12
    for customer, _, _ in customers:
        assert await statuses(pool, customer) == [("sent", 1)] * 4


async def test_an_odd_event_or_subscription_row_does_not_stop_the_fan_out(
    pool: asyncpg.Pool, receiver: Receiver
) -> None:
    # Rows written past the API (another capability, a hand-made fix): a subject that is not an
    # object, a zone that does not exist. Each still becomes a notice; nothing blocks the job.
    customer, machine, _ = await customer_with_machine(pool)
    await pool.execute(
        "INSERT INTO notice_subscriptions (customer_id, channel, target, secret, tz, language) "
        "VALUES ($1, 'webhook', $2, $3, 'Nowhere/Atlantis', 'zh-CN')",
        customer,
        receiver.url,
        SECRET,
    )
    await pool.execute(
        "INSERT INTO notice_events (customer_id, kind, subject, occurred_at) "
        "VALUES ($1, 'maintenance.overdue', '[1, 2]', now())",
        customer,
    )
    await raise_alarm(pool, machine, Severity.CRITICAL)
    await settle(pool, channels(), rounds=2)
    kinds = sorted(orjson.loads(r.body)["kind"] for r in receiver.receipts)
    assert kinds == ["alarm.raised", "maintenance.overdue"]
    assert all("UTC" in orjson.loads(r.body)["text"] for r in receiver.receipts
               if orjson.loads(r.body)["kind"] == "alarm.raised")  # fmt: skip
