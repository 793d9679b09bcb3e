"""The fleet's maintenance status (`maintenance_status`) and the status changes
(`maintenance_alerts`): the only SQL of both.

Writers are the maintenance job and a completion (for its own machine). Several copies may run:
a row is only replaced by an evaluation of the same or a later cycle, so a job that read before a
completion cannot put the old cycle back; alerts are unique per (machine, item, cycle, status) and
inserted with `ON CONFLICT DO NOTHING`, so each is recorded once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

import asyncpg

from telematics.store.registry import Machine, machine_of

ALERT_STATUSES = ("due_soon", "due", "overdue")


@dataclass(frozen=True, slots=True)
class ItemState:
    """One evaluated (machine, item)."""

    machine_id: str
    customer_id: str
    item: str
    name: str
    status: str
    cycle: int
    engine_hours: float | None
    due_at_h: float | None
    remaining_h: float | None
    due_date: date | None
    forecast_due_date: date | None
    usage_h_per_day: float | None


async def save(
    conn: asyncpg.Connection, machine_ids: Sequence[str], states: Sequence[ItemState], at: datetime
) -> int:
    """Store the evaluation of `machine_ids` (items no longer in their plans are dropped) and
    record an alert for each state in `ALERT_STATUSES`; returns how many alerts are new.

    Rows are written in key order, so two copies writing the same machines lock them in the same
    order and one waits for the other instead of deadlocking.
    """
    states = sorted(states, key=lambda s: (s.machine_id, s.item))
    await conn.execute(
        """
        DELETE FROM maintenance_status s
        WHERE s.machine_id = ANY($1::text[])
          AND NOT EXISTS (SELECT 1 FROM unnest($2::text[], $3::text[]) AS k(m, i)
                          WHERE k.m = s.machine_id AND k.i = s.item)
        """,
        list(machine_ids),
        [s.machine_id for s in states],
        [s.item for s in states],
    )
    await conn.executemany(
        """
        INSERT INTO maintenance_status (machine_id, item, name, status, cycle, engine_hours,
            due_at_h, remaining_h, due_date, forecast_due_date, usage_h_per_day, computed_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
        ON CONFLICT (machine_id, item) DO UPDATE SET
            name = EXCLUDED.name, status = EXCLUDED.status, cycle = EXCLUDED.cycle,
            engine_hours = EXCLUDED.engine_hours, due_at_h = EXCLUDED.due_at_h,
            remaining_h = EXCLUDED.remaining_h, due_date = EXCLUDED.due_date,
            forecast_due_date = EXCLUDED.forecast_due_date,
            usage_h_per_day = EXCLUDED.usage_h_per_day, computed_at = EXCLUDED.computed_at
        WHERE maintenance_status.cycle <= EXCLUDED.cycle
        """,
        [
            (s.machine_id, s.item, s.name, s.status, s.cycle, s.engine_hours, s.due_at_h,
             s.remaining_h, s.due_date, s.forecast_due_date, s.usage_h_per_day, at)
            for s in states
        ],
    )  # fmt: skip
    alerts = [s for s in states if s.status in ALERT_STATUSES]
    if not alerts:
        return 0
    new = await conn.fetchval(
        """
        WITH added AS (
            INSERT INTO maintenance_alerts (machine_id, item, status, cycle, customer_id, at)
            SELECT m, i, s, c, cu, $6
            FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::text[])
                AS a(m, i, s, c, cu)
            ON CONFLICT (machine_id, item, cycle, status) DO NOTHING
            RETURNING 1
        )
        SELECT count(*) FROM added
        """,
        [s.machine_id for s in alerts],
        [s.item for s in alerts],
        [s.status for s in alerts],
        [s.cycle for s in alerts],
        [s.customer_id for s in alerts],
        at,
    )
    return int(new)


@dataclass(frozen=True, slots=True)
class Alert:
    """A recorded status change."""

    alert_id: int
    machine_id: str
    item: str
    status: str
    cycle: int
    at: datetime
    customer_id: str


async def alerts_of(conn: asyncpg.Connection, machine_id: str) -> list[Alert]:
    """A machine's alerts, oldest first."""
    rows = await conn.fetch(
        "SELECT alert_id, machine_id, item, status, cycle, at, customer_id "
        "FROM maintenance_alerts WHERE machine_id = $1 ORDER BY alert_id",
        machine_id,
    )
    return [Alert(*row.values()) for row in rows]


@dataclass(frozen=True, slots=True)
class DueFilter:
    """Filters of the due list; None means any."""

    customer_id: str | None = None
    machine_class: str | None = None
    statuses: tuple[str, ...] | None = None
    until: date | None = None


@dataclass(frozen=True, slots=True)
class DueRow:
    """A row of the due list."""

    state: ItemState
    machine_class: str
    computed_at: datetime


_FAR = date(9999, 12, 31)


async def due_list(
    conn: asyncpg.Connection,
    where: DueFilter,
    *,
    after: tuple[date, str, str] | None,
    limit: int,
) -> list[DueRow]:
    """Items by forecast date (those without one last), then machine and item; keyset-paged by
    `after` (the last row's (forecast date or 9999-12-31, machine, item)). `until` keeps items
    forecast due by then or in a status other than ok.
    """
    rows = await conn.fetch(
        """
        SELECT s.*, m.customer_id, m.machine_class,
               coalesce(s.forecast_due_date, $7::date) AS sort_date
        FROM maintenance_status s JOIN machines m USING (machine_id)
        WHERE ($1::text IS NULL OR m.customer_id = $1)
          AND ($2::text IS NULL OR m.machine_class = $2)
          AND ($3::text[] IS NULL OR s.status = ANY($3::text[]))
          AND ($4::date IS NULL OR s.forecast_due_date <= $4 OR s.status <> 'ok')
          AND ($5::date IS NULL
               OR (coalesce(s.forecast_due_date, $7::date), s.machine_id, s.item)
                  > ($5::date, $6::text, $8::text))
        ORDER BY coalesce(s.forecast_due_date, $7::date), s.machine_id, s.item
        LIMIT $9
        """,
        where.customer_id,
        where.machine_class,
        None if where.statuses is None else list(where.statuses),
        where.until,
        None if after is None else after[0],
        None if after is None else after[1],
        _FAR,
        None if after is None else after[2],
        limit,
    )
    return [
        DueRow(
            ItemState(
                row["machine_id"], row["customer_id"], row["item"], row["name"], row["status"],
                row["cycle"], row["engine_hours"], row["due_at_h"], row["remaining_h"],
                row["due_date"], row["forecast_due_date"], row["usage_h_per_day"],
            ),
            row["machine_class"],
            row["computed_at"],
        )
        for row in rows
    ]  # fmt: skip


async def open_orders(
    conn: asyncpg.Connection, machine_ids: Sequence[str]
) -> dict[tuple[str, str], int]:
    """The open planned-maintenance order of each (machine, item) that has one."""
    rows = await conn.fetch(
        "SELECT machine_id, substr(fault, 13) AS item, order_id FROM orders "
        "WHERE machine_id = ANY($1::text[]) AND alarm_id IS NULL "
        "AND fault LIKE 'maintenance:%' AND state NOT IN ('cancelled', 'closed')",
        list(machine_ids),
    )
    return {(row["machine_id"], row["item"]): row["order_id"] for row in rows}


async def machines_after(conn: asyncpg.Connection, after: str, limit: int) -> list[Machine]:
    """Registered machines with ids above `after`, by id (the job's pages)."""
    rows = await conn.fetch(
        "SELECT * FROM machines WHERE machine_id > $1 ORDER BY machine_id LIMIT $2", after, limit
    )
    return [machine_of(row) for row in rows]
