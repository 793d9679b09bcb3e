"""Maintenance reminders reach the notifications: an item going due soon and then overdue
becomes one notice event each (migration 015's trigger on `maintenance_alerts`), fanned out to
the customer's subscription with the item's name and due date in the subscriber's language."""

from __future__ import annotations

import asyncpg
import orjson

from telematics.base.config import Settings
from telematics.maintenance import job
from telematics.notices import worker
from tests.telematics.harness import ADMIN_TOKEN, api_client
from tests.telematics.test_maintenance import ago, planned_machine, read_hours

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


async def events_of(pool: asyncpg.Pool, machine_id: str) -> list[asyncpg.Record]:
    return await pool.fetch(
        """SELECT event_id, customer_id, kind, severity, subject FROM notice_events
           WHERE subject->>'machine_id' = $1 AND subject->>'item_id' = 'engine_oil'
           ORDER BY event_id""",
        machine_id,
    )


async def test_due_soon_then_overdue_become_one_notice_each(
    pool: asyncpg.Pool, settings: Settings
) -> None:
    async with api_client(pool, settings=settings) as http:
        machine_id = await planned_machine(pool, http)
        customer = await pool.fetchval(
            "SELECT customer_id FROM machines WHERE machine_id = $1", machine_id
        )
        put = await http.put(
            "/v1/notifications/subscriptions",
            params={"customer_id": customer},
            json={"subscriptions": [{"channel": "mqtt", "language": "zh-CN",
                                     "kinds": ["maintenance.due_soon", "maintenance.overdue"]}]},
            headers=ADMIN,
        )  # fmt: skip
        assert put.status_code == 200, put.text

        await read_hours(pool, machine_id, (ago(3), 10.0), (ago(2), 210.0))  # 40 h to go
        await job.run_once(pool, settings)
        await job.run_once(pool, settings)  # a second round tells nothing new
        found = await events_of(pool, machine_id)
        assert [(e["customer_id"], e["kind"], e["severity"]) for e in found] == [
            (customer, "maintenance.due_soon", None)
        ]
        subject = orjson.loads(found[0]["subject"])
        assert (subject["item"], subject["status"], subject["due_engine_hours"]) == (
            "Engine oil and filter", "due_soon", 250.0
        )  # fmt: skip

        await read_hours(pool, machine_id, (ago(1), 276.0))  # 26 h past due
        await job.run_once(pool, settings)
        found = await events_of(pool, machine_id)
        assert [e["kind"] for e in found] == ["maintenance.due_soon", "maintenance.overdue"]

        while await worker.fan_out(pool):
            pass
        rows = await pool.fetch(
            """SELECT kind, payload FROM notice_deliveries
               WHERE event_id = ANY($1::bigint[]) ORDER BY event_id""",
            [e["event_id"] for e in found],
        )
        assert [r["kind"] for r in rows] == ["maintenance.due_soon", "maintenance.overdue"]
        overdue = orjson.loads(rows[1]["payload"])
        assert overdue["language"] == "zh-CN"
        assert "Engine oil and filter" in overdue["text"]
        assert "已逾期" in overdue["text"]  # "overdue"
        due_soon = orjson.loads(rows[0]["payload"])
        assert subject["due_at"] in due_soon["text"]  # the due date as a date, not a shifted time
