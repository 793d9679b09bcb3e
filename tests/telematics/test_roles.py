"""Every HTTP route against every role: who may call it, and what a customer may see.

The table below must name every `/v1` route the app serves: a new route without a row fails
`test_every_route_has_a_role_rule`, so no endpoint ships unchecked.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from diagnosis.events import LOW_OIL_PRESSURE, AlarmEvent, Severity, Transition
from diagnosis.knowledge import KnowledgeBase
from diagnosis.rules import RuleBook
from dispatch.sla import SlaPolicy
from telematics.aemp import clients as aemp_clients
from telematics.api.context import ApiContext
from telematics.base.metrics import Metrics
from telematics.services.dispatching import dispatch_alarm
from telematics.store import alarms as alarm_store
from telematics.store.registry import SourceDirectory, add_machine
from telematics.store.tokens import Role, create_token
from telematics.web import build_app
from telematics.wire.decode import Limits
from tests.conftest import unique
from tests.telematics.test_orders import build, raise_alarm

ADMIN = "roles-admin-token"
ENGINEER = unique("ENG")
A, E, G, C, D = "admin", "expert", "engineer", "customer", "other customer"
M = "monitor"
EVERYONE = {A, E, G, C, D, M}

# (method, path template) -> roles allowed to call it. A caller outside a resource's scope (the
# other customer; an engineer the order is not assigned to, or whose order is not behind the
# machine or alarm) gets 404, as if it did not exist; scoping itself is tested below, in
# test_orders.py and in test_role_views.py.
RULES: dict[tuple[str, str], set[str]] = {
    ("POST", "/v1/machines"): {A},
    ("GET", "/v1/machines"): {A, E, C, D},
    ("GET", "/v1/machines/{machine_id}"): {A, E, G, C, M},
    ("GET", "/v1/machines/{machine_id}/readings"): {A, E, G, C, M},
    ("GET", "/v1/machines/{machine_id}/latest"): {A, E, G, C, M},
    ("POST", "/v1/import/machines"): {A},
    ("POST", "/v1/engineers"): {A},
    ("GET", "/v1/engineers"): {A, E},
    ("GET", "/v1/engineers/{engineer_id}"): {A, E, G},
    ("PUT", "/v1/engineers/{engineer_id}"): {A},
    ("PUT", "/v1/engineers/{engineer_id}/status"): {A, E, G},
    ("POST", "/v1/warehouses"): {A},
    ("GET", "/v1/warehouses"): {A, E, G},
    ("GET", "/v1/warehouses/{warehouse_id}"): {A, E, G},
    ("POST", "/v1/parts"): {A},
    ("GET", "/v1/parts"): {A, E, G},
    ("PUT", "/v1/stock"): {A},
    ("POST", "/v1/import/{kind}"): {A},
    ("GET", "/v1/ingest/rejects"): {A},
    ("POST", "/v1/ingest/rejects/replay"): {A},
    ("GET", "/v1/alarms"): {A, E, C, D},
    ("GET", "/v1/alarms/{alarm_id}"): {A, E, G, C},
    ("POST", "/v1/alarms/{alarm_id}/ack"): {A, E},
    ("POST", "/v1/alarms/{alarm_id}/confirm"): {A, E},
    ("POST", "/v1/alarms/{alarm_id}/notes"): {A, E},
    ("POST", "/v1/alarms/{alarm_id}/resolve"): {A, E},
    ("POST", "/v1/alarms/{alarm_id}/escalate"): {A, E},
    ("GET", "/v1/alarms/{alarm_id}/events"): {A, E},
    ("GET", "/v1/models"): {A},
    ("POST", "/v1/models/{model}/train"): {A},
    ("POST", "/v1/alarms/{alarm_id}/dispatch"): {A, E},
    ("POST", "/v1/dispatch"): {A, E},
    ("GET", "/v1/orders"): EVERYONE,
    ("GET", "/v1/orders/{order_id}"): {A, E, C, M},
    ("GET", "/v1/orders/{order_id}/events"): {A, E, C, M},
    ("GET", "/v1/orders/{order_id}/timers"): {A, E},
    ("POST", "/v1/orders/{order_id}/accept"): {A, E},
    ("POST", "/v1/orders/{order_id}/start-travel"): {A, E},
    ("POST", "/v1/orders/{order_id}/arrive"): {A, E},
    ("POST", "/v1/orders/{order_id}/complete"): {A, E},
    ("POST", "/v1/orders/{order_id}/contact"): {A, E},
    ("POST", "/v1/orders/{order_id}/survey"): {A, E},
    ("POST", "/v1/orders/{order_id}/close"): {A, E},
    ("POST", "/v1/orders/{order_id}/transfer"): {A, E},
    ("POST", "/v1/orders/{order_id}/cancel"): {A, E},
    ("GET", "/v1/sla/breaches"): {A, E},
    ("POST", "/v1/tokens"): {A},
    ("GET", "/v1/tokens"): {A},
    ("DELETE", "/v1/tokens/{token_id}"): {A},
    ("GET", "/v1/maintenance/plans/{class_or_model}"): EVERYONE,
    ("PUT", "/v1/maintenance/plans/{class_or_model}"): {A, E},
    ("GET", "/v1/machines/{machine_id}/maintenance"): {A, E, G, C, M},
    ("POST", "/v1/machines/{machine_id}/maintenance/{item}/done"): {A, E, G, C},
    ("POST", "/v1/machines/{machine_id}/maintenance/{item}/order"): {A, E},
    ("GET", "/v1/maintenance/due"): {A, E, C, D},
    ("GET", "/v1/notifications/subscriptions"): {A, E, C, D},
    ("PUT", "/v1/notifications/subscriptions"): {A, E, C, D},
    ("GET", "/v1/notifications"): {A, E, C, D},
    ("POST", "/v1/aemp/clients"): {A},
    ("GET", "/v1/aemp/clients"): {A},
    ("DELETE", "/v1/aemp/clients/{client_id}"): {A},
    ("POST", "/v1/aemp/sources"): {A},
    ("GET", "/v1/aemp/sources"): {A},
    ("DELETE", "/v1/aemp/sources/{source_id}"): {A},
    ("POST", "/v1/aemp/sources/{source_id}/pull"): {A},
    ("GET", "/v1/desk/tasks"): {A, E, M},
    ("POST", "/v1/desk/tasks/{task_id}/result"): {A, E, M},
    ("GET", "/v1/satisfaction/instrument"): EVERYONE,
    ("PUT", "/v1/satisfaction/instrument"): {A},
    ("POST", "/v1/surveys"): {A, E, C, D, M},
    ("GET", "/v1/satisfaction"): {A, E, C, D, M},
    ("PUT", "/v1/machines/{machine_id}/region"): {A},
    ("GET", "/v1/service/kpis"): {A, E, M},
    ("GET", "/v1/machines/{machine_id}/summary"): {A, E, G, C, M},
    ("GET", "/v1/fleet/summary"): {A, E, C, D},
    ("GET", "/v1/customers/{customer_id}/settings"): {A, E, C},
    ("PUT", "/v1/customers/{customer_id}/settings"): {A, E, C},
    ("GET", "/v1/alarms/{alarm_id}/suggestions"): {A, E},
    ("GET", "/v1/faults"): {A, E},
    ("GET", "/v1/sla/timers"): {A, E, M},
}


def body_for(method: str, path: str, machine_id: str) -> object:
    bodies: dict[str, object] = {
        "/v1/machines": {"machine_id": unique("RM"), "model": "crane", "customer_id": "X"},
        "/v1/engineers": {"engineer_id": unique("RE"), "name": "N"},
        "/v1/ingest/rejects/replay": {"limit": 1},
        "/v1/alarms/{alarm_id}/ack": {"by": "someone"},
        "/v1/alarms/{alarm_id}/confirm": {},
        "/v1/alarms/{alarm_id}/notes": {"text": "called the site"},
        "/v1/alarms/{alarm_id}/resolve": {"steps": ["restarted the controller"]},
        "/v1/alarms/{alarm_id}/escalate": {"to_line": 2},
        "/v1/models/{model}/train": {"days": 1},
        "/v1/tokens": {"role": "expert", "subject_id": "x"},
        "/v1/aemp/clients": {"customer_id": "X"},
        "/v1/aemp/sources": {
            "source_id": unique("S")[:20],
            "customer_id": "X",
            "base_url": "http://127.0.0.1:9/aemp",
            "auth": "none",
        },
        "/v1/engineers/{engineer_id}": {"engineer_id": ENGINEER, "name": "Self"},
        "/v1/engineers/{engineer_id}/status": {"status": "available"},
        "/v1/warehouses": {"warehouse_id": "WH-ROLES", "name": "W", "lat": 1.0, "lon": 2.0},
        "/v1/parts": {"part_no": "P-ROLES", "name": "P"},
        "/v1/stock": [],
        "/v1/alarms/{alarm_id}/dispatch": {},
        "/v1/dispatch": {"alarm_ids": [999999999]},
        "/v1/orders/{order_id}/complete": {},
        "/v1/orders/{order_id}/contact": {},
        "/v1/orders/{order_id}/survey": {},
        "/v1/orders/{order_id}/close": {},
        "/v1/orders/{order_id}/transfer": {"to_engineer_id": ENGINEER},
        "/v1/orders/{order_id}/cancel": {"reason": "roles test"},
        "/v1/maintenance/plans/{class_or_model}": {"items": []},
        "/v1/machines/{machine_id}/maintenance/{item}/done": {
            "engine_hours": 1.0,
            "done_at": "2026-01-01T00:00:00Z",
        },
        "/v1/machines/{machine_id}/maintenance/{item}/order": {},
        "/v1/notifications/subscriptions": {"subscriptions": [{"channel": "mqtt"}]},
        "/v1/desk/tasks/{task_id}/result": {"reached": True},
        "/v1/satisfaction/instrument": {"constructs": [], "paths": [], "index": "x"},
        "/v1/surveys": {
            "customer_id": "nobody",
            "channel": "app",
            "answers": {"sat_overall": 5},
            "answered_at": "2024-01-01T00:00:00Z",
        },
        "/v1/machines/{machine_id}/region": {"region": "east"},
        "/v1/customers/{customer_id}/settings": {"tz": "UTC", "shift_hours_per_day": 8.0},
    }
    return bodies.get(path) if method in ("POST", "PUT", "PATCH") else None


@pytest.fixture
async def world(pool: asyncpg.Pool) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, object]]]:
    customer, other = unique("CA"), unique("CB")
    async with pool.acquire() as conn:
        machine_id = unique("RMA")
        await add_machine(conn, machine_id, "crane", customer, None)
        await conn.execute(
            "INSERT INTO engineers (engineer_id, name) VALUES ($1, 'Self') ON CONFLICT DO NOTHING",
            ENGINEER,
        )
        await conn.execute(
            "INSERT INTO warehouses VALUES ('WH-ROLES', 'W', 1, 2) ON CONFLICT DO NOTHING"
        )
        async with conn.transaction():
            (change,) = await alarm_store.apply_events(
                conn,
                [AlarmEvent(machine_id, LOW_OIL_PRESSURE, Transition.RAISED, 1_795_000_000_000)],
                lambda _: (Severity.CRITICAL, "low oil"),
            )
        tokens = {A: ADMIN}
        for who, role, subject in (
            (E, Role.EXPERT, "ecc-1"),
            (G, Role.ENGINEER, ENGINEER),
            (C, Role.CUSTOMER, customer),
            (D, Role.CUSTOMER, other),
            (M, Role.MONITOR, "desk-1"),
        ):
            _, tokens[who] = await create_token(conn, role, subject, who)
        spare, _ = await create_token(conn, Role.EXPERT, "spare", "to revoke")
        aemp_client, _ = await aemp_clients.create_client(conn, customer, "to revoke")
        w = await build(conn)
        order_alarm = await raise_alarm(conn, w.machine_id)
    order = await dispatch_alarm(
        pool, KnowledgeBase.load(), SlaPolicy(), order_alarm, actor="t", engineer_id=None, note=""
    )
    # The order belongs to customer C: its machine is moved over to C for this test.
    async with pool.acquire() as conn:
        await conn.execute(
            "UPDATE orders SET customer_id = $2 WHERE order_id = $1", order.order.order_id, customer
        )
    app = build_app(
        ApiContext(
            pool=pool,
            directory=SourceDirectory(),
            metrics=Metrics(),
            admin_token=ADMIN,
            limits=Limits(),
            knowledge=KnowledgeBase.load(),
            rules=RuleBook.load(),
        )
    )
    ids = {
        "machine_id": machine_id,
        "alarm_id": change.alarm_id,
        "model": "no_history_model",
        "token_id": spare.token_id,
        "client_id": aemp_client.client_id,
        "source_id": "no-such-source",
        "order_id": order.order.order_id,
        "engineer_id": ENGINEER,
        "warehouse_id": "WH-ROLES",
        "kind": "parts",
        "task_id": 999_999_999,
        "tokens": tokens,
        "customer": customer,
        "class_or_model": "ROLES-PLAN",
        "item": "engine_oil",
        "customer_id": customer,
    }
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://api"
    ) as http:
        yield http, ids


def test_every_route_has_a_role_rule() -> None:
    app = build_app(
        ApiContext(pool=None, directory=SourceDirectory(), metrics=Metrics(), admin_token="x",
                   limits=Limits())  # type: ignore[arg-type]
    )  # fmt: skip
    served = {
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        if path.startswith("/v1")
        for method in operations
    }
    assert served == set(RULES)


async def test_each_role_may_call_only_its_routes(
    world: tuple[httpx.AsyncClient, dict[str, object]],
) -> None:
    http, ids = world
    tokens = ids["tokens"]
    assert isinstance(tokens, dict)
    failures: list[str] = []
    for (method, template), allowed in RULES.items():
        path = template.format(**{k: v for k, v in ids.items() if isinstance(v, (str, int))})
        for who in sorted(EVERYONE):
            if (method, template) == ("DELETE", "/v1/tokens/{token_id}") and who == A:
                continue  # revoking is checked last, below
            headers = {"Authorization": f"Bearer {tokens[who]}"}
            if template == "/v1/import/{kind}":
                answer = await http.post(
                    path, content="part_no,name\nP-CSV,Csv part\n",
                    headers={**headers, "Content-Type": "text/csv"},
                )  # fmt: skip
            else:
                answer = await http.request(
                    method, path, json=body_for(method, template, str(ids["machine_id"])),
                    headers=headers,
                )  # fmt: skip
            refused = answer.status_code in (401, 403)
            hidden = who in (G, D) and answer.status_code == 404
            if refused == (who in allowed) and not hidden:
                failures.append(f"{who} {method} {path}: {answer.status_code} {answer.text[:80]}")
        anonymous = await http.request(method, path)
        if anonymous.status_code != 401:
            failures.append(f"anonymous {method} {path}: {anonymous.status_code}")
    assert failures == []


async def test_a_customer_sees_nothing_of_another_customer(
    world: tuple[httpx.AsyncClient, dict[str, object]],
) -> None:
    http, ids = world
    tokens = ids["tokens"]
    assert isinstance(tokens, dict)
    other = {"Authorization": f"Bearer {tokens[D]}"}
    own = {"Authorization": f"Bearer {tokens[C]}"}
    machine_id, alarm_id = ids["machine_id"], ids["alarm_id"]
    for path in (
        f"/v1/machines/{machine_id}",
        f"/v1/machines/{machine_id}/readings",
        f"/v1/alarms/{alarm_id}",
    ):
        assert (await http.get(path, headers=other)).status_code == 404
        assert (await http.get(path, headers=own)).status_code == 200
    # Lists are scoped, whatever filter the customer asks for.
    for path, key, field in (
        ("/v1/machines", "machines", "machine_id"),
        ("/v1/alarms", "alarms", "machine_id"),
    ):
        theirs = await http.get(path, params={"customer_id": ids["customer"]}, headers=other)
        assert machine_id not in [m[field] for m in theirs.json()[key]]
        mine = await http.get(path, headers=own)
        assert machine_id in [m[field] for m in mine.json()[key]]


async def test_a_revoked_token_stops_working(
    world: tuple[httpx.AsyncClient, dict[str, object]],
) -> None:
    http, _ = world
    admin = {"Authorization": f"Bearer {ADMIN}"}
    made = await http.post(
        "/v1/tokens", json={"role": "expert", "subject_id": "ecc-9"}, headers=admin
    )
    assert made.status_code == 201
    token, token_id = made.json()["token"], made.json()["token_id"]
    assert all("token" not in t for t in (await http.get("/v1/tokens", headers=admin)).json())
    expert = {"Authorization": f"Bearer {token}"}
    assert (await http.get("/v1/alarms", headers=expert)).status_code == 200
    assert (await http.delete(f"/v1/tokens/{token_id}", headers=admin)).status_code == 200
    assert (await http.get("/v1/alarms", headers=expert)).status_code == 401
