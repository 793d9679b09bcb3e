"""What an order for an alarm needs and where it goes: the diagnosis whose fault, parts and
skills it needs (the same the alarm page shows), and the site an engineer drives to.

Dispatch (`dispatching`), the suggested engineers (`suggestions`) and the alarm page
(`api.alarms`) all read an alarm's needs here, so that they never disagree.
"""

from __future__ import annotations

import asyncpg

from diagnosis.knowledge import Diagnosis, KnowledgeBase
from telematics.base.errors import InvalidRequestError
from telematics.store import alarms as alarm_store
from telematics.store.registry import get_machine


def preliminary(knowledge: KnowledgeBase, alarm: alarm_store.Alarm, lang: str = "en") -> Diagnosis:
    """The preliminary diagnosis, before any expert's word: the raised fault's, or for an
    anomaly whose broken relation the knowledge base maps to a fault, the mapped fault's.
    """
    return knowledge.diagnose_alarm(alarm.fault, alarm.detail, lang)


def alarm_needs(
    knowledge: KnowledgeBase, alarm: alarm_store.Alarm, lang: str = "en"
) -> tuple[str, Diagnosis]:
    """The fault an order for `alarm` is for and the diagnosis whose parts and skills it needs,
    which is also what the alarm page shows.

    That is the fault an expert confirmed or corrected it to, if one did; else the preliminary
    diagnosis (`preliminary`): for an anomaly whose broken relation the knowledge base maps to
    a fault, the mapped fault's, so that the order is for that fault (`low_oil_pressure`) and
    KPIs by fault count it there. A correction is taken as said: corrected to
    `unexplained_anomaly`, a mapped anomaly is unexplained again.

    Raises:
        UnknownFaultError: The confirmed fault is not in this knowledge base.
    """
    shown = preliminary(knowledge, alarm, lang)
    if alarm.confirmed_fault is None or alarm.confirmed_fault == shown.fault:
        return shown.fault, shown  # the relation's title stays
    diagnosis = knowledge.diagnose(alarm.confirmed_fault, lang)
    return diagnosis.fault, diagnosis


async def site_of(conn: asyncpg.Connection, machine_id: str) -> tuple[float, float]:
    """Where an engineer goes for a machine: its registered site, else its last position.

    Raises:
        NotFoundError: No such machine.
        InvalidRequestError: No site and no position within seven days.
    """
    machine = await get_machine(conn, machine_id)
    if machine.site is not None:
        return machine.site.lat, machine.site.lon
    row = await conn.fetchrow(
        "SELECT lat, lon FROM readings WHERE machine_id = $1 AND lat IS NOT NULL "
        "AND ts > now() - interval '7 days' ORDER BY ts DESC LIMIT 1",
        machine_id,
    )
    if row is None:
        raise InvalidRequestError(
            f"machine {machine_id} has no registered site and no recent position"
        )
    return row["lat"], row["lon"]
