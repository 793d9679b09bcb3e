"""A fault from the simulator becomes an alarm with its diagnosis, and clears when it ends.

Everything real: the service (gateway, diagnosis, API, alarm notices) runs in-process against the
shared PostgreSQL and Mosquitto, the simulator publishes a fleet with injected faults over MQTT,
and the test reads the alarms back through the HTTP API and the alarm topic.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import aiomqtt
import httpx
import orjson
import pytest

from simulators import SimConfig, arun, make_fleet
from simulators.faults import FaultPlan, FaultSpec
from simulators.link import MqttSettings
from simulators.registry import register_machines
from telematics.base.config import Settings
from telematics.ingest.mqtt import MqttEndpoint
from telematics.service import Endpoints
from tests.conftest import unique
from tests.telematics.harness import running_service

TOKEN = "test-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MINUTE_MS = 60_000


@contextlib.asynccontextmanager
async def service(settings: Settings, tmp_path: Path) -> AsyncIterator[Endpoints]:
    cfg = settings.model_copy(
        update={
            "mqtt_client_id": unique("gw-e2e"),
            "http_port": 0,
            "data_dir": tmp_path,
            "admin_token": settings.admin_token,
        }
    )
    async with running_service(cfg, 30) as endpoints:
        yield endpoints


async def alarms_of(http: httpx.AsyncClient, machine_id: str) -> list[dict[str, object]]:
    answer = await http.get("/v1/alarms", params={"machine_id": machine_id}, headers=AUTH)
    answer.raise_for_status()
    alarms: list[dict[str, object]] = answer.json()["alarms"]
    return alarms


@pytest.mark.slow
async def test_injected_faults_raise_diagnosed_alarms_that_clear(
    settings: Settings, mqtt_endpoint: MqttEndpoint, tmp_path: Path
) -> None:
    fleet = make_fleet(4, id_prefix=unique("E2E"), seed=3)
    faulty, coded, *healthy = fleet
    minutes = 30
    plan = FaultPlan(
        from_run_start=(
            FaultSpec("engine_overheat", faulty.machine_id, 5 * MINUTE_MS, 15 * 60, form="sudden"),
            FaultSpec("dtc", coded.machine_id, 10 * MINUTE_MS, 5 * 60, spn=100, fmi=1, oc=1),
        )
    )
    async with (
        service(settings, tmp_path) as endpoints,
        httpx.AsyncClient(base_url=endpoints.http_url, timeout=10) as http,
        aiomqtt.Client(
            mqtt_endpoint.host, mqtt_endpoint.port, identifier=unique("disp")
        ) as display,
    ):
        await display.subscribe(f"machines/{faulty.machine_id}/alarms", qos=1)
        await asyncio.to_thread(register_machines, endpoints.http_url, TOKEN, fleet)
        report = await arun(
            SimConfig(
                machines=fleet,
                mqtt=MqttSettings(host=mqtt_endpoint.host, port=mqtt_endpoint.port),
                readings_per_machine=minutes * 60,
                period_s=1.0,
                batch_size=20,
                seed=1,
                faults=plan,
                progress=False,
            )
        )
        assert report.is_complete
        truth = {t.machine_id: t for t in report.ground_truth}
        overheat, code = truth[faulty.machine_id], truth[coded.machine_id]
        assert overheat.visible_ts_ms is not None, "the seed must make the overheat visible"
        assert overheat.end_ts_ms is not None
        assert code.visible_ts_ms is not None
        assert code.end_ts_ms is not None

        async def settled() -> tuple[list[dict[str, object]], list[dict[str, object]]]:
            while True:
                hot = await alarms_of(http, faulty.machine_id)
                dtc = await alarms_of(http, coded.machine_id)
                done = [
                    a for a in hot if a["fault"] == "engine_overheat" and a["state"] == "cleared"
                ]
                if done and any(a["state"] == "cleared" for a in dtc):
                    return hot, dtc
                await asyncio.sleep(0.5)

        hot, dtc = await asyncio.wait_for(settled(), 60)

        (episode,) = [a for a in hot if a["fault"] == "engine_overheat"]
        raised_ms = _ms(episode["raised_at"])
        cleared_ms = _ms(episode["cleared_at"])
        # Detected within two minutes of the fault showing in the signals, cleared after it ended.
        assert overheat.visible_ts_ms <= raised_ms <= overheat.visible_ts_ms + 2 * MINUTE_MS
        assert cleared_ms >= overheat.end_ts_ms - MINUTE_MS
        assert episode["severity"] == "critical"
        assert float(str(episode["worst_value"])) >= 105.0

        detail = await http.get(f"/v1/alarms/{episode['alarm_id']}", headers=AUTH)
        detail.raise_for_status()
        body = detail.json()
        diagnosis = body["diagnosis"]
        assert diagnosis["fault"] == "engine_overheat"
        assert diagnosis["causes"]
        likelihoods = [c["likelihood"] for c in diagnosis["causes"]]
        assert likelihoods == sorted(likelihoods, reverse=True)
        assert diagnosis["remote_steps"]
        assert diagnosis["parts"]
        assert diagnosis["skills"]
        temps = [r["coolant_temp_c"] for r in body["readings"]]
        assert max(t for t in temps if t is not None) >= 105.0  # the window shows the fault

        (code_episode,) = [a for a in dtc if a["fault"] == "dtc_100_1"]
        assert code_episode["spn"] == 100
        assert code_episode["fmi"] == 1
        assert _ms(code_episode["raised_at"]) == code.visible_ts_ms
        assert "oil pressure" in str(code_episode["title"]).lower()

        for machine in healthy:
            assert await alarms_of(http, machine.machine_id) == []

        acked = await http.post(
            f"/v1/alarms/{episode['alarm_id']}/ack", json={"by": "expert-e2e"}, headers=AUTH
        )
        assert acked.json()["acknowledged_by"] == "admin:admin"  # the caller; "by" is beside it

        notices: list[dict[str, object]] = []
        async with asyncio.timeout(20):
            async for message in display.messages:
                assert isinstance(message.payload, bytes)
                notices.append(orjson.loads(message.payload))
                if any(
                    n["transition"] == "cleared" and n["fault"] == "engine_overheat"
                    for n in notices
                ):
                    break
        assert [n["transition"] for n in notices if n["fault"] == "engine_overheat"] == [
            "raised",
            "cleared",
        ]


def _ms(value: object) -> int:
    return int(datetime.fromisoformat(str(value)).timestamp() * 1000)


async def field_resources(
    http: httpx.AsyncClient, engineer_id: str, warehouse_id: str, lat: float, lon: float
) -> dict[str, dict[str, str]]:
    """Parts, an engineer with an empty van near the site, a stocked depot, and tokens."""
    # Field resources arrive as spreadsheets.
    csv = {**AUTH, "Content-Type": "text/csv"}
    kit = ["CL-4050", "TH-4020", "FB-4040", "RC-4060"]
    imports = {
        "parts": "part_no,name\n" + "".join(f"{p},{p}\n" for p in kit),
        "engineers": "engineer_id,name,skills,home_lat,home_lon\n"
        f"{engineer_id},Chen,cooling_system;engine_mechanical,{lat + 0.05},{lon}\n",
        "warehouses": f"warehouse_id,name,lat,lon\n{warehouse_id},Depot,{lat - 0.1},{lon}\n",
        "stock": "location_kind,location_id,part_no,quantity\n"
        + "".join(f"warehouse,{warehouse_id},{p},3\n" for p in kit),
    }
    for kind, text in imports.items():
        answer = await http.post(f"/v1/import/{kind}", content=text, headers=csv)
        assert answer.status_code == 200, answer.text
    tokens = {}
    for role, subject in (("expert", "ecc-e2e"), ("engineer", engineer_id)):
        made = await http.post(
            "/v1/tokens", json={"role": role, "subject_id": subject}, headers=AUTH
        )
        tokens[role] = {"Authorization": f"Bearer {made.json()['token']}"}

    return tokens


@pytest.mark.slow
async def test_an_alarm_is_dispatched_worked_and_closed_with_its_callback_check(
    settings: Settings, mqtt_endpoint: MqttEndpoint, tmp_path: Path
) -> None:
    """Simulator fault -> alarm -> expert dispatch -> engineer accepts and completes -> the
    callback check fires (a breach: nobody called the customer) -> the expert closes the order.
    """
    fleet = make_fleet(2, id_prefix=unique("SVC"), seed=3)
    faulty = fleet[0]
    plan = FaultPlan(
        from_run_start=(
            FaultSpec("engine_overheat", faulty.machine_id, 5 * MINUTE_MS, 15 * 60, form="sudden"),
        )
    )
    fast_sla = settings.model_copy(update={"sla_callback_s": 1, "sla_check_interval_s": 0.2})
    engineer_id, warehouse_id = unique("ENG"), unique("WH")
    lat, lon = faulty.site.lat, faulty.site.lon
    async with (
        service(fast_sla, tmp_path) as endpoints,
        httpx.AsyncClient(base_url=endpoints.http_url, timeout=10) as http,
    ):
        await asyncio.to_thread(register_machines, endpoints.http_url, TOKEN, fleet)
        tokens = await field_resources(http, engineer_id, warehouse_id, lat, lon)

        report = await arun(
            SimConfig(
                machines=fleet,
                mqtt=MqttSettings(host=mqtt_endpoint.host, port=mqtt_endpoint.port),
                readings_per_machine=30 * 60,
                batch_size=20,
                seed=1,
                faults=plan,
                progress=False,
            )
        )
        assert report.is_complete

        async def raised() -> dict[str, object]:
            while True:
                for alarm in await alarms_of(http, faulty.machine_id):
                    if alarm["fault"] == "engine_overheat":
                        return alarm
                await asyncio.sleep(0.3)

        alarm = await asyncio.wait_for(raised(), 60)
        expert, engineer = tokens["expert"], tokens["engineer"]
        made = await http.post(f"/v1/alarms/{alarm['alarm_id']}/dispatch", json={}, headers=expert)
        assert made.status_code == 201, made.text
        order = made.json()
        oid = order["order_id"]
        assert order["engineer_id"] == engineer_id
        assert order["plan"]["pickup_warehouse_id"] == warehouse_id  # the van is empty

        async def timer_fired() -> list[dict[str, object]]:
            while True:
                timers = (await http.get(f"/v1/orders/{oid}/timers", headers=expert)).json()
                if any(t["kind"] == "callback_check" and t["state"] == "fired" for t in timers):
                    return list(timers)
                await asyncio.sleep(0.2)

        timers = await asyncio.wait_for(timer_fired(), 20)
        (callback,) = [t for t in timers if t["kind"] == "callback_check"]
        assert callback["verdict"] == "breach"
        breaches = (await http.get("/v1/sla/breaches", headers=expert)).json()
        assert oid in [b["order_id"] for b in breaches]

        for step in ("accept", "start-travel", "arrive"):
            answer = await http.post(f"/v1/orders/{oid}/{step}", headers=engineer)
            assert answer.status_code == 200, (step, answer.text)
        used = [{"part_no": "TH-4020", "quantity": 1}]
        done = await http.post(
            f"/v1/orders/{oid}/complete", json={"parts_used": used}, headers=engineer
        )
        assert done.json()["state"] == "completed"
        closed = await http.post(f"/v1/orders/{oid}/close", json={"note": "ok"}, headers=expert)
        assert closed.json()["state"] == "closed"
        trail = [
            e["action"] for e in (await http.get(f"/v1/orders/{oid}/events", headers=expert)).json()
        ]
        assert trail == [
            "create",
            "dispatch",
            "accept",
            "start_travel",
            "arrive",
            "complete",
            "close",
        ]
        depot = (await http.get(f"/v1/warehouses/{warehouse_id}", headers=expert)).json()
        left = {s["part_no"]: (s["quantity"], s["reserved"]) for s in depot["stock"]}
        assert left["TH-4020"] == (2, 0)
        assert left["CL-4050"] == (3, 0)
