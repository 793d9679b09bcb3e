"""The notifications API as a customer, as staff and as an attacker; order events from triggers."""

from __future__ import annotations

import asyncpg
import orjson
import pytest

from diagnosis.events import Severity
from dispatch.orders import Accept, Arrive, Complete, StartTravel
from dispatch.sla import SlaPolicy
from telematics.notices import worker
from telematics.notices.errors import TargetRefusedError
from telematics.notices.retry import RetryPolicy
from telematics.notices.targets import Target, check_url, resolve
from telematics.notices.webhook import WebhookSender
from telematics.services.dispatching import act, dispatch_alarm
from tests.telematics.harness import api_client
from tests.telematics.test_notices import ADMIN, SECRET, customer_with_machine, raise_alarm
from tests.telematics.test_orders import KB, build
from tests.telematics.test_orders import raise_alarm as raise_order_alarm

PATH = "/v1/notifications/subscriptions"


def hook(url: str = "https://hooks.example.com/x", **more: object) -> dict[str, object]:
    return {"channel": "webhook", "url": url, "secret": SECRET, **more}


async def test_subscriptions_are_replaced_as_a_set_and_secrets_never_come_back(
    pool: asyncpg.Pool,
) -> None:
    customer, _, auth = await customer_with_machine(pool)
    async with api_client(pool) as http:
        put = await http.put(PATH, json={"subscriptions": [hook(), {"channel": "mqtt"}]},
                             headers=auth)  # fmt: skip
        assert put.status_code == 200, put.text
        first = put.json()["subscriptions"]
        assert [s["channel"] for s in first] == ["webhook", "mqtt"]
        assert first[0]["has_secret"] is True
        assert SECRET not in put.text
        # Keep the webhook (its secret too, by leaving it out), drop MQTT, add e-mail refused:
        # no SMTP is configured here.
        keep = {"subscription_id": first[0]["subscription_id"], "channel": "webhook",
                "url": "https://hooks.example.com/y", "language": "zh-CN"}  # fmt: skip
        refused = await http.put(
            PATH, json={"subscriptions": [keep, {"channel": "email", "email": "a@example.com"}]},
            headers=auth,
        )  # fmt: skip
        assert refused.status_code == 409
        again = await http.put(PATH, json={"subscriptions": [keep]}, headers=auth)
        assert again.status_code == 200, again.text
        (only,) = again.json()["subscriptions"]
        assert only["subscription_id"] == first[0]["subscription_id"]
        assert only["url"] == "https://hooks.example.com/y"
        assert only["has_secret"] is True
        assert only["language"] == "zh-CN"
        got = await http.get(PATH, headers=auth)
        assert got.json() == again.json()
        stored = await pool.fetchval(
            "SELECT secret FROM notice_subscriptions WHERE subscription_id = $1",
            only["subscription_id"],
        )
        assert stored == SECRET
        # Staff see it by naming the customer; without one they are asked for it.
        staff = await http.get(PATH, params={"customer_id": customer}, headers=ADMIN)
        assert staff.json()["subscriptions"] == again.json()["subscriptions"]
        assert (await http.get(PATH, headers=ADMIN)).status_code == 422
        # Staff may set them for the customer (on the phone, say): the customer then sees that.
        by_staff = await http.put(
            PATH, params={"customer_id": customer},
            json={"subscriptions": [{"channel": "mqtt"}]}, headers=ADMIN,
        )  # fmt: skip
        assert by_staff.status_code == 200, by_staff.text
        assert by_staff.json()["customer_id"] == customer
        seen = (await http.get(PATH, headers=auth)).json()["subscriptions"]
        assert [s["channel"] for s in seen] == ["mqtt"]


async def test_a_customer_cannot_touch_another_customers_subscriptions_or_log(
    pool: asyncpg.Pool,
) -> None:
    victim, machine, victim_auth = await customer_with_machine(pool)
    _, _, thief_auth = await customer_with_machine(pool)
    async with api_client(pool) as http:
        put = await http.put(PATH, json={"subscriptions": [{"channel": "mqtt"}]},
                             headers=victim_auth)  # fmt: skip
        victim_sub = put.json()["subscriptions"][0]["subscription_id"]
        # Naming the victim changes nothing: a customer always gets its own set.
        theirs = await http.get(PATH, params={"customer_id": victim}, headers=thief_auth)
        assert theirs.json()["subscriptions"] == []
        steal = await http.put(
            PATH, params={"customer_id": victim},
            json={"subscriptions": [{"subscription_id": victim_sub, "channel": "mqtt"}]},
            headers=thief_auth,
        )  # fmt: skip
        assert steal.status_code == 404
        assert len((await http.get(PATH, headers=victim_auth)).json()["subscriptions"]) == 1
        await raise_alarm(pool, machine, Severity.CRITICAL)
        await worker.fan_out(pool)
        log = await http.get("/v1/notifications", params={"customer_id": victim},
                             headers=thief_auth)  # fmt: skip
        assert log.json()["notifications"] == []
        mine = await http.get("/v1/notifications", headers=victim_auth)
        assert len(mine.json()["notifications"]) == 1
        staff = await http.get("/v1/notifications", params={"customer_id": victim}, headers=ADMIN)
        assert len(staff.json()["notifications"]) == 1


@pytest.mark.parametrize(
    "subscription",
    [
        hook("http://127.0.0.1:8080/"),  # loopback
        hook("http://10.1.2.3/"),  # private
        hook("http://169.254.169.254/latest/meta-data"),  # link-local: cloud metadata
        hook("http://[::1]/"),
        hook("http://[::ffff:127.0.0.1]/"),  # IPv4-mapped loopback
        hook("http://[64:ff9b::a00:1]/"),  # NAT64 of 10.0.0.1
        hook("http://[2002:7f00:1::]/"),  # 6to4 of 127.0.0.1
        hook("http://localhost:9000/"),
        hook("http://0.0.0.0/"),
        hook("file:///etc/passwd"),
        hook("gopher://hooks.example.com/"),
        hook("ftp://hooks.example.com/"),
        hook("https://user:pw@hooks.example.com/"),
        hook("https://hooks.example.com:99999/"),
        hook("https://hooks.example.com/\r\nX-Injected: 1"),
        hook("https:///nohost"),
        hook("https://hooks.example.com/" + "a" * 3000),
        hook(secret="short"),
        hook(secret="x" * 257),
        hook(secret="with space inside 123"),
        hook(email="a@example.com"),
        {"channel": "webhook", "secret": SECRET},
        {"channel": "email", "email": "a@example.com\r\nBcc: all@example.com"},
        {"channel": "email", "email": "a@example.com, b@example.com"},
        {"channel": "email", "email": "no-at-sign"},
        {"channel": "email"},
        {"channel": "mqtt", "url": "https://hooks.example.com/"},
        {"channel": "sms"},
        {"channel": "mqtt", "kinds": ["alarm.cleared"]},
        {"channel": "mqtt", "kinds": ["alarm.raised", "alarm.raised"]},
        {"channel": "mqtt", "min_severity": "extreme"},
        {"channel": "mqtt", "language": "fr"},
        {"channel": "mqtt", "tz": "Mars/Olympus"},
        {"channel": "mqtt", "tz": "../../etc/passwd"},
        {"channel": "mqtt", "tz": "UTC\x00"},
        {"channel": "mqtt", "enabled": "yes"},
        {"channel": "mqtt", "subscription_id": 2**63},
        {"channel": "mqtt", "subscription_id": 0},
        {"channel": "mqtt", "colour": "red"},
    ],
)
async def test_bad_subscriptions_are_refused_with_a_problem(
    pool: asyncpg.Pool, subscription: dict[str, object]
) -> None:
    customer, _, auth = await customer_with_machine(pool)
    async with api_client(pool) as http:
        answer = await http.put(PATH, json={"subscriptions": [subscription]}, headers=auth)
        assert answer.status_code == 422, answer.text
        assert answer.headers["content-type"] == "application/problem+json"
        assert (await http.get(PATH, headers=auth)).json()["subscriptions"] == []
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM notice_subscriptions WHERE customer_id = $1", customer
        )
        == 0
    )


async def test_too_many_or_foreign_or_repeated_subscriptions_are_refused(
    pool: asyncpg.Pool,
) -> None:
    _, _, auth = await customer_with_machine(pool)
    _, _, other_auth = await customer_with_machine(pool)
    async with api_client(pool) as http:
        many = await http.put(PATH, json={"subscriptions": [{"channel": "mqtt"}] * 21},
                              headers=auth)  # fmt: skip
        assert many.status_code == 422
        other = await http.put(PATH, json={"subscriptions": [{"channel": "mqtt"}]},
                               headers=other_auth)  # fmt: skip
        foreign = other.json()["subscriptions"][0]["subscription_id"]
        answer = await http.put(
            PATH, json={"subscriptions": [{"subscription_id": foreign, "channel": "mqtt"}]},
            headers=auth,
        )  # fmt: skip
        assert answer.status_code == 404
        mine = await http.put(PATH, json={"subscriptions": [{"channel": "mqtt"}]}, headers=auth)
        sid = mine.json()["subscriptions"][0]["subscription_id"]
        twice = {"subscription_id": sid, "channel": "mqtt"}
        answer = await http.put(PATH, json={"subscriptions": [twice, twice]}, headers=auth)
        assert answer.status_code == 409
        # A new webhook without a secret has nothing to sign with.
        bare = {"channel": "webhook", "url": "https://hooks.example.com/"}
        answer = await http.put(PATH, json={"subscriptions": [bare]}, headers=auth)
        assert answer.status_code == 409
        # The log's paging parameters are bounded too.
        for params in ({"limit": 0}, {"limit": 501}, {"before": 2**63}, {"status": "lost"},
                       {"kind": "x"}):  # fmt: skip
            assert (
                await http.get("/v1/notifications", params=params, headers=auth)
            ).status_code == 422


async def test_a_host_resolving_to_loopback_is_refused_at_send_time() -> None:
    # What a DNS name pointing at an internal address looks like to the sender: "localhost"
    # resolves to 127.0.0.1 through the system resolver, past the literal check.
    target = Target(url="http://localhost/", scheme="http", host="localhost", port=80)
    with pytest.raises(TargetRefusedError):
        await resolve(target, allow_private=False, timeout_s=5)
    assert str(await resolve(target, allow_private=True, timeout_s=5)) in ("127.0.0.1", "::1")
    with pytest.raises(TargetRefusedError):
        check_url("http://[fe80::1]/", allow_private=False)
    sender = WebhookSender(timeout_s=2, max_response_bytes=10, allow_private=False)
    try:
        with pytest.raises(TargetRefusedError):
            await sender.send("http://127.0.0.1:9/", SECRET, 1, b"{}")
    finally:
        await sender.close()


async def test_a_stored_private_target_fails_without_a_request_when_private_is_off(
    pool: asyncpg.Pool,
) -> None:
    customer, machine, _ = await customer_with_machine(pool)
    await pool.execute(
        "INSERT INTO notice_subscriptions (customer_id, channel, target, secret) "
        "VALUES ($1, 'webhook', 'http://127.0.0.1:9/', $2)",
        customer,
        SECRET,
    )
    await raise_alarm(pool, machine, Severity.CRITICAL)
    channels = worker.Channels(
        webhook=WebhookSender(timeout_s=2, max_response_bytes=10, allow_private=False)
    )
    config = worker.NoticeConfig(worker_id="t", retry=RetryPolicy(base_s=0.01))
    await worker.fan_out(pool)
    await worker.deliver_due(pool, channels, config)
    await channels.close()
    row = await pool.fetchrow(
        "SELECT status, attempts, last_error FROM notice_deliveries WHERE customer_id = $1",
        customer,
    )
    assert (row["status"], row["attempts"]) == ("failed", 1)
    assert "not a public address" in row["last_error"]


async def test_order_progress_becomes_events_with_eta_and_engineer(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        w = await build(conn)
        alarm_id = await raise_order_alarm(conn, w.machine_id)
    policy = SlaPolicy()
    result = await dispatch_alarm(pool, KB, policy, alarm_id, actor="t", engineer_id=None, note="")
    order_id = result.order.order_id
    for command in (Accept(), StartTravel(), Arrive(), Complete()):
        await act(pool, policy, order_id, command, actor="t")
    rows = await pool.fetch(
        "SELECT kind, severity, subject::text AS subject FROM notice_events "
        "WHERE customer_id = $1 ORDER BY event_id",
        w.customer_id,
    )
    kinds = [r["kind"] for r in rows]
    assert kinds == ["alarm.raised", "order.dispatched", "order.arrived", "order.completed"]
    dispatched = orjson.loads(rows[1]["subject"])
    assert dispatched["order_id"] == order_id
    assert dispatched["engineer_id"] == result.order.order.engineer_id
    assert dispatched["engineer_name"] == result.order.order.engineer_id  # named after the id
    assert dispatched["eta"] is not None
    assert dispatched["machine_id"] == w.machine_id
