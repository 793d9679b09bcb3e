"""A scripted day through the real broker, gateway, diagnoser, rollup and HTTP API.

Machine day (UTC), a reading a minute, tank 400 l:
  06:00-08:00 working (1800 rpm, 60 % load), fuel 60 -> 50 %, engine hours 1000 -> 1002
  08:00-08:30 idle (800 rpm, 10 % load), fuel 50 -> 49 %, hours -> 1002.5
  08:30-10:00 off; fuel noise 49.0/49.2 %; refuel at 09:00: 49 -> 89 % (+40 % = 160 l)
  10:00-11:00 working, fuel 89 -> 84 %, hours -> 1003.5; driving 10:00-10:10 (10 x 0.001 deg)
  11:00-12:00 working, fuel 84 -> 79 %, hours -> 1004.5: published LATE, after the day
  12:00-12:10 idle, no load reported (800 rpm: at or below idle_rpm_max), fuel -> 78.8 %
  12:10 stop; nothing until 14:00 (unknown, not running)
  14:00-14:10 idle; at 14:05 the counter reads 12.0 (backwards: flagged, not summed)
By hand: working 4 h (2 h 59 min before the late batch), idle 0.5 + 1/6 + 1/6 h, engine hours
(1004.5 + 1/6 - 1000) + 4/60 + 5/60 = 4.8167 h, fuel used (60 - 49) + (89 - 78.8) = 21.2 % =
84.8 l, one refuel of 160 l at 09:00, distance 10 x 111.195 m, known 06:00-12:10 and
14:00-14:10 = 22,800 s of 86,400 (26.39 %), utilisation 4 h of an 8 h shift = 50 %.
"""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest

from diagnosis.engine import Engine
from diagnosis.knowledge import KnowledgeBase
from diagnosis.rules import RuleBook
from telematics.base.metrics import Metrics
from telematics.ingest.gateway import Gateway
from telematics.ingest.mqtt import MqttEndpoint
from telematics.services.diagnose import Diagnoser
from telematics.store.registry import SourceDirectory, add_machine
from telematics.store.tokens import Role, create_token
from telematics.summaries.rollup import Rollup
from tests.conftest import unique
from tests.telematics.harness import ADMIN_TOKEN, api_client, gateway_config, publish

MIN = 60_000
NAN = None


def day_start() -> datetime:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=2)


def script(t0: int) -> tuple[list[dict[str, object]], list[dict[str, object]]]:  # noqa: C901 - the day, phase by phase
    """(live readings, late readings) of the day; t0 = its midnight, epoch ms."""
    live: list[dict[str, object]] = []
    late: list[dict[str, object]] = []
    lat = 31.2

    def add(
        out: list[dict[str, object]],
        minute: int,
        rpm: float,
        load: float | None,
        fuel: float,
        hours: float,
    ) -> None:
        row: dict[str, object] = {
            "ts": t0 + minute * MIN,
            "engine_speed_rpm": rpm,
            "fuel_level_pct": round(fuel, 4),
            "engine_hours": round(hours, 4),
            "lat": lat,
            "lon": 121.5,
        }
        if load is not None:
            row["load_pct"] = load
        out.append(row)

    for k in range(120):  # 06:00-07:59 working
        add(live, 360 + k, 1800, 60, 60 - k / 12, 1000 + k / 60)
    for k in range(30):  # 08:00-08:29 idle
        add(live, 480 + k, 800, 10, 50 - k / 30, 1002 + k / 60)
    for k in range(90):  # 08:30-09:59 off, noise, refuel 09:01-09:04
        fuel = 49.0 + (0.2 if k % 2 else 0.0) if k < 30 else 49.0
        fuel = {31: 60.0, 32: 70.0, 33: 80.0}.get(k, 89.0 if k >= 34 else fuel)
        add(live, 510 + k, 0, 0, fuel, 1002.5)
    for k in range(60):  # 10:00-10:59 working, driving the first 10 minutes
        if 1 <= k <= 10:
            lat += 0.001
        add(live, 600 + k, 1800, 60, 89 - k / 12, 1002.5 + k / 60)
    for k in range(60):  # 11:00-11:59 working: published late
        add(late, 660 + k, 1800, 60, 84 - k / 12, 1003.5 + k / 60)
    for k in range(10):  # 12:00-12:09 idle, no load reported
        add(live, 720 + k, 800, None, 79 - k * 0.02, 1004.5 + k / 60)
    add(live, 730, 0, 0, 78.8, 1004.5 + 10 / 60)
    for k in range(10):  # 14:00-14:09 idle, the counter replaced at 14:05
        hours = 1004.5 + 10 / 60 + k / 60 if k < 5 else 12.0 + (k - 5) / 60
        add(live, 840 + k, 800, 10, 78.8, hours)
    add(live, 850, 0, 0, 78.8, 12.0 + 5 / 60)
    return live, late


@pytest.fixture
async def pipeline(
    pool: asyncpg.Pool, mqtt_endpoint: MqttEndpoint
) -> AsyncIterator[tuple[Gateway, Rollup]]:
    """Gateway -> diagnoser -> rollup, as the service wires them."""
    rollup = Rollup(pool, RuleBook.load(), max_gap_s=300, flush_interval_s=0)
    diagnoser = Diagnoser(
        pool, Engine(RuleBook.load()), KnowledgeBase.load(), Metrics(), consumers=[rollup]
    )
    gateway = Gateway(
        gateway_config(mqtt_endpoint),
        pool,
        SourceDirectory(),
        Metrics(),
        after_commit=lambda d, seq: diagnoser.submit(d.readings, seq),
        backpressure=diagnoser.room,
    )
    stop, gateway_done = asyncio.Event(), asyncio.Event()

    async def run_gateway() -> None:
        try:
            await gateway.run(stop)
        finally:
            gateway_done.set()

    tasks = [asyncio.create_task(run_gateway()), asyncio.create_task(diagnoser.run(gateway_done))]
    await asyncio.wait_for(gateway.connected.wait(), 10)
    try:
        yield gateway, rollup
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 30)


async def applied(pool: asyncpg.Pool, machine: str, ts_ms: int, count: int) -> None:
    """Wait until the rollup's tail is at `ts_ms` and `count` readings are stored."""
    for _ in range(400):
        row = await pool.fetchrow(
            "SELECT (SELECT round(extract(epoch FROM ts) * 1000) FROM summary_tails"
            " WHERE machine_id = $1) AS tail, (SELECT count(*) FROM readings"
            " WHERE machine_id = $1) AS n",
            machine,
        )
        if row["tail"] == ts_ms and row["n"] == count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"rollup did not reach {ts_ms}: {row}")


async def send(endpoint: MqttEndpoint, machine: str, rows: list[dict[str, object]]) -> None:
    topic = f"machines/{machine}/telemetry"
    await publish(
        endpoint, [(topic, {"readings": rows[i : i + 60]}) for i in range(0, len(rows), 60)]
    )


def one_day(answer: httpx.Response) -> dict[str, object]:
    assert answer.status_code == 200, answer.text
    (bucket,) = answer.json()["buckets"]
    assert isinstance(bucket, dict)
    return bucket


async def test_a_scripted_day_gives_the_figures_worked_out_by_hand(
    pool: asyncpg.Pool, mqtt_endpoint: MqttEndpoint, pipeline: tuple[Gateway, Rollup]
) -> None:
    machine, customer = unique("SD"), unique("CSD")
    async with pool.acquire() as conn:
        await add_machine(
            conn, machine, "SY215C", customer, None, machine_class="excavator", fuel_tank_l=400.0
        )
        _, token = await create_token(conn, Role.CUSTOMER, customer, "summary test")
    midnight = day_start()
    day = midnight.date().isoformat()
    live, late = script(int(midnight.timestamp() * 1000))
    own = {"Authorization": f"Bearer {token}"}
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    path = f"/v1/machines/{machine}/summary"
    async with api_client(pool) as http:
        put = await http.put(
            f"/v1/customers/{customer}/settings",
            json={"tz": "Asia/Shanghai", "shift_hours_per_day": 8},
            headers=own,
        )
        assert put.status_code == 200, put.text
        await send(mqtt_endpoint, machine, live)
        await applied(pool, machine, int(live[-1]["ts"]), len(live))  # type: ignore[call-overload]
        before = one_day(await http.get(path, params={"from": day, "to": day}, headers=own))
        # 10:59 -> 12:00 is a gap: unknown until the late hour fills it.
        assert before["working_hours"] == pytest.approx(3.0 - 1 / 60, abs=0.005)
        assert before["hours_by_hour"][19] == 0  # 11:00 UTC is 19:00 in Shanghai

        await send(mqtt_endpoint, machine, late)  # the buffered hour, after the day
        await applied(pool, machine, int(live[-1]["ts"]), len(live) + len(late))  # type: ignore[call-overload]
        for _ in range(200):  # the late batch is applied after its readings are stored
            b = one_day(await http.get(path, params={"from": day, "to": day}, headers=own))
            if b["working_hours"] > 3.5:
                break
            await asyncio.sleep(0.05)
        assert b["working_hours"] == pytest.approx(4.0, abs=0.005)
        assert b["idle_hours"] == pytest.approx(0.5 + 1 / 6 + 1 / 6, abs=0.005)
        assert b["engine_hours"] == pytest.approx(4.5 + 1 / 6 + 9 / 60, abs=0.005)
        assert b["fuel_used_l"] == pytest.approx(84.8, abs=0.005)
        assert [(r["litres"], r["ts"][11:19]) for r in b["refuels"]] == [(160.0, "17:00:00")]
        assert b["meter_anomalies"] == 1
        assert b["distance_km"] == pytest.approx(1.112, abs=0.001)
        assert b["utilisation_pct"] == pytest.approx(50.0, abs=0.01)
        assert b["coverage_pct"] == pytest.approx(100 * 22_800 / 86_400, abs=0.01)
        assert b["first_start"][11:19] == "14:00:00"  # 06:00 UTC, in Shanghai
        assert b["last_stop"][11:19] == "22:10:00"
        assert b["start"].endswith("+08:00")
        by_hour = b["hours_by_hour"]
        assert [h for h, v in enumerate(by_hour) if v] == [14, 15, 18, 19]
        assert sum(by_hour) == pytest.approx(4.0, abs=0.005)

        # The same day in UTC comes from the slots: the same figures, hours shifted.
        utc = one_day(
            await http.get(path, params={"from": day, "to": day, "tz": "UTC"}, headers=own)
        )
        for key in ("working_hours", "idle_hours", "engine_hours", "fuel_used_l", "coverage_pct"):
            assert utc[key] == pytest.approx(b[key], abs=0.005)
        assert [h for h, v in enumerate(utc["hours_by_hour"]) if v] == [6, 7, 10, 11]
        # +05:45: local hours are unions of 15-minute slots.
        nepal = one_day(
            await http.get(
                path, params={"from": day, "to": day, "tz": "Asia/Kathmandu"}, headers=own
            )
        )
        assert nepal["hours_by_hour"][11:18] == pytest.approx(
            [0.25, 1.0, 0.75, 0, 0.25, 1.0, 0.75], abs=0.005
        )

        # A week and a month hold the day whole; the fleet sums its one machine.
        for period in ("week", "month"):
            answer = await http.get(
                path, params={"period": period, "from": day, "to": day}, headers=own
            )
            assert one_day(answer)["working_hours"] == pytest.approx(4.0, abs=0.005)
        fleet = await http.get("/v1/fleet/summary", params={"from": day, "to": day}, headers=own)
        assert fleet.status_code == 200, fleet.text
        assert fleet.json()["buckets"][0]["fuel_used_l"] == pytest.approx(84.8, abs=0.005)
        assert fleet.json()["per_machine"][0]["machine_id"] == machine
        staff = await http.get(
            "/v1/fleet/summary",
            params={"customer_id": customer, "from": day, "to": day, "format": "csv"},
            headers=admin,
        )
        assert staff.headers["content-type"].startswith("text/csv")
        lines = list(csv.DictReader(io.StringIO(staff.text.split("\n\n")[0])))
        assert float(lines[0]["working_hours"]) == pytest.approx(4.0, abs=0.005)

        # Back to UTC: the day rows are rebuilt in the new zone.
        put = await http.put(f"/v1/customers/{customer}/settings", json={"tz": "UTC"}, headers=own)
        assert put.status_code == 200
        rebuilt = one_day(await http.get(path, params={"from": day, "to": day}, headers=own))
        assert rebuilt["hours_by_hour"] == utc["hours_by_hour"]
        assert rebuilt["start"].endswith("Z")
    row = await pool.fetchrow(
        "SELECT previous_h, value_h, reason FROM summary_meter_anomalies WHERE machine_id = $1",
        machine,
    )
    assert (row["reason"], row["value_h"]) == ("backwards", 12.0)
