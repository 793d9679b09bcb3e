"""The facts service KPIs are computed from, read in two queries: orders created in a span
(with their timers' verdicts, the desk's callback tasks and whether a repeat order followed),
and alarms resolved in it. asyncpg records never leave this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from telematics.quality.kpis import AlarmFacts, OrderFacts

REPEAT_WITHIN = timedelta(days=30)
"""A new order for the same machine and fault within this of completion: not a first-time fix."""

_ORDERS = """
SELECT o.order_id, o.created_at, m.region, o.engineer_id,
    coalesce(t.cb_met, 0) AS cb_met, coalesce(t.cb_judged, 0) AS cb_judged,
    coalesce(d.desk_total, 0) AS desk_total, coalesce(d.desk_on_time, 0) AS desk_on_time,
    t.arr_met, t.done_met, o.completed_at IS NOT NULL AS completed,
    o.completed_at IS NOT NULL AND EXISTS (
        SELECT 1 FROM orders n WHERE n.machine_id = o.machine_id
          AND n.fault IS NOT DISTINCT FROM o.fault AND n.order_id <> o.order_id
          AND n.created_at > o.completed_at AND n.created_at <= o.completed_at + $7
    ) AS repeated,
    extract(epoch FROM o.arrived_at - o.created_at) / 60 AS response_min,
    extract(epoch FROM o.completed_at - o.arrived_at) / 60 AS repair_min
FROM orders o JOIN machines m USING (machine_id)
LEFT JOIN (
    SELECT st.order_id,
        count(*) FILTER (WHERE kind = 'callback_check' AND verdict = 'satisfied') AS cb_met,
        count(*) FILTER (WHERE kind = 'callback_check' AND verdict IN ('satisfied', 'breach'))
            AS cb_judged,
        bool_or(verdict = 'satisfied') FILTER (
            WHERE kind = 'arrival_deadline' AND verdict IN ('satisfied', 'breach')) AS arr_met,
        bool_or(verdict = 'satisfied') FILTER (
            WHERE kind = 'completion_escalation' AND verdict IN ('satisfied', 'breach'))
            AS done_met
    FROM sla_timers st JOIN orders so USING (order_id)
    WHERE st.state = 'fired' AND so.created_at >= $1 AND so.created_at < $2
    GROUP BY st.order_id
) t USING (order_id)
LEFT JOIN (
    SELECT dt.order_id,
        count(*) FILTER (WHERE done_at IS NOT NULL OR due_at + $5 <= $6) AS desk_total,
        count(*) FILTER (WHERE done_at <= due_at + $5) AS desk_on_time
    FROM desk_tasks dt JOIN orders dso USING (order_id)
    WHERE dt.kind = 'callback_check' AND dso.created_at >= $1 AND dso.created_at < $2
    GROUP BY dt.order_id
) d USING (order_id)
WHERE o.created_at >= $1 AND o.created_at < $2
  AND ($3::text IS NULL OR m.region = $3) AND ($4::text IS NULL OR o.engineer_id = $4)
"""

_ALARMS = """
SELECT a.resolved_at, m.region, a.resolution = 'remote' AS remote
FROM alarms a JOIN machines m USING (machine_id)
WHERE a.resolved_at >= $1 AND a.resolved_at < $2 AND a.resolution IN ('remote', 'dispatched')
  AND ($3::text IS NULL OR m.region = $3)
"""


@dataclass(frozen=True, slots=True)
class KpiScope:
    """Which orders and alarms count; None means any. With an engineer, no alarm counts."""

    region: str | None = None
    engineer_id: str | None = None


async def order_facts(
    conn: asyncpg.Connection,
    since: datetime,
    until: datetime,
    scope: KpiScope,
    *,
    grace: timedelta,
    now: datetime,
) -> list[OrderFacts]:
    """Facts of the orders created in [since, until)."""
    async with conn.transaction():
        # One large analytical read: JIT compilation would cost more than it saves (measured,
        # bench/README.md), and the aggregates' hash tables should not spill to disk.
        await conn.execute("SET LOCAL jit = off; SET LOCAL work_mem = '64MB'")
        rows = await conn.fetch(
            _ORDERS, since, until, scope.region, scope.engineer_id, grace, now, REPEAT_WITHIN
        )
    return [
        OrderFacts(
            order_id=r["order_id"], created_at=r["created_at"], region=r["region"],
            engineer_id=r["engineer_id"], callbacks_met=r["cb_met"],
            callbacks_judged=r["cb_judged"], desk_callbacks=r["desk_total"],
            desk_callbacks_on_time=r["desk_on_time"], arrival_met=r["arr_met"],
            completion_met=r["done_met"], completed=r["completed"], repeated=r["repeated"],
            response_min=None if r["response_min"] is None else float(r["response_min"]),
            repair_min=None if r["repair_min"] is None else float(r["repair_min"]),
        )
        for r in rows
    ]  # fmt: skip


async def alarm_facts(
    conn: asyncpg.Connection, since: datetime, until: datetime, scope: KpiScope
) -> list[AlarmFacts]:
    """Alarms resolved remotely or by dispatch in [since, until)."""
    if scope.engineer_id is not None:
        return []
    rows = await conn.fetch(_ALARMS, since, until, scope.region)
    return [AlarmFacts(r["resolved_at"], r["region"], r["remote"]) for r in rows]
