"""What the control centre's pages read beside an alarm: the queue by region, the rule book's
limits with the alarm's signals, who a dispatch would choose from (changing nothing), and the
faults a diagnosis may be corrected to.
"""

from __future__ import annotations

import asyncpg

from diagnosis.events import LOW_OIL_PRESSURE, UNEXPLAINED_ANOMALY, AlarmEvent, Transition
from diagnosis.rules import RuleBook
from dispatch.sla import SlaPolicy
from telematics.quality.survey_store import set_region
from telematics.services.dispatching import dispatch_alarm
from telematics.store import alarms as alarm_store
from telematics.store import resources
from telematics.store.resources import LocationKind
from tests.conftest import unique
from tests.telematics.harness import ADMIN_TOKEN, api_client
from tests.telematics.test_orders import KB, build, raise_alarm

AS_ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
RULES = RuleBook.load()
# What the anomaly model writes when oil pressure broke its relation to engine speed: the
# shipped knowledge base maps that relation (`[relation]`) to low oil pressure.
RELATION_DETAIL = (
    "anomaly score 1.40 above the model's threshold 1.00; relation broken: oil_pressure_kpa"
    " low for engine_speed_rpm (-8.2); oil_pressure_kpa z=-2.1"
)


async def _reserved(conn: asyncpg.Connection, engineer_id: str) -> int:
    return sum(s.reserved for s in await resources.stock_at(conn, LocationKind.VAN, engineer_id))


async def test_the_queue_filters_by_region_and_staff_see_it(pool: asyncpg.Pool) -> None:
    region = unique("rg")
    async with pool.acquire() as conn:
        inside, outside = await build(conn), await build(conn)
        await set_region(conn, inside.machine_id, region)
        mine = await raise_alarm(conn, inside.machine_id)
        await raise_alarm(conn, outside.machine_id)
    async with api_client(pool, knowledge=KB) as http:
        page = (await http.get("/v1/alarms", params={"region": region}, headers=AS_ADMIN)).json()
    assert [(a["alarm_id"], a["region"]) for a in page["alarms"]] == [(mine, region)]


async def test_an_alarm_carries_the_limits_of_its_machines_rule_table(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        w = await build(conn)  # an excavator
        alarm_id = await raise_alarm(conn, w.machine_id)
    async with api_client(pool, knowledge=KB, rules=RULES) as http:
        detail = (await http.get(f"/v1/alarms/{alarm_id}", headers=AS_ADMIN)).json()
    oil = [
        x for x in detail["limits"] if x["signal"] == "oil_pressure_kpa" and x["edge"] == "raise"
    ]
    rule = RULES.classes["excavator"].low_oil_pressure
    assert oil == [{
        "signal": "oil_pressure_kpa", "fault": "low_oil_pressure", "edge": "raise",
        "side": "below", "value": None, "over": "engine_speed_rpm",
        "xs": list(rule.curve_rpm), "ys": list(rule.curve_kpa), "condition": "",
    }]  # fmt: skip
    coolant = {x["edge"]: x["value"] for x in detail["limits"] if x["signal"] == "coolant_temp_c"}
    overheat = RULES.classes["excavator"].engine_overheat
    assert coolant == {"raise": overheat.raise_c, "clear": overheat.clear_c}
    async with api_client(pool, knowledge=KB) as http:  # a service without diagnosis rules
        assert (await http.get(f"/v1/alarms/{alarm_id}", headers=AS_ADMIN)).json()["limits"] == []


async def test_suggestions_rank_as_a_dispatch_would_and_reserve_nothing(
    pool: asyncpg.Pool,
) -> None:
    async with pool.acquire() as conn:
        w = await build(conn)
        alarm_id = await raise_alarm(conn, w.machine_id)
    async with api_client(pool, knowledge=KB) as http:
        answer = await http.get(f"/v1/alarms/{alarm_id}/suggestions", headers=AS_ADMIN)
        assert answer.status_code == 200, answer.text
        found = answer.json()
        missing = await http.get("/v1/alarms/999999999/suggestions", headers=AS_ADMIN)
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("application/problem+json")
    first, second = found["candidates"][:2]
    # The far engineer drives straight with the kit; the near one detours to the warehouse.
    assert (first["engineer_id"], first["pickup_warehouse_id"]) == (w.far, None)
    assert (second["engineer_id"], second["pickup_warehouse_id"]) == (w.near, w.warehouse)
    assert second["detour_km"] > 0
    assert first["eta_min"] < second["eta_min"]
    assert {p["part_no"] for p in found["parts"]} == {
        p.part_no for p in KB.diagnose(found["fault"]).parts
    }
    async with pool.acquire() as conn:
        assert await _reserved(conn, w.far) == 0
        assert await conn.fetchval("SELECT count(*) FROM orders WHERE alarm_id = $1", alarm_id) == 0
    result = await dispatch_alarm(
        pool, KB, SlaPolicy(), alarm_id, actor="expert:t", engineer_id=None, note=""
    )
    assert result.chosen.engineer_id == first["engineer_id"]


async def test_faults_list_the_knowledge_base(pool: asyncpg.Pool) -> None:
    async with api_client(pool, knowledge=KB) as http:
        found = (await http.get("/v1/faults", headers=AS_ADMIN)).json()
    assert {f["fault"] for f in found} == set(KB.faults)
    titles = {f["fault"]: f["title"] for f in found}
    assert titles["low_oil_pressure"] == KB.diagnose("low_oil_pressure").title


async def test_the_board_reads_the_timers_of_open_orders_only(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        w = await build(conn)
        open_alarm = await raise_alarm(conn, w.machine_id)
    kept = await dispatch_alarm(
        pool, KB, SlaPolicy(), open_alarm, actor="expert:t", engineer_id=None, note=""
    )
    async with pool.acquire() as conn:
        w2 = await build(conn)
        gone_alarm = await raise_alarm(conn, w2.machine_id)
    gone = await dispatch_alarm(
        pool, KB, SlaPolicy(), gone_alarm, actor="expert:t", engineer_id=None, note=""
    )
    async with api_client(pool, knowledge=KB) as http:
        cancel = await http.post(
            f"/v1/orders/{gone.order.order_id}/cancel", json={"reason": "t"}, headers=AS_ADMIN
        )
        assert cancel.status_code == 200, cancel.text
        timers = (await http.get("/v1/sla/timers", headers=AS_ADMIN)).json()
    order_ids = {t["order_id"] for t in timers}
    assert kept.order.order_id in order_ids
    assert gone.order.order_id not in order_ids
    mine = [t for t in timers if t["order_id"] == kept.order.order_id]
    assert {t["kind"] for t in mine} >= {"callback_check", "arrival_deadline"}
    assert all(t["verdict"] is None and t["fired_at"] is None for t in mine)
    assert [t["due_at"] for t in timers] == sorted(t["due_at"] for t in timers)


async def _raise_anomaly(conn: asyncpg.Connection, machine_id: str, detail: str) -> int:
    event = AlarmEvent(
        machine_id, UNEXPLAINED_ANOMALY, Transition.RAISED, 1_795_000_000_000, detail=detail
    )
    async with conn.transaction():
        (change,) = await alarm_store.apply_events(
            conn, [event], lambda f: (KB.diagnose(f).severity, KB.diagnose(f).title)
        )
    return change.alarm_id


async def test_an_anomaly_mapped_to_a_fault_is_suggested_and_dispatched_with_its_parts(
    pool: asyncpg.Pool,
) -> None:
    oil = KB.diagnose(LOW_OIL_PRESSURE)
    kit = sorted((p.part_no, p.quantity) for p in oil.parts)
    async with pool.acquire() as conn:
        w = await build(conn)  # engineers with low oil pressure's skills, the far one its kit
        alarm_id = await _raise_anomaly(conn, w.machine_id, RELATION_DETAIL)
        plain_world = await build(conn)
        plain_id = await _raise_anomaly(conn, plain_world.machine_id, "battery_v z=+9.0")
    async with api_client(pool, knowledge=KB) as http:
        page = (await http.get(f"/v1/alarms/{alarm_id}", headers=AS_ADMIN)).json()
        found = (await http.get(f"/v1/alarms/{alarm_id}/suggestions", headers=AS_ADMIN)).json()
        plain = (await http.get(f"/v1/alarms/{plain_id}/suggestions", headers=AS_ADMIN)).json()
        sent = await http.post(f"/v1/alarms/{alarm_id}/dispatch", json={}, headers=AS_ADMIN)
        assert sent.status_code == 201, sent.text
        order = sent.json()
    assert page["diagnosis"]["fault"] == LOW_OIL_PRESSURE
    assert {p["part_no"] for p in page["diagnosis"]["parts"]} == {p for p, _ in kit}
    # The suggestions and the order need what the alarm page shows, not the anomaly's needs,
    # and the order is for the mapped fault (KPIs by fault count it there).
    assert found["fault"] == LOW_OIL_PRESSURE
    assert sorted(found["skills"]) == sorted(oil.skills)
    assert sorted((p["part_no"], p["quantity"]) for p in found["parts"]) == kit
    assert found["candidates"][0]["engineer_id"] == w.far
    assert order["engineer_id"] == w.far
    assert order["fault"] == LOW_OIL_PRESSURE
    assert sorted(order["skills"]) == sorted(oil.skills)
    assert sorted((p["part_no"], p["quantity"]) for p in order["parts"]) == kit
    # An anomaly whose detail names no mapped relation keeps the anomaly's own needs.
    anomaly = KB.diagnose(UNEXPLAINED_ANOMALY)
    assert sorted(plain["skills"]) == sorted(anomaly.skills)
    assert [p["part_no"] for p in plain["parts"]] == [p.part_no for p in anomaly.parts]


async def test_after_an_experts_correction_the_page_and_the_order_follow_the_confirmed_fault(
    pool: asyncpg.Pool,
) -> None:
    oil = KB.diagnose(LOW_OIL_PRESSURE)
    async with pool.acquire() as conn:
        w = await build(conn)  # engineers with low oil pressure's skills, the far one its kit
        alarm_id = await _raise_anomaly(conn, w.machine_id, "battery_v z=+9.0")
    async with api_client(pool, knowledge=KB) as http:
        corrected = await http.post(
            f"/v1/alarms/{alarm_id}/confirm", json={"fault": LOW_OIL_PRESSURE}, headers=AS_ADMIN
        )
        assert corrected.status_code == 200, corrected.text
        page = (await http.get(f"/v1/alarms/{alarm_id}", headers=AS_ADMIN)).json()
        zh = (await http.get(f"/v1/alarms/{alarm_id}?lang=zh-CN", headers=AS_ADMIN)).json()
        sent = await http.post(f"/v1/alarms/{alarm_id}/dispatch", json={}, headers=AS_ADMIN)
        assert sent.status_code == 201, sent.text
    assert page["alarm"]["fault"] == UNEXPLAINED_ANOMALY  # what was raised stays on record
    assert page["diagnosis"]["fault"] == LOW_OIL_PRESSURE
    assert page["diagnosis"]["title"] == oil.title
    assert zh["diagnosis"]["title"] == KB.diagnose(LOW_OIL_PRESSURE, "zh-CN").title
    assert sent.json()["fault"] == LOW_OIL_PRESSURE
    assert sorted(sent.json()["skills"]) == sorted(oil.skills)


async def test_a_mapped_anomaly_is_confirmed_as_mapped_and_can_be_corrected_to_unexplained(
    pool: asyncpg.Pool,
) -> None:
    async with pool.acquire() as conn:
        w = await build(conn)
        confirmed_id = await _raise_anomaly(conn, w.machine_id, RELATION_DETAIL)
        other = await build(conn)
        overruled_id = await _raise_anomaly(conn, other.machine_id, RELATION_DETAIL)
    async with api_client(pool, knowledge=KB) as http:
        confirmed = await http.post(f"/v1/alarms/{confirmed_id}/confirm", headers=AS_ADMIN)
        assert confirmed.status_code == 200, confirmed.text
        kept = (await http.get(f"/v1/alarms/{confirmed_id}", headers=AS_ADMIN)).json()
        overruled = await http.post(
            f"/v1/alarms/{overruled_id}/confirm",
            json={"fault": UNEXPLAINED_ANOMALY, "note": "the sender reads low, not the pump"},
            headers=AS_ADMIN,
        )
        assert overruled.status_code == 200, overruled.text
        page = (await http.get(f"/v1/alarms/{overruled_id}", headers=AS_ADMIN)).json()
        found = (await http.get(f"/v1/alarms/{overruled_id}/suggestions", headers=AS_ADMIN)).json()
        trails = [
            (await http.get(f"/v1/alarms/{i}/events", headers=AS_ADMIN)).json()
            for i in (confirmed_id, overruled_id)
        ]
    # Confirming confirms what the expert read: the mapped fault, with its relation's title.
    assert confirmed.json()["confirmed_fault"] == LOW_OIL_PRESSURE
    assert kept["diagnosis"]["fault"] == LOW_OIL_PRESSURE
    assert kept["diagnosis"]["title"].startswith(KB.diagnose(LOW_OIL_PRESSURE).title + ": ")
    # Corrected to unexplained, the mapping is overruled on the page and in the order.
    assert overruled.json()["confirmed_fault"] == UNEXPLAINED_ANOMALY
    assert page["diagnosis"]["fault"] == UNEXPLAINED_ANOMALY
    assert page["diagnosis"]["title"] == KB.diagnose(UNEXPLAINED_ANOMALY).title
    # An order would be for it too (this world's engineers lack its telematics skill).
    assert found["fault"] == UNEXPLAINED_ANOMALY
    assert sorted(found["skills"]) == sorted(KB.diagnose(UNEXPLAINED_ANOMALY).skills)
    verdicts = [
        [e["action"] for e in t if e["action"] in ("confirmed", "corrected")] for t in trails
    ]
    assert verdicts == [["confirmed"], ["corrected"]]


async def test_a_correction_to_an_unknown_code_is_refused_and_an_old_one_still_shows(
    pool: asyncpg.Pool,
) -> None:
    async with pool.acquire() as conn:
        w = await build(conn)
        alarm_id = await _raise_anomaly(conn, w.machine_id, "battery_v z=+9.0")
    async with api_client(pool, knowledge=KB) as http:
        refused = await http.post(
            f"/v1/alarms/{alarm_id}/confirm", json={"fault": "no_such_fault"}, headers=AS_ADMIN
        )
        dtc = await http.post(
            f"/v1/alarms/{alarm_id}/confirm", json={"fault": "dtc_100_1"}, headers=AS_ADMIN
        )
        assert refused.status_code == 422, refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert "no_such_fault" in refused.json()["detail"]
        assert dtc.status_code == 200, dtc.text
        # A correction stored under a knowledge base that knew the code, read under one that
        # does not: the page shows the raised fault's diagnosis instead of failing.
        async with pool.acquire() as conn:
            await conn.execute(
                "UPDATE alarms SET confirmed_fault = 'retired_fault' WHERE alarm_id = $1", alarm_id
            )
        page = await http.get(f"/v1/alarms/{alarm_id}", headers=AS_ADMIN)
    assert page.status_code == 200, page.text
    assert page.json()["diagnosis"]["fault"] == UNEXPLAINED_ANOMALY
