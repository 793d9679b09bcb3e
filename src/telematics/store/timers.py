"""SLA timers, the worker's side: claiming due timers, recording verdicts, reading them back.

Timers are written by `store.orders.save`, in the transaction of the event that schedules them;
this module fires them (`FOR UPDATE SKIP LOCKED`, so any number of workers may run) and answers
what fired.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from dispatch.sla import TimerKind, TimerSpec, Verdict
from telematics.store.orders import StoredOrder, load


@dataclass(frozen=True, slots=True)
class FiredTimer:
    """A timer that fired, with its verdict."""

    timer_id: int
    order_id: int
    kind: TimerKind
    due_at: datetime
    fired_at: datetime
    verdict: Verdict
    detail: str


async def claim_due(
    conn: asyncpg.Connection, now: datetime, limit: int
) -> list[tuple[int, TimerSpec, StoredOrder]]:
    """Lock due timers no other worker holds (`FOR UPDATE SKIP LOCKED`), with their orders.

    Call inside a transaction and record each verdict before it commits: a timer is then fired
    exactly once, whatever number of workers run and whenever one of them dies.
    """
    rows = await conn.fetch(
        """
        SELECT timer_id, timer_key, order_id, kind, anchor_at, due_at FROM sla_timers
        WHERE state = 'pending' AND due_at <= $1
        ORDER BY due_at LIMIT $2
        FOR UPDATE SKIP LOCKED
        """,
        now,
        limit,
    )
    claimed: list[tuple[int, TimerSpec, StoredOrder]] = []
    for r in rows:
        spec = TimerSpec(str(r["order_id"]), TimerKind(r["kind"]), r["anchor_at"], r["due_at"])
        claimed.append((r["timer_id"], spec, await load(conn, r["order_id"])))
    return claimed


async def record_verdict(
    conn: asyncpg.Connection, timer_id: int, verdict: Verdict, now: datetime, by: str, detail: str
) -> None:
    """Mark a claimed timer fired with its verdict."""
    await conn.execute(
        "UPDATE sla_timers SET state = 'fired', fired_at = $2, fired_by = $3, verdict = $4, "
        "detail = $5 WHERE timer_id = $1",
        timer_id,
        now,
        by,
        verdict.value,
        detail,
    )


async def timers_of(conn: asyncpg.Connection, order_id: int) -> list[dict[str, Any]]:
    """An order's timers, pending and fired."""
    rows = await conn.fetch(
        "SELECT kind, due_at, state, fired_at, verdict, detail FROM sla_timers "
        "WHERE order_id = $1 ORDER BY due_at, timer_id",
        order_id,
    )
    return [dict(r) for r in rows]


async def breaches(
    conn: asyncpg.Connection, *, since: datetime | None, kind: str | None, limit: int
) -> list[FiredTimer]:
    """Timers that fired as breaches, newest first."""
    rows = await conn.fetch(
        "SELECT * FROM sla_timers WHERE verdict = 'breach' "
        "AND ($1::timestamptz IS NULL OR fired_at >= $1) AND ($2::text IS NULL OR kind = $2) "
        "ORDER BY fired_at DESC LIMIT $3",
        since,
        kind,
        limit,
    )
    return [
        FiredTimer(r["timer_id"], r["order_id"], TimerKind(r["kind"]), r["due_at"], r["fired_at"],
                   Verdict(r["verdict"]), r["detail"] or "")
        for r in rows
    ]  # fmt: skip


@dataclass(frozen=True, slots=True)
class BoardTimer:
    """A timer of an order still open, as the dispatch board counts it down.

    Attributes:
        fired_at: None while pending.
        verdict: None while pending; `breach` once it fired against the order.
    """

    timer_id: int
    order_id: int
    kind: TimerKind
    due_at: datetime
    fired_at: datetime | None
    verdict: Verdict | None


async def open_order_timers(conn: asyncpg.Connection, *, limit: int) -> list[BoardTimer]:
    """The timers, pending and fired, of orders neither closed nor cancelled, soonest due first."""
    rows = await conn.fetch(
        "SELECT t.timer_id, t.order_id, t.kind, t.due_at, t.fired_at, t.verdict "
        "FROM sla_timers t JOIN orders o USING (order_id) "
        "WHERE o.state NOT IN ('closed', 'cancelled') ORDER BY t.due_at, t.timer_id LIMIT $1",
        limit,
    )
    return [
        BoardTimer(r["timer_id"], r["order_id"], TimerKind(r["kind"]), r["due_at"],
                   r["fired_at"], None if r["verdict"] is None else Verdict(r["verdict"]))
        for r in rows
    ]  # fmt: skip
