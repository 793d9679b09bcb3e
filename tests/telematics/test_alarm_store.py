"""Alarm episodes and incidents in the real database, applied from engine events."""

from __future__ import annotations

import asyncpg
import httpx
from fastapi import FastAPI

from diagnosis.events import (
    ENGINE_OVERHEAT,
    LOW_OIL_PRESSURE,
    UNEXPLAINED_ANOMALY,
    AlarmEvent,
    Severity,
    Transition,
)
from diagnosis.knowledge import KnowledgeBase
from telematics.api.app import create_app
from telematics.api.context import ApiContext
from telematics.base.metrics import Metrics
from telematics.store import alarms
from telematics.store.registry import SourceDirectory, add_machine
from telematics.store.tokens import Role, create_token
from telematics.wire.decode import Limits
from tests.conftest import unique

T0 = 1_795_000_000_000


def describe(fault: str) -> tuple[Severity, str]:
    return (Severity.CRITICAL if fault == LOW_OIL_PRESSURE else Severity.MAJOR), fault.title()


def event(
    machine_id: str, fault: str, transition: Transition, ts_ms: int, **kw: object
) -> AlarmEvent:
    return AlarmEvent(machine_id, fault, transition, ts_ms, **kw)  # type: ignore[arg-type]


async def machine(conn: asyncpg.Connection, customer: str = "C1", model: str = "excavator") -> str:
    machine_id = unique("AL")
    await add_machine(conn, machine_id, model, customer, None)
    return machine_id


async def apply(conn: asyncpg.Connection, *events: AlarmEvent) -> list[alarms.AlarmChange]:
    async with conn.transaction():
        return await alarms.apply_events(conn, events, describe)


def alarm_app(pool: asyncpg.Pool) -> FastAPI:
    """The core HTTP app over `pool`, admin token `t`, with the shipped knowledge base."""
    return create_app(
        ApiContext(
            pool=pool,
            directory=SourceDirectory(),
            metrics=Metrics(),
            admin_token="t",
            limits=Limits(),
            knowledge=KnowledgeBase.load(),
        )
    )


async def test_a_raise_applied_twice_opens_one_episode(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        m = await machine(conn)
        raised = event(m, LOW_OIL_PRESSURE, Transition.RAISED, T0, value=80.0, worst=80.0,
                       higher_is_worse=False, count=3)  # fmt: skip
        first = await apply(conn, raised)
        second = await apply(conn, raised)
        assert [c.transition for c in first] == [Transition.RAISED]
        assert second == []
        found = await alarms.list_alarms(
            conn, alarms.AlarmFilter(machine_id=m), before_id=None, limit=10
        )
        assert len(found) == 1
        assert found[0].state == "open"
        assert found[0].severity is Severity.CRITICAL
        assert await alarms.open_faults(conn, [m]) == {m: {LOW_OIL_PRESSURE}}


async def test_updates_extend_the_episode_and_keep_the_worst_value(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        m = await machine(conn)
        common = {"higher_is_worse": False, "signal": "oil_pressure_kpa"}
        await apply(
            conn,
            event(
                m,
                LOW_OIL_PRESSURE,
                Transition.RAISED,
                T0,
                value=90.0,
                worst=90.0,
                count=2,
                **common,
            ),
        )
        await apply(
            conn,
            event(
                m,
                LOW_OIL_PRESSURE,
                Transition.UPDATED,
                T0 + 5000,
                value=85.0,
                worst=70.0,
                count=5,
                **common,
            ),
        )
        await apply(
            conn,
            event(
                m,
                LOW_OIL_PRESSURE,
                Transition.UPDATED,
                T0 + 9000,
                value=88.0,
                worst=75.0,
                count=4,
                **common,
            ),
        )
        (alarm,) = await alarms.list_alarms(
            conn, alarms.AlarmFilter(machine_id=m), before_id=None, limit=10
        )
        assert alarm.readings == 11
        assert alarm.worst_value == 70.0
        assert alarm.first_value == 90.0
        assert alarm.last_value == 88.0
        assert int(alarm.last_seen_at.timestamp() * 1000) == T0 + 9000


async def test_a_clear_closes_the_episode_and_its_incident(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        m = await machine(conn)
        await apply(conn, event(m, LOW_OIL_PRESSURE, Transition.RAISED, T0))
        await apply(conn, event(m, ENGINE_OVERHEAT, Transition.RAISED, T0 + 1000))
        found = await alarms.list_alarms(
            conn, alarms.AlarmFilter(machine_id=m), before_id=None, limit=10
        )
        assert len({a.incident_id for a in found}) == 1  # related alarms share one incident
        incident_id = found[0].incident_id

        changes = await apply(conn, event(m, LOW_OIL_PRESSURE, Transition.CLEARED, T0 + 60_000))
        assert [c.transition for c in changes] == [Transition.CLEARED]
        assert await apply(conn, event(m, LOW_OIL_PRESSURE, Transition.CLEARED, T0 + 60_000)) == []
        closed_at = await conn.fetchval(
            "SELECT closed_at FROM incidents WHERE incident_id = $1", incident_id
        )
        assert closed_at is None  # the overheat alarm is still open

        await apply(conn, event(m, ENGINE_OVERHEAT, Transition.CLEARED, T0 + 90_000))
        row = await conn.fetchrow(
            "SELECT closed_at, open_alarms, severity FROM incidents WHERE incident_id = $1",
            incident_id,
        )
        assert row["open_alarms"] == 0
        assert int(row["closed_at"].timestamp() * 1000) == T0 + 90_000
        assert row["severity"] == "critical"

        # A later raise of the same fault is a new episode in a new incident.
        await apply(conn, event(m, LOW_OIL_PRESSURE, Transition.RAISED, T0 + 200_000))
        found = await alarms.list_alarms(
            conn, alarms.AlarmFilter(machine_id=m, fault=LOW_OIL_PRESSURE), before_id=None, limit=10
        )
        assert [a.state for a in found] == ["open", "cleared"]
        assert found[0].incident_id != incident_id


async def test_an_update_for_an_episode_the_store_lacks_opens_one(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        m = await machine(conn)
        changes = await apply(
            conn, event(m, ENGINE_OVERHEAT, Transition.UPDATED, T0, value=110.0, worst=112.0)
        )
        assert [c.transition for c in changes] == [Transition.RAISED]
        assert await alarms.open_faults(conn, [m]) == {m: {ENGINE_OVERHEAT}}


async def test_the_queue_filters_by_customer_model_severity_and_state(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        customer = unique("CU")
        crane = await machine(conn, customer, "crane")
        excavator = await machine(conn, customer, "excavator")
        other = await machine(conn, unique("CU"), "crane")
        await apply(conn, event(crane, LOW_OIL_PRESSURE, Transition.RAISED, T0))
        await apply(conn, event(excavator, ENGINE_OVERHEAT, Transition.RAISED, T0))
        await apply(conn, event(other, LOW_OIL_PRESSURE, Transition.RAISED, T0))
        await apply(conn, event(excavator, ENGINE_OVERHEAT, Transition.CLEARED, T0 + 1000))

        def ids(found: list[alarms.Alarm]) -> set[str]:
            return {a.machine_id for a in found}

        async def query(**kw: object) -> set[str]:
            where = alarms.AlarmFilter(customer_id=customer, **kw)  # type: ignore[arg-type]
            return ids(await alarms.list_alarms(conn, where, before_id=None, limit=100))

        assert await query() == {crane, excavator}
        assert await query(model="crane") == {crane}
        assert await query(severity=Severity.CRITICAL) == {crane}
        assert await query(state="open") == {crane}
        assert await query(state="cleared") == {excavator}


async def test_acknowledging_twice_keeps_the_first(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        m = await machine(conn)
        (change,) = await apply(conn, event(m, LOW_OIL_PRESSURE, Transition.RAISED, T0))
        first = await alarms.acknowledge(conn, change.alarm_id, "expert-a")
        second = await alarms.acknowledge(conn, change.alarm_id, "expert-b")
        assert first.acknowledged_by == second.acknowledged_by == "expert-a"
        assert first.acknowledged_at == second.acknowledged_at
        assert first.acknowledged_at is not None


async def test_alarm_api_answers_404_for_an_unknown_alarm_and_filters_by_query(
    pool: asyncpg.Pool,
) -> None:
    app = alarm_app(pool)
    auth = {"Authorization": "Bearer t"}
    async with pool.acquire() as conn:
        m = await machine(conn, unique("CU"), "crane")
        (change,) = await apply(conn, event(m, LOW_OIL_PRESSURE, Transition.RAISED, T0))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
        missing = await http.get("/v1/alarms/999999999", headers=auth)
        assert missing.status_code == 404
        assert missing.headers["content-type"] == "application/problem+json"
        bad = await http.get("/v1/alarms", params={"severity": "urgent"}, headers=auth)
        assert bad.status_code == 422
        naive = await http.get("/v1/alarms", params={"since": "2026-01-01T00:00:00"}, headers=auth)
        assert naive.status_code == 422
        page = await http.get(
            "/v1/alarms", params={"machine_id": m, "severity": "critical"}, headers=auth
        )
        assert [a["alarm_id"] for a in page.json()["alarms"]] == [change.alarm_id]
        one = await http.get(f"/v1/alarms/{change.alarm_id}", headers=auth)
        assert one.json()["diagnosis"]["fault"] == LOW_OIL_PRESSURE
        assert one.json()["alarm"]["machine_id"] == m


async def test_an_anomaly_whose_relation_points_to_a_fault_gets_its_diagnosis(
    pool: asyncpg.Pool,
) -> None:
    app = alarm_app(pool)
    detail = (
        "anomaly score 1.40 above the model's threshold 1.00; relation broken: oil_pressure_kpa"
        " low for engine_speed_rpm (-8.2); oil_pressure_kpa z=-2.1"
    )
    async with pool.acquire() as conn:
        m = await machine(conn)
        (related,) = await apply(
            conn, event(m, UNEXPLAINED_ANOMALY, Transition.RAISED, T0, detail=detail)
        )
        n = await machine(conn)
        (plain,) = await apply(
            conn, event(n, UNEXPLAINED_ANOMALY, Transition.RAISED, T0, detail="battery_v z=+9")
        )
    transport = httpx.ASGITransport(app=app)
    auth = {"Authorization": "Bearer t"}
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
        one = (await http.get(f"/v1/alarms/{related.alarm_id}", headers=auth)).json()
        assert one["alarm"]["fault"] == UNEXPLAINED_ANOMALY
        assert one["diagnosis"]["fault"] == LOW_OIL_PRESSURE
        assert "oil_pressure_kpa low for engine_speed_rpm" in one["diagnosis"]["title"]
        zh = (
            await http.get(f"/v1/alarms/{related.alarm_id}", params={"lang": "zh-CN"}, headers=auth)
        ).json()
        assert zh["diagnosis"]["fault"] == LOW_OIL_PRESSURE
        assert zh["diagnosis"]["title"].endswith("\uff1a机油压力相对其关联信号偏低")
        assert "engine_speed_rpm" in zh["diagnosis"]["summary"]
        other = (await http.get(f"/v1/alarms/{plain.alarm_id}", headers=auth)).json()
        assert other["diagnosis"]["fault"] == UNEXPLAINED_ANOMALY


async def test_the_expert_workflow_leaves_an_audit_trail(pool: asyncpg.Pool) -> None:
    app = alarm_app(pool)
    async with pool.acquire() as conn:
        m = await machine(conn)
        (change,) = await apply(conn, event(m, LOW_OIL_PRESSURE, Transition.RAISED, T0))
        _, expert = await create_token(conn, Role.EXPERT, "ecc-zhang", "Zhang")
    auth = {"Authorization": f"Bearer {expert}"}
    base = f"/v1/alarms/{change.alarm_id}"
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
        assert (await http.post(f"{base}/ack", json={}, headers=auth)).json()[
            "acknowledged_by"
        ] == ("expert:ecc-zhang")
        corrected = await http.post(
            f"{base}/confirm",
            json={"fault": "dtc_100_18", "note": "sender, not pump"},
            headers=auth,
        )
        assert corrected.json()["confirmed_fault"] == "dtc_100_18"
        assert (await http.post(f"{base}/notes", json={"text": "operator on the phone"},
                                headers=auth)).status_code == 201  # fmt: skip
        assert (await http.post(f"{base}/escalate", json={"to_line": 2}, headers=auth)).json()[
            "support_line"
        ] == 2
        down = await http.post(f"{base}/escalate", json={"to_line": 2}, headers=auth)
        assert down.status_code == 422
        steps = ["checked the dipstick: level fine", "reseated the pressure sender connector"]
        resolved = await http.post(f"{base}/resolve", json={"steps": steps}, headers=auth)
        assert resolved.json()["resolution"] == "remote"
        twice = await http.post(f"{base}/resolve", json={"steps": steps}, headers=auth)
        assert twice.status_code == 409
        trail = (await http.get(f"{base}/events", headers=auth)).json()
    assert [e["action"] for e in trail] == [
        "acknowledged", "corrected", "note", "escalated", "resolved_remote",
    ]  # fmt: skip
    assert {e["actor"] for e in trail} == {"expert:ecc-zhang"}
    assert trail[-1]["detail"]["steps"] == steps


_COMPARED = (
    "fault, state, severity, raised_at, last_seen_at, readings, first_value, last_value, "
    "worst_value, occurrences, detail, deviations, incident_id IS NOT NULL AS in_incident"
)


async def _episodes(conn: asyncpg.Connection, machine_ids: list[str]) -> list[list[object]]:
    rows = []
    for m in machine_ids:
        found = await conn.fetch(
            f"SELECT {_COMPARED} FROM alarms WHERE machine_id = $1 ORDER BY alarm_id", m
        )
        incident = await conn.fetchrow(
            "SELECT opened_at, last_seen_at, severity FROM incidents WHERE machine_id = $1", m
        )
        rows.append([[tuple(r) for r in found], None if incident is None else tuple(incident)])
    return rows


async def test_a_batch_of_updates_applies_as_one_at_a_time_would(pool: asyncpg.Pool) -> None:
    """A batch's UPDATED events go to the store in one statement (`_update_open`): the rows
    are those that applying them one by one gives, an update with no open episode opens one,
    and a second update of an episode in the same batch sees the first."""

    def story(a: str, b: str, c: str) -> list[list[AlarmEvent]]:
        raised = [
            event(a, LOW_OIL_PRESSURE, Transition.RAISED, T0, value=80.0, worst=80.0,
                  higher_is_worse=False, count=3),
            event(b, ENGINE_OVERHEAT, Transition.RAISED, T0, value=106.0, worst=106.0, count=2),
        ]  # fmt: skip
        batch = [
            event(a, LOW_OIL_PRESSURE, Transition.UPDATED, T0 + 60_000, value=75.0, worst=70.0,
                  higher_is_worse=False, count=50),
            event(b, ENGINE_OVERHEAT, Transition.UPDATED, T0 + 60_000, value=104.0, worst=104.0,
                  count=40, detail="coolant 104 C"),
            event(c, UNEXPLAINED_ANOMALY, Transition.UPDATED, T0 + 60_000, value=2.0, worst=2.5,
                  count=5, deviations=(("oil_pressure_kpa", -9.1),)),
            event(a, LOW_OIL_PRESSURE, Transition.UPDATED, T0 + 90_000, value=72.0, worst=72.0,
                  higher_is_worse=False, count=30),
            event(b, ENGINE_OVERHEAT, Transition.CLEARED, T0 + 120_000),
        ]  # fmt: skip
        return [raised, batch]

    async with pool.acquire() as conn:
        together = [await machine(conn) for _ in range(3)]
        alone = [await machine(conn) for _ in range(3)]
        for events in story(*together):
            changes = await apply(conn, *events)
        opened = [c for c in changes if c.transition is Transition.RAISED]
        assert [(c.machine_id, c.fault) for c in opened] == [(together[2], UNEXPLAINED_ANOMALY)]
        for events in story(*alone):
            for e in events:
                await apply(conn, e)
        assert await _episodes(conn, together) == await _episodes(conn, alone)
        (a,) = await conn.fetch(
            "SELECT readings, worst_value, last_value FROM alarms WHERE machine_id = $1",
            together[0],
        )
        assert tuple(a) == (83, 70.0, 72.0)
