"""What each role sees, field by field: a customer's view of its orders and alarms carries no
engineer ids, no ranking, no notes, no stock locations and no staff names; an engineer's view of
an order carries its own route but nobody else's; and the assigned engineer reads the alarm,
diagnosis, machine and readings behind their order, and nothing else.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest

from telematics.api.app import create_app
from telematics.api.context import ApiContext
from telematics.base.metrics import Metrics
from telematics.store import resources
from telematics.store.registry import SourceDirectory
from telematics.store.resources import LocationKind, StockLine
from telematics.store.tokens import Role, create_token
from telematics.wire.decode import Limits
from tests.conftest import unique
from tests.telematics.test_orders import KB, KIT, World, build, raise_alarm

ADMIN = "views-admin"
AS_ADMIN = {"Authorization": f"Bearer {ADMIN}"}
NOTE = "internal: customer owes us for the last visit"
ALARM_NOTE = "internal: operator keeps ignoring the gauge"

CUSTOMER_ORDER = {
    "view", "order_id", "alarm_id", "machine_id", "state", "severity", "fault",
    "engineer_assigned", "eta", "parts", "consumed", "created_at", "updated_at", "live_eta",
    "survey_answered",
}  # fmt: skip
ENGINEER_ORDER = {
    "view", "order_id", "alarm_id", "machine_id", "customer_id", "state", "severity", "fault",
    "skills", "parts", "engineer_id", "site_lat", "site_lon", "eta", "route", "reserved",
    "consumed", "created_at", "updated_at", "version", "tracking", "steps_tried",
}  # fmt: skip
ENGINEER_ROUTE = {"pickup_warehouse_id", "stops", "distance_km", "detour_km", "eta_min"}
ROUTE_STOP = {"kind", "place_id", "lat", "lon", "distance_km", "arrive_min"}
CUSTOMER_EVENT = {"view", "event_id", "at", "action", "from_state", "to_state"}
ENGINEER_EVENT = {"view", "event_id", "at", "actor", "action", "from_state", "to_state"}
CUSTOMER_ALARM = {
    "alarm_id", "incident_id", "machine_id", "model", "customer_id", "fault", "state",
    "severity", "title", "signal", "spn", "fmi", "raised_at", "last_seen_at", "cleared_at",
    "readings", "first_value", "last_value", "worst_value", "occurrences", "detail",
    "deviations", "acknowledged_at", "confirmed_fault", "resolution", "resolved_at",
}  # fmt: skip
CUSTOMER_ALARM_DETAIL = {
    "view", "alarm", "diagnosis", "window_start", "window_end", "readings", "related", "limits",
}  # fmt: skip


@dataclass
class Scene:
    http: httpx.AsyncClient
    w: World
    alarm_id: int
    order_id: int
    customer: dict[str, str]
    engineer: dict[str, str]
    other_engineer: dict[str, str]
    expert_name: str
    secrets: tuple[str, ...]  # what no customer may read anywhere


@pytest.fixture
async def scene(pool: asyncpg.Pool) -> AsyncIterator[Scene]:
    """An order dispatched to the far engineer (chosen over the near one), its alarm
    acknowledged and annotated by a named expert."""
    app = create_app(
        ApiContext(
            pool=pool, directory=SourceDirectory(), metrics=Metrics(), admin_token=ADMIN,
            limits=Limits(), knowledge=KB,
        )
    )  # fmt: skip
    expert_name = unique("ecc-wang")
    async with pool.acquire() as conn:
        w = await build(conn)
        alarm_id = await raise_alarm(conn, w.machine_id)
        tokens = {}
        for key, role, subject in (
            ("customer", Role.CUSTOMER, w.customer_id),
            ("engineer", Role.ENGINEER, w.far),
            ("other", Role.ENGINEER, w.near),
            ("expert", Role.EXPERT, expert_name),
        ):
            _, secret = await create_token(conn, role, subject, key)
            tokens[key] = {"Authorization": f"Bearer {secret}"}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
        expert = tokens["expert"]
        assert (await http.post(f"/v1/alarms/{alarm_id}/ack", json={}, headers=expert)).is_success
        noted = await http.post(
            f"/v1/alarms/{alarm_id}/notes", json={"text": ALARM_NOTE}, headers=expert
        )
        assert noted.is_success
        made = await http.post(
            f"/v1/alarms/{alarm_id}/dispatch", json={"note": NOTE}, headers=expert
        )
        assert made.status_code == 201, made.text
        assert made.json()["engineer_id"] == w.far
        assert w.near in made.json()["plan"]["ranking"]  # staff see who lost, and why
        yield Scene(
            http, w, alarm_id, made.json()["order_id"], tokens["customer"], tokens["engineer"],
            tokens["other"], expert_name,
            secrets=(w.far, w.near, w.warehouse, expert_name, NOTE, ALARM_NOTE, "ranking"),
        )  # fmt: skip


def leaks(body: Any, secrets: tuple[str, ...]) -> list[str]:
    text = json.dumps(body)
    return [s for s in secrets if s in text]


async def test_a_customer_sees_its_order_without_staff_internals(scene: Scene) -> None:
    http, oid = scene.http, scene.order_id
    one = await http.get(f"/v1/orders/{oid}", headers=scene.customer)
    assert one.status_code == 200, one.text
    order = one.json()
    assert set(order) == CUSTOMER_ORDER
    assert order["view"] == "customer"
    assert order["engineer_assigned"] is True
    assert order["eta"] is not None
    assert {(p["part_no"], p["quantity"]) for p in order["parts"]} == set(KIT)
    assert all(set(p) == {"part_no", "quantity"} for p in order["parts"])
    listed = (await http.get("/v1/orders", headers=scene.customer)).json()
    assert [o for o in listed if o["order_id"] == oid] == [order]
    events = (await http.get(f"/v1/orders/{oid}/events", headers=scene.customer)).json()
    assert [e["action"] for e in events] == ["create", "dispatch"]
    assert all(set(e) == CUSTOMER_EVENT for e in events)
    assert leaks([order, listed, events], scene.secrets) == []


async def test_a_customer_sees_its_alarm_without_staff_names_or_notes(scene: Scene) -> None:
    http = scene.http
    detail = await http.get(f"/v1/alarms/{scene.alarm_id}", headers=scene.customer)
    assert detail.status_code == 200, detail.text
    body = detail.json()
    assert set(body) == CUSTOMER_ALARM_DETAIL
    assert body["view"] == "customer"
    assert set(body["alarm"]) == CUSTOMER_ALARM
    assert body["alarm"]["acknowledged_at"] is not None
    assert body["alarm"]["resolution"] == "dispatched"
    assert all(set(a) == CUSTOMER_ALARM for a in body["related"])
    page = (
        await http.get("/v1/alarms", params={"machine_id": scene.w.machine_id},
                       headers=scene.customer)
    ).json()  # fmt: skip
    assert set(page) == {"view", "alarms", "next_before"}
    assert page["view"] == "customer"
    assert [set(a) for a in page["alarms"]] == [CUSTOMER_ALARM]
    assert leaks([body, page], scene.secrets) == []
    # Staff still see who acknowledged it.
    staff = (await http.get(f"/v1/alarms/{scene.alarm_id}", headers=AS_ADMIN)).json()
    assert staff["view"] == "staff"
    assert staff["alarm"]["acknowledged_by"] == f"expert:{scene.expert_name}"


async def test_an_engineer_sees_their_route_but_not_who_else_was_considered(
    scene: Scene,
) -> None:
    http, oid = scene.http, scene.order_id
    one = await http.get(f"/v1/orders/{oid}", headers=scene.engineer)
    assert one.status_code == 200, one.text
    order = one.json()
    assert set(order) == ENGINEER_ORDER
    assert order["view"] == "engineer"
    assert order["engineer_id"] == scene.w.far
    assert set(order["route"]) == ENGINEER_ROUTE
    assert order["route"]["pickup_warehouse_id"] is None  # the van holds the kit
    assert [s["kind"] for s in order["route"]["stops"]] == ["site"]
    assert all(set(s) == ROUTE_STOP for s in order["route"]["stops"])
    events = (await http.get(f"/v1/orders/{oid}/events", headers=scene.engineer)).json()
    assert all(set(e) == ENGINEER_EVENT for e in events)
    accepted = await http.post(f"/v1/orders/{oid}/accept", headers=scene.engineer)
    assert accepted.status_code == 200, accepted.text
    assert set(accepted.json()) == ENGINEER_ORDER
    listed = (await http.get("/v1/orders", headers=scene.engineer)).json()
    assert [o["view"] for o in listed] == ["engineer"]
    others = (scene.w.near, NOTE, "ranking", "explanation")
    assert leaks([order, events, accepted.json(), listed], others) == []


async def test_the_assigned_engineer_reads_the_alarm_machine_and_readings_behind_the_order(
    pool: asyncpg.Pool, scene: Scene
) -> None:
    http, w = scene.http, scene.w
    paths = (
        f"/v1/alarms/{scene.alarm_id}",
        f"/v1/machines/{w.machine_id}",
        f"/v1/machines/{w.machine_id}/readings",
    )
    for path in paths:
        assert (await http.get(path, headers=scene.engineer)).status_code == 200, path
        assert (await http.get(path, headers=scene.other_engineer)).status_code == 404, path
    alarm = (await http.get(paths[0], headers=scene.engineer)).json()
    assert alarm["diagnosis"]["causes"]
    assert alarm["diagnosis"]["remote_steps"]
    assert alarm["alarm"]["machine_id"] == w.machine_id
    # Once the order is transferred to the near engineer, the far one no longer sees them.
    async with pool.acquire() as conn:
        await resources.set_stock(
            conn, [StockLine(LocationKind.VAN, w.near, no, q, 0) for no, q in KIT]
        )
    moved = await http.post(
        f"/v1/orders/{scene.order_id}/transfer", json={"to_engineer_id": w.near},
        headers=AS_ADMIN,
    )  # fmt: skip
    assert moved.status_code == 200, moved.text
    for path in paths:
        assert (await http.get(path, headers=scene.engineer)).status_code == 404, path
        assert (await http.get(path, headers=scene.other_engineer)).status_code == 200, path


def test_the_openapi_documents_each_roles_view() -> None:
    app = create_app(
        ApiContext(pool=None, directory=SourceDirectory(), metrics=Metrics(), admin_token="x",
                   limits=Limits())  # type: ignore[arg-type]
    )  # fmt: skip
    spec = app.openapi()
    schemas = spec["components"]["schemas"]

    def views(path: str) -> set[str]:
        ok = spec["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]
        schema = ok["schema"]
        schema = schema.get("items", schema)
        refs = [s["$ref"].rsplit("/", 1)[-1] for s in schema["oneOf"]]
        return {schemas[r]["properties"]["view"]["const"] for r in refs}

    assert views("/v1/orders/{order_id}") == {"staff", "engineer", "customer"}
    assert views("/v1/orders") == {"staff", "engineer", "customer"}
    assert views("/v1/orders/{order_id}/events") == {"staff", "engineer", "customer"}
    assert views("/v1/alarms/{alarm_id}") == {"staff", "customer"}
    assert views("/v1/alarms") == {"staff", "customer"}
