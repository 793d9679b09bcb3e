"""Service KPIs from a scripted set of orders with known answers, through the real order flow,
timers, desk tasks and the HTTP API.

June 2023, region R, critical alarms (arrival deadline 4 h), t0 = 2023-06-05 08:00 UTC:

| order | machine | created  | contact | on site | completed | notes                          |
|-------|---------|----------|---------|---------|-----------|--------------------------------|
| O1    | M1      | t0       | +10 min | +1 h    | +3 h      | closed; desk call 5 min late-ok|
| O2    | M2      | t0+1 h   | none    | +30 h   | +50 h     | desk call 1 h after due        |
| O3    | M3      | t0+2 h   | -       | -       | -         | cancelled after 5 min          |
| O4    | M1      | t0+5 d   | +5 min  | +2 h    | +4 h      | same alarm as O1: a repeat     |

Alarms resolved in June: M1 dispatched, M2 remote, M3 remote, M5 no fault (not counted).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import numpy as np
import pytest

from diagnosis.knowledge import KnowledgeBase
from dispatch.orders import (
    Accept,
    Arrive,
    Cancel,
    Close,
    Command,
    Complete,
    ContactCustomer,
    StartTravel,
)
from dispatch.sla import SlaPolicy
from telematics.quality.kpis import spread
from telematics.services.dispatching import act, dispatch_alarm
from telematics.services.sla_worker import fire_due
from telematics.store import desk
from tests.conftest import unique
from tests.telematics.harness import ADMIN_TOKEN, api_client
from tests.telematics.test_orders import build, raise_alarm

KB = KnowledgeBase.load()
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
POLICY = SlaPolicy()
T0 = datetime(2023, 6, 5, 8, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)
H = timedelta(hours=1)


async def _order(
    pool: asyncpg.Pool, alarm: int, at: datetime, steps: list[tuple[timedelta, Command]]
) -> tuple[int, str]:
    made = await dispatch_alarm(pool, KB, POLICY, alarm, actor="t", engineer_id=None, note="",
                                now=at)  # fmt: skip
    oid = made.order.order_id
    for offset, command in steps:
        await act(pool, POLICY, oid, command, actor="t", now=at + offset)
    return oid, str(made.order.order.engineer_id)


def _visit(arrive: timedelta, complete: timedelta) -> list[tuple[timedelta, Command]]:
    return [(arrive - 20 * MIN, Accept()), (arrive - 10 * MIN, StartTravel()), (arrive, Arrive()),
            (complete, Complete())]  # fmt: skip


@pytest.fixture(scope="module")
async def scripted(pool: asyncpg.Pool) -> dict[str, object]:
    region = unique("KR")
    async with pool.acquire() as conn:
        worlds = [await build(conn) for _ in range(4)]
        alarms = [await raise_alarm(conn, w.machine_id) for w in worlds]
    async with api_client(pool) as http:
        for w in worlds:
            put = await http.put(f"/v1/machines/{w.machine_id}/region", json={"region": region},
                                 headers=ADMIN)  # fmt: skip
            assert put.status_code == 200, put.text
    o1, e1 = await _order(pool, alarms[0], T0, [
        (10 * MIN, ContactCustomer("called")), *_visit(1 * H, 3 * H), (4 * H, Close()),
    ])  # fmt: skip
    o2, e2 = await _order(pool, alarms[1], T0 + H, _visit(30 * H, 50 * H))
    o3, _ = await _order(pool, alarms[2], T0 + 2 * H, [(5 * MIN, Cancel("duplicate"))])
    o4, e4 = await _order(pool, alarms[0], T0 + timedelta(days=5), [
        (5 * MIN, ContactCustomer("called")), *_visit(2 * H, 4 * H),
    ])  # fmt: skip
    ids = [o1, o2, o3, o4]
    await fire_due(pool, worker_id="kpi", now=T0 + timedelta(days=60), limit=10_000)
    async with pool.acquire() as conn:
        tasks = {
            t.order_id: t
            for oid in ids
            for t in await desk.list_tasks(
                conn, state="open", kind="callback_check", order_id=oid, after_id=None, limit=10
            )
        }
        assert sorted(tasks) == [o1, o2, o4]  # the cancelled order's callback was moot
        for oid, late in ((o1, 5 * MIN), (o2, H)):
            await desk.record_result(conn, tasks[oid].task_id, reached=True, said="", follow_up="",
                                     engineer_called=True, by="t",
                                     now=tasks[oid].due_at + late)  # fmt: skip
        june = T0 + timedelta(days=10)
        for alarm, resolution in zip(alarms, ("dispatched", "remote", "remote", "no_fault"),
                                     strict=True):  # fmt: skip
            await conn.execute(
                "UPDATE alarms SET resolution = $2, resolved_at = $3 WHERE alarm_id = $1",
                alarm, resolution, june,
            )  # fmt: skip
    return {"region": region, "ids": ids, "engineers": {o1: e1, o2: e2, o4: e4}}


def _value(kpis: dict[str, object], name: str) -> tuple[object, object, object]:
    rate = kpis[name]
    assert isinstance(rate, dict)
    return rate["numerator"], rate["denominator"], rate["value"]


async def test_every_kpi_of_a_scripted_month(
    pool: asyncpg.Pool, scripted: dict[str, object]
) -> None:
    async with api_client(pool) as http:
        got = await http.get("/v1/service/kpis", headers=ADMIN, params={
            "period": "month", "from": "2023-06-01T00:00:00Z", "to": "2023-08-01T00:00:00Z",
            "region": scripted["region"],
        })  # fmt: skip
    assert got.status_code == 200, got.text
    june, july = got.json()["periods"]
    k = june["overall"]
    assert k["orders"] == 4
    assert _value(k, "remote_resolution_rate") == (2, 3, pytest.approx(2 / 3, abs=1e-6))
    assert _value(k, "callback_compliance") == (1, 3, pytest.approx(1 / 3, abs=1e-6))
    assert _value(k, "contacted_within_15_min") == (2, 3, pytest.approx(2 / 3, abs=1e-6))
    assert _value(k, "arrival_within_deadline") == (2, 3, pytest.approx(2 / 3, abs=1e-6))
    assert _value(k, "completion_within_48_h") == (2, 3, pytest.approx(2 / 3, abs=1e-6))
    assert _value(k, "first_time_fix_rate") == (2, 3, pytest.approx(2 / 3, abs=1e-6))
    # Response [60, 1800, 120] min: mean 660, p90 at rank 1.8 -> 120 + 0.8 x 1680 = 1464.
    assert k["response_min"] == {"n": 3, "mean": 660.0, "p90": 1464.0}
    # Repair [120, 1200, 120] min: mean 480, p90 = 120 + 0.8 x 1080 = 984.
    assert k["repair_min"] == {"n": 3, "mean": 480.0, "p90": 984.0}
    (only,) = june["regions"]
    assert only["region"] == scripted["region"]
    assert {key: only[key] for key in k} == k
    engineers = scripted["engineers"]
    assert isinstance(engineers, dict)
    assert {e["engineer_id"] for e in june["engineers"]} >= set(engineers.values())
    assert sum(e["orders"] for e in june["engineers"]) == 4
    assert all(e["remote_resolution_rate"]["denominator"] == 0 for e in june["engineers"])
    assert july["overall"]["orders"] == 0
    assert july["overall"]["first_time_fix_rate"]["value"] is None
    assert july["overall"]["response_min"] == {"n": 0, "mean": None, "p90": None}


async def test_kpis_by_quarter_and_engineer(
    pool: asyncpg.Pool, scripted: dict[str, object]
) -> None:
    ids, engineers = scripted["ids"], scripted["engineers"]
    assert isinstance(ids, list)
    assert isinstance(engineers, dict)
    async with api_client(pool) as http:
        quarter = await http.get("/v1/service/kpis", headers=ADMIN, params={
            "period": "quarter", "from": "2023-04-01T00:00:00Z", "to": "2023-07-01T00:00:00Z",
            "region": scripted["region"],
        })  # fmt: skip
        (q2,) = quarter.json()["periods"]
        assert q2["period_start"] == "2023-04-01T00:00:00Z"
        assert q2["overall"]["orders"] == 4
        late = await http.get("/v1/service/kpis", headers=ADMIN, params={
            "from": "2023-06-01T00:00:00Z", "to": "2023-07-01T00:00:00Z",
            "engineer_id": engineers[ids[1]],
        })  # fmt: skip
        (month,) = late.json()["periods"]
        o2 = month["overall"]
        assert _value(o2, "arrival_within_deadline")[:2] == (0, 1)
        assert o2["response_min"]["mean"] == 1800.0
        assert o2["remote_resolution_rate"]["denominator"] == 0  # alarms have no engineer
        for params in (
            {"period": "week"},
            {"from": "2023-06-01T00:00:00Z", "to": "2023-05-01T00:00:00Z"},
            {"from": "1000-01-01T00:00:00Z", "to": "9000-01-01T00:00:00Z"},
            {"region": "bad region"},
            {"to": "not a time"},
        ):
            refused = await http.get("/v1/service/kpis", headers=ADMIN, params=params)
            assert refused.status_code == 422, params


def test_percentiles_interpolate_between_order_statistics() -> None:
    assert spread([10.0]) == spread([10.0])
    one = spread([10.0])
    assert (one.mean, one.p90) == (10.0, 10.0)
    s = spread([float(v) for v in range(1, 11)])
    assert s.p90 == pytest.approx(9.1)
    values = [float(v) for v in np.random.default_rng(5).exponential(60.0, 37)]
    got = spread(values)
    assert got.p90 == pytest.approx(float(np.percentile(values, 90)), abs=1e-9)
    assert got.mean == pytest.approx(float(np.mean(values)), abs=1e-9)


async def test_the_ends_of_the_calendar_are_answered_not_failed(pool: asyncpg.Pool) -> None:
    edges = (
        {"to": "0001-01-02T00:00:00Z"},
        {"from": "9999-12-01T00:00:00Z", "to": "9999-12-30T00:00:00Z", "period": "year"},
        {"from": "0001-01-02T00:00:00Z", "to": "0001-02-01T00:00:00Z"},
    )
    async with api_client(pool) as http:
        for route in ("/v1/service/kpis", "/v1/satisfaction"):
            for params in edges:
                got = await http.get(route, headers=ADMIN, params=params)
                assert got.status_code == 200, (route, params, got.text)
                assert got.json()["periods"]


async def test_a_time_without_an_offset_is_refused_not_failed(pool: asyncpg.Pool) -> None:
    naive = (
        {"from": "2026-01-01T00:00:00"},
        {"from": "2026-01-01"},
        {"to": "2026-01-01"},
        {"from": "2026-01-01T00:00:00Z", "to": "2026-06-01T00:00:00"},
    )
    async with api_client(pool) as http:
        for route in ("/v1/service/kpis", "/v1/satisfaction"):
            for params in naive:
                got = await http.get(route, headers=ADMIN, params=params)
                assert got.status_code == 422, (route, params, got.text)
                assert got.headers["content-type"].startswith("application/problem+json")
                assert "UTC offset" in got.text
