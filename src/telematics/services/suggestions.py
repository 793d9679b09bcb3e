"""Who could be sent to an alarm, before anyone is: the dispatch ranking without its writes.

The expert's alarm page shows the engineers a dispatch would choose from, fastest first, with
the figures that explain each (route, pickup, ETA) and why the others are not listed. This
module reads the same snapshot `services.dispatching` reads and ranks it with the same pure
`dispatch.matching.rank`, in one read-only transaction: it reserves nothing, creates no order
and takes no order id. A dispatch that follows ranks again on fresh stock, so what it picks may
differ when the fleet moved meanwhile.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from diagnosis.knowledge import Diagnosis, KnowledgeBase
from dispatch.geo import GeoPoint
from dispatch.matching import rank
from dispatch.needs import OrderNeed, PartNeed
from dispatch.ranking import Ranking
from telematics.base.db import acquire
from telematics.services.alarm_needs import alarm_needs, site_of
from telematics.services.snapshot import fleet_snapshot
from telematics.store import alarms as alarm_store

SUGGESTIONS_MAX = 5


@dataclass(frozen=True, slots=True)
class Suggestion:
    """The ranking for one alarm, and what the order would need.

    Attributes:
        alarm_id: The alarm.
        fault: The fault the order would be for (the confirmed one, if an expert corrected it).
        diagnosis: The diagnosis the alarm page shows for it (`alarm_needs.alarm_needs`): its
            parts and skills are the order's needs.
        ranking: Candidates fastest first, and the rejected by reason.
    """

    alarm_id: int
    fault: str
    diagnosis: Diagnosis
    ranking: Ranking


async def suggest(
    pool: asyncpg.Pool, knowledge: KnowledgeBase, alarm_id: int, *, now: datetime
) -> Suggestion:
    """Rank the engineers for an alarm as a dispatch would, changing nothing.

    Raises:
        NotFoundError: No such alarm.
        InvalidRequestError: The machine has no registered site and no recent position.
    """
    async with acquire(pool) as conn, conn.transaction(readonly=True):
        alarm = await alarm_store.get_alarm(conn, alarm_id)
        fault, diagnosis = alarm_needs(knowledge, alarm)
        parts = tuple(PartNeed(p.part_no, p.quantity) for p in diagnosis.parts)
        site = await site_of(conn, alarm.machine_id)
        need = OrderNeed(
            f"alarm-{alarm_id}", GeoPoint(*site), parts, frozenset(diagnosis.skills),
            alarm.severity,
        )  # fmt: skip
        snapshot = await fleet_snapshot(conn, parts, now)
    return Suggestion(
        alarm_id, fault, diagnosis, rank(need, snapshot, now=now, limit=SUGGESTIONS_MAX)
    )
