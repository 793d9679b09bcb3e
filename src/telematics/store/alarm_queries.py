"""The read side of the alarm queue: `Alarm` as stored, the queue's filters, listing alarms
(newest first, keyset-paged) and reading one.

It owns the one SELECT of an alarm with its machine and the mapping of that row to `Alarm`, so
every reader sees the same value. It must never write: no INSERT or UPDATE, no transaction, no
row lock. Applying engine events and the expert's workflow are `alarms.py`'s, which re-exports
this module's names so callers import the alarm store from there alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from diagnosis.events import Severity
from telematics.base.errors import NotFoundError


@dataclass(frozen=True, slots=True)
class Alarm:
    """One stored alarm episode."""

    alarm_id: int
    incident_id: int
    machine_id: str
    model: str
    customer_id: str
    fault: str
    state: str
    severity: Severity
    title: str
    signal: str | None
    spn: int | None
    fmi: int | None
    raised_at: datetime
    last_seen_at: datetime
    cleared_at: datetime | None
    readings: int
    first_value: float | None
    last_value: float | None
    worst_value: float | None
    occurrences: int | None
    detail: str
    deviations: list[tuple[str, float]]
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    confirmed_fault: str | None = None
    resolution: str | None = None
    resolved_at: datetime | None = None
    resolved_by: str | None = None
    support_line: int = 1
    region: str | None = None


_SELECT = """
SELECT a.*, m.model, m.customer_id, m.region, a.deviations::text AS deviations_text
FROM alarms a JOIN machines m USING (machine_id)
"""


def _alarm(row: asyncpg.Record) -> Alarm:
    deviations: list[Any] = orjson.loads(row["deviations_text"]) if row["deviations_text"] else []
    return Alarm(
        alarm_id=row["alarm_id"],
        incident_id=row["incident_id"],
        machine_id=row["machine_id"],
        model=row["model"],
        customer_id=row["customer_id"],
        fault=row["fault"],
        state=row["state"],
        severity=Severity(row["severity"]),
        title=row["title"],
        signal=row["signal"],
        spn=row["spn"],
        fmi=row["fmi"],
        raised_at=row["raised_at"],
        last_seen_at=row["last_seen_at"],
        cleared_at=row["cleared_at"],
        readings=row["readings"],
        first_value=row["first_value"],
        last_value=row["last_value"],
        worst_value=row["worst_value"],
        occurrences=row["occurrences"],
        detail=row["detail"],
        deviations=[(str(name), float(z)) for name, z in deviations],
        acknowledged_at=row["acknowledged_at"],
        acknowledged_by=row["acknowledged_by"],
        confirmed_fault=row["confirmed_fault"],
        resolution=row["resolution"],
        resolved_at=row["resolved_at"],
        resolved_by=row["resolved_by"],
        support_line=row["support_line"],
        region=row["region"],
    )


@dataclass(frozen=True, slots=True)
class AlarmFilter:
    """Filters of the alarm queue; None means any."""

    state: str | None = None
    severity: Severity | None = None
    model: str | None = None
    customer_id: str | None = None
    machine_id: str | None = None
    fault: str | None = None
    incident_id: int | None = None
    acknowledged: bool | None = None
    since: datetime | None = None
    until: datetime | None = None
    region: str | None = None


async def list_alarms(
    conn: asyncpg.Connection, where: AlarmFilter, *, before_id: int | None, limit: int
) -> list[Alarm]:
    """Alarms matching `where`, newest first, keyset-paged by alarm id."""
    acknowledged = None
    if where.acknowledged is not None:
        acknowledged = "NOT NULL" if where.acknowledged else "NULL"
    filters: list[tuple[str, object]] = [
        ("a.state = {}", where.state),
        ("a.severity = {}", where.severity.value if where.severity else None),
        ("m.model = {}", where.model),
        ("m.customer_id = {}", where.customer_id),
        ("m.region = {}", where.region),
        ("a.machine_id = {}", where.machine_id),
        ("a.fault = {}", where.fault),
        ("a.incident_id = {}", where.incident_id),
        ("a.raised_at >= {}", where.since),
        ("a.raised_at < {}", where.until),
        ("a.alarm_id < {}", before_id),
    ]
    clauses = [f"a.acknowledged_at IS {acknowledged}"] if acknowledged else []
    args: list[object] = []
    for clause, value in filters:
        if value is not None:
            args.append(value)
            clauses.append(clause.format(f"${len(args)}"))
    sql = _SELECT + (" WHERE " + " AND ".join(clauses) if clauses else "")
    args.append(limit)
    sql += f" ORDER BY a.alarm_id DESC LIMIT ${len(args)}"
    return [_alarm(row) for row in await conn.fetch(sql, *args)]


async def get_alarm(conn: asyncpg.Connection, alarm_id: int) -> Alarm:
    """One alarm.

    Raises:
        NotFoundError: No such alarm.
    """
    row = await conn.fetchrow(_SELECT + " WHERE a.alarm_id = $1", alarm_id)
    if row is None:
        raise NotFoundError("alarm", str(alarm_id))
    return _alarm(row)


_EPISODES_OVER = """
SELECT machine_id, fault, raised_at, cleared_at FROM alarms
WHERE machine_id = ANY($1::text[])
  AND (state = 'open' OR (raised_at <= $3 AND cleared_at >= $2))
"""


@dataclass(frozen=True, slots=True)
class EpisodeSpan:
    """When a stored episode ran: `cleared_at` None while it is open."""

    machine_id: str
    fault: str
    raised_at: datetime
    cleared_at: datetime | None


async def episodes_over(
    conn: asyncpg.Connection, machine_ids: Sequence[str], start: datetime, end: datetime
) -> list[EpisodeSpan]:
    """Every episode of the machines open now or covering part of `start`..`end`."""
    rows = await conn.fetch(_EPISODES_OVER, list(machine_ids), start, end)
    return [
        EpisodeSpan(row["machine_id"], row["fault"], row["raised_at"], row["cleared_at"])
        for row in rows
    ]
