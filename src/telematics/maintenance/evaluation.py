"""A machine's maintenance as it stands: plan, counter, usage rate, completions and open orders
read from the store, put through the pure schedule; and the fleet status rows written from it.

This is where the store's values meet the formulas (`schedule`, `usage`); it holds no SQL of its
own and never talks HTTP.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cache

import asyncpg

from telematics.base.config import Settings
from telematics.maintenance import completions, counters, plan_store, shipped, status_store
from telematics.maintenance.book import PlanBook
from telematics.maintenance.completions import ItemHistory
from telematics.maintenance.plan import PlanItem
from telematics.maintenance.schedule import ItemSchedule, LastDone, Leads, schedule
from telematics.maintenance.status_store import ItemState
from telematics.maintenance.usage import usage_rate
from telematics.store.registry import Machine


@dataclass(frozen=True, slots=True)
class Tuning:
    """How items are judged and rates measured (from the settings)."""

    leads: Leads
    usage_weeks: int

    @classmethod
    def of(cls, settings: Settings) -> Tuning:
        """The tuning the settings describe."""
        return cls(
            Leads(
                settings.maintenance_lead_h,
                settings.maintenance_lead_days,
                settings.maintenance_overdue_fraction,
            ),
            settings.maintenance_usage_weeks,
        )


@cache
def shipped_plans() -> PlanBook:
    """The packaged plans, read once (no stored plans in this book)."""
    return PlanBook(shipped.load(), {})


async def plan_book(conn: asyncpg.Connection) -> PlanBook:
    """The shipped plans with the stored ones over them."""
    return PlanBook(shipped_plans().shipped, await plan_store.stored_plans(conn))


@dataclass(frozen=True, slots=True)
class ItemView:
    """One plan item of one machine."""

    item: PlanItem
    history: ItemHistory | None
    schedule: ItemSchedule
    open_order_id: int | None

    @property
    def cycle(self) -> int:
        """Completions recorded for the item: the service cycle it is in."""
        return 0 if self.history is None else self.history.cycle


@dataclass(frozen=True, slots=True)
class MachineView:
    """A machine's maintenance."""

    machine: Machine
    engine_hours: float | None
    engine_hours_at: datetime | None
    usage_h_per_day: float | None
    items: tuple[ItemView, ...]

    def item(self, item_id: str) -> ItemView | None:
        """The view of one item, None if the machine's plan has no such item."""
        return next((i for i in self.items if i.item.item == item_id), None)

    def states(self) -> list[ItemState]:
        """The status rows of this machine."""
        return [
            ItemState(
                machine_id=self.machine.machine_id,
                customer_id=self.machine.customer_id,
                item=i.item.item,
                name=i.item.name,
                status=i.schedule.status.value,
                cycle=i.cycle,
                engine_hours=self.engine_hours,
                due_at_h=i.schedule.due_at_h,
                remaining_h=i.schedule.remaining_h,
                due_date=i.schedule.due_date,
                forecast_due_date=i.schedule.forecast_due_date,
                usage_h_per_day=self.usage_h_per_day,
            )
            for i in self.items
        ]


async def evaluate(
    conn: asyncpg.Connection,
    machines: Sequence[Machine],
    book: PlanBook,
    tuning: Tuning,
    today: date,
) -> list[MachineView]:
    """The maintenance of each machine on `today` (UTC), with the store as it is now."""
    ids = [m.machine_id for m in machines]
    first_day = today - timedelta(days=7 * tuning.usage_weeks + 1)
    done = await completions.histories(conn, ids)
    counter = await counters.counters(conn, ids, first_day, today)
    orders = await status_store.open_orders(conn, ids)
    views: list[MachineView] = []
    for m in machines:
        c = counter[m.machine_id]
        hours_now, hours_at = c.newest if c.newest is not None else (None, None)
        rate = usage_rate(c.days, today=today, weeks=tuning.usage_weeks)
        start = m.delivered_at or m.created_at.astimezone(UTC).date()
        items: list[ItemView] = []
        for item in book.for_machine(m.machine_class, m.model):
            history = done.get((m.machine_id, item.item))
            last = None if history is None else LastDone(
                history.last.engine_hours, history.last.done_at.astimezone(UTC)
            )  # fmt: skip
            sched = schedule(
                item, last, start=start, hours_now=hours_now, today=today,
                rate_h_per_day=rate, leads=tuning.leads,
            )  # fmt: skip
            items.append(ItemView(item, history, sched, orders.get((m.machine_id, item.item))))
        views.append(MachineView(m, hours_now, hours_at, rate, tuple(items)))
    return views


async def refresh(
    conn: asyncpg.Connection,
    machines: Sequence[Machine],
    book: PlanBook,
    tuning: Tuning,
    now: datetime,
) -> int:
    """Evaluate `machines` and store their status rows and alerts, in the caller's transaction;
    returns how many alerts are new.
    """
    views = await evaluate(conn, machines, book, tuning, now.astimezone(UTC).date())
    states = [s for v in views for s in v.states()]
    return await status_store.save(conn, [m.machine_id for m in machines], states, now)
