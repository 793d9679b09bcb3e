"""Alarm episodes and incidents: applying engine events, and the remote expert's workflow on an
alarm (acknowledge, confirm or correct, resolve, escalate) with its audit trail.

Applying is idempotent by construction: at most one episode per (machine, fault) is open (a partial
unique index), a raise meeting an open episode updates it, a clear meeting none does nothing, and
times only move forward (`GREATEST`). The engine itself skips readings it has already processed,
so a batch delivered twice changes nothing the second time.

The read side of the queue (`Alarm`, `AlarmFilter`, `list_alarms`, `get_alarm`) lives in
`alarm_queries`; it is re-exported here, so callers import the alarm store from this module
alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson

from diagnosis.events import AlarmEvent, Severity, Transition
from telematics.base.errors import ConflictError, InvalidRequestError, NotFoundError
from telematics.store.alarm_queries import Alarm, AlarmFilter, get_alarm, list_alarms

__all__ = [
    "Alarm",
    "AlarmAudit",
    "AlarmChange",
    "AlarmFilter",
    "Describe",
    "acknowledge",
    "apply_events",
    "audit_trail",
    "confirm",
    "escalate",
    "get_alarm",
    "list_alarms",
    "open_faults",
    "record",
    "resolve",
]

Describe = Callable[[str], tuple[Severity, str]]
"""Severity and title of a fault code (from the knowledge base)."""

_SEVERITY_RANK = "array_position(ARRAY['info','minor','major','critical'], {})"


def _ts(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


@dataclass(frozen=True, slots=True)
class AlarmChange:
    """An event as applied: what to tell on-board displays and the log."""

    alarm_id: int
    incident_id: int
    machine_id: str
    fault: str
    transition: Transition
    severity: Severity
    title: str
    ts: datetime
    detail: str


_OPEN_INCIDENT = f"""
INSERT INTO incidents (machine_id, opened_at, last_seen_at, severity)
VALUES ($1, $2, $2, $3)
ON CONFLICT (machine_id) WHERE closed_at IS NULL DO UPDATE
SET last_seen_at = GREATEST(incidents.last_seen_at, EXCLUDED.last_seen_at),
    severity = CASE WHEN {_SEVERITY_RANK.format("EXCLUDED.severity")}
                         > {_SEVERITY_RANK.format("incidents.severity")}
                    THEN EXCLUDED.severity ELSE incidents.severity END
RETURNING incident_id
"""


def _worst(alarm: str, new: str) -> str:
    """SQL for an open episode's worst value given a new one, by its `higher_is_worse`."""
    return f"""CASE
        WHEN {alarm}.worst_value IS NULL THEN {new}
        WHEN {new} IS NULL THEN {alarm}.worst_value
        WHEN {alarm}.higher_is_worse THEN GREATEST({alarm}.worst_value, {new})
        ELSE LEAST({alarm}.worst_value, {new}) END"""


_UPSERT_ALARM = f"""
INSERT INTO alarms (machine_id, incident_id, fault, state, severity, title, signal, spn, fmi,
                    raised_at, last_seen_at, readings, first_value, last_value, worst_value,
                    higher_is_worse, occurrences, detail, deviations)
VALUES ($1, $2, $3, 'open', $4, $5, $6, $7, $8, $9, $9, $10, $11, $11, $12, $13, $14, $15,
        $16::jsonb)
ON CONFLICT (machine_id, fault) WHERE state = 'open' DO UPDATE
SET last_seen_at = GREATEST(alarms.last_seen_at, EXCLUDED.last_seen_at),
    readings = alarms.readings + EXCLUDED.readings,
    last_value = COALESCE(EXCLUDED.last_value, alarms.last_value),
    worst_value = {_worst("alarms", "EXCLUDED.worst_value")},
    occurrences = COALESCE(EXCLUDED.occurrences, alarms.occurrences),
    detail = EXCLUDED.detail,
    deviations = COALESCE(EXCLUDED.deviations, alarms.deviations),
    updated_at = now()
RETURNING alarm_id, incident_id, (xmax = 0) AS inserted
"""

_UPDATE_OPEN_ALARMS = f"""
WITH ev AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::int8[], $5::float8[],
                         $6::float8[], $7::int4[], $8::text[], $9::text[])
        AS e(machine_id, fault, ts, readings, last_value, worst, occurrences, detail, deviations)
), up AS (
    UPDATE alarms a
    SET last_seen_at = GREATEST(a.last_seen_at, ev.ts),
        readings = a.readings + ev.readings,
        last_value = COALESCE(ev.last_value, a.last_value),
        worst_value = {_worst("a", "ev.worst")},
        occurrences = COALESCE(ev.occurrences, a.occurrences),
        detail = CASE WHEN ev.detail = '' THEN a.detail ELSE ev.detail END,
        deviations = COALESCE(ev.deviations::jsonb, a.deviations),
        updated_at = now()
    FROM ev
    WHERE a.machine_id = ev.machine_id AND a.fault = ev.fault AND a.state = 'open'
    RETURNING a.machine_id, a.fault, a.incident_id, ev.ts
), seen AS (
    UPDATE incidents i SET last_seen_at = GREATEST(i.last_seen_at, m.ts)
    FROM (SELECT incident_id, max(ts) AS ts FROM up GROUP BY incident_id) m
    WHERE i.incident_id = m.incident_id
)
SELECT machine_id, fault FROM up
"""
"""UPDATED events applied to their open episodes and the incidents' `last_seen_at`, in one
statement: each event's (machine, fault) at most once (at most one open row for each)."""

_CLEAR_ALARM = """
UPDATE alarms
SET state = 'cleared', cleared_at = GREATEST(last_seen_at, $3),
    last_seen_at = GREATEST(last_seen_at, $3), updated_at = now()
WHERE machine_id = $1 AND fault = $2 AND state = 'open'
RETURNING alarm_id, incident_id, severity, title
"""

_INCIDENT_GAINED = "UPDATE incidents SET open_alarms = open_alarms + 1 WHERE incident_id = $1"
_INCIDENT_LOST = """
UPDATE incidents
SET open_alarms = open_alarms - 1,
    last_seen_at = GREATEST(last_seen_at, $2),
    closed_at = CASE WHEN open_alarms = 1 THEN GREATEST(last_seen_at, $2) END
WHERE incident_id = $1
"""


def _deviations_json(event: AlarmEvent) -> str | None:
    if not event.deviations:
        return None
    return orjson.dumps([[name, round(z, 3)] for name, z in event.deviations]).decode()


async def _raise(
    conn: asyncpg.Connection, event: AlarmEvent, severity: Severity, title: str
) -> tuple[int, int, bool]:
    ts = _ts(event.ts_ms)
    incident_id = await conn.fetchval(_OPEN_INCIDENT, event.machine_id, ts, severity.value)
    row = await conn.fetchrow(
        _UPSERT_ALARM,
        event.machine_id,
        incident_id,
        event.fault,
        severity.value,
        title,
        event.signal,
        event.spn,
        event.fmi,
        ts,
        event.count,
        event.value,
        event.worst,
        event.higher_is_worse,
        event.occurrences,
        event.detail,
        _deviations_json(event),
    )
    assert row is not None  # INSERT ... ON CONFLICT DO UPDATE always returns its row
    if row["inserted"]:
        await conn.execute(_INCIDENT_GAINED, row["incident_id"])
    return row["alarm_id"], row["incident_id"], bool(row["inserted"])


async def apply_events(
    conn: asyncpg.Connection, events: Sequence[AlarmEvent], describe: Describe
) -> list[AlarmChange]:
    """Apply engine events in order, in the caller's transaction; returns what changed.

    An update for an episode the store does not have open opens one (the engine says the fault is
    active; the store must not lose it). A clear for an episode that is not open changes nothing.
    """
    changes: list[AlarmChange] = []
    i = 0
    while i < len(events):
        run = _updates_from(events, i)
        if run:  # a batch's updates of its active episodes: one statement
            i += len(run)
            for event in await _update_open(conn, run):  # no open episode: open one
                changes.extend(await _open(conn, event, describe))
            continue
        event = events[i]
        i += 1
        ts = _ts(event.ts_ms)
        if event.transition is Transition.CLEARED:
            row = await conn.fetchrow(_CLEAR_ALARM, event.machine_id, event.fault, ts)
            if row is None:
                continue
            await conn.execute(_INCIDENT_LOST, row["incident_id"], ts)
            changes.append(
                AlarmChange(
                    row["alarm_id"],
                    row["incident_id"],
                    event.machine_id,
                    event.fault,
                    Transition.CLEARED,
                    Severity(row["severity"]),
                    row["title"],
                    ts,
                    event.detail,
                )
            )
            continue
        changes.extend(await _open(conn, event, describe))
    return changes


def _updates_from(events: Sequence[AlarmEvent], start: int) -> Sequence[AlarmEvent]:
    """The UPDATED events from `start` on, up to the first that is not one or whose episode
    is already among them (it must see the first one applied).
    """
    seen: set[tuple[str, str]] = set()
    end = start
    while end < len(events) and events[end].transition is Transition.UPDATED:
        key = (events[end].machine_id, events[end].fault)
        if key in seen:
            break
        seen.add(key)
        end += 1
    return events[start:end]


async def _update_open(conn: asyncpg.Connection, run: Sequence[AlarmEvent]) -> list[AlarmEvent]:
    """Apply UPDATED events of distinct episodes at once; returns those with no open episode."""
    rows = await conn.fetch(
        _UPDATE_OPEN_ALARMS,
        [e.machine_id for e in run],
        [e.fault for e in run],
        [_ts(e.ts_ms) for e in run],
        [e.count for e in run],
        [e.value for e in run],
        [e.worst for e in run],
        [e.occurrences for e in run],
        [e.detail for e in run],
        [_deviations_json(e) for e in run],
    )
    updated = {(r["machine_id"], r["fault"]) for r in rows}
    return [e for e in run if (e.machine_id, e.fault) not in updated]


async def _open(
    conn: asyncpg.Connection, event: AlarmEvent, describe: Describe
) -> list[AlarmChange]:
    """Raise `event`'s episode (or update the open one); the change if one was opened."""
    severity, title = describe(event.fault)
    alarm_id, incident_id, inserted = await _raise(conn, event, severity, title)
    if not inserted:
        return []
    change = AlarmChange(
        alarm_id, incident_id, event.machine_id, event.fault, Transition.RAISED, severity,
        title, _ts(event.ts_ms), event.detail,
    )  # fmt: skip
    return [change]


async def open_faults(conn: asyncpg.Connection, machine_ids: Iterable[str]) -> dict[str, set[str]]:
    """The faults with an open episode, per machine."""
    rows = await conn.fetch(
        "SELECT machine_id, fault FROM alarms WHERE state = 'open' AND machine_id = ANY($1)",
        list(machine_ids),
    )
    found: dict[str, set[str]] = {}
    for row in rows:
        found.setdefault(row["machine_id"], set()).add(row["fault"])
    return found


async def acknowledge(
    conn: asyncpg.Connection, alarm_id: int, by: str, *, on_behalf_of: str | None = None
) -> Alarm:
    """Mark an alarm acknowledged by `by` (the caller); acknowledging twice keeps the first.

    `on_behalf_of` (someone the caller acknowledges for) is recorded beside the caller in the
    audit trail, never instead of them.

    Raises:
        NotFoundError: No such alarm.
    """
    async with conn.transaction():
        await _locked(conn, alarm_id)
        done = await conn.execute(
            "UPDATE alarms SET acknowledged_at = now(), acknowledged_by = $2, updated_at = now() "
            "WHERE alarm_id = $1 AND acknowledged_at IS NULL",
            alarm_id,
            by,
        )
        if done != "UPDATE 0":
            detail = {} if on_behalf_of is None else {"on_behalf_of": on_behalf_of}
            await record(conn, alarm_id, by, "acknowledged", detail)
    return await get_alarm(conn, alarm_id)


@dataclass(frozen=True, slots=True)
class AlarmAudit:
    """One action on an alarm: who did what, when."""

    event_id: int
    alarm_id: int
    at: datetime
    actor: str
    action: str
    detail: dict[str, Any]


async def record(
    conn: asyncpg.Connection, alarm_id: int, actor: str, action: str, detail: dict[str, Any]
) -> None:
    """Append an action to an alarm's audit trail."""
    await conn.execute(
        "INSERT INTO alarm_events (alarm_id, actor, action, detail) VALUES ($1, $2, $3, $4::jsonb)",
        alarm_id,
        actor,
        action,
        orjson.dumps(detail).decode(),
    )


async def audit_trail(conn: asyncpg.Connection, alarm_id: int) -> list[AlarmAudit]:
    """Every action on an alarm, oldest first."""
    rows = await conn.fetch(
        "SELECT event_id, alarm_id, at, actor, action, detail::text AS detail FROM alarm_events "
        "WHERE alarm_id = $1 ORDER BY event_id",
        alarm_id,
    )
    return [
        AlarmAudit(r["event_id"], r["alarm_id"], r["at"], r["actor"], r["action"],
                   orjson.loads(r["detail"]))
        for r in rows
    ]  # fmt: skip


async def _locked(conn: asyncpg.Connection, alarm_id: int) -> asyncpg.Record:
    row = await conn.fetchrow("SELECT * FROM alarms WHERE alarm_id = $1 FOR UPDATE", alarm_id)
    if row is None:
        raise NotFoundError("alarm", str(alarm_id))
    return row


async def confirm(
    conn: asyncpg.Connection,
    alarm_id: int,
    actor: str,
    fault: str | None,
    note: str,
    shown: str | None = None,
) -> Alarm:
    """Confirm the diagnosis, or correct it to `fault` (kept for retraining).

    `shown` is the fault the preliminary diagnosis names (for a mapped anomaly, the mapped
    fault), else the raised one: what a confirmation without `fault` stores, and what tells a
    confirmation from a correction in the trail.
    """
    async with conn.transaction():
        row = await _locked(conn, alarm_id)
        shown = shown or row["fault"]
        confirmed = fault or shown
        await conn.execute(
            "UPDATE alarms SET confirmed_fault = $2, updated_at = now() WHERE alarm_id = $1",
            alarm_id,
            confirmed,
        )
        action = "confirmed" if confirmed == shown else "corrected"
        await record(conn, alarm_id, actor, action, {"fault": confirmed, "note": note})
    return await get_alarm(conn, alarm_id)


async def resolve(
    conn: asyncpg.Connection,
    alarm_id: int,
    actor: str,
    resolution: str,
    steps: list[str],
    note: str,
) -> Alarm:
    """Close the expert's work on an alarm: fixed remotely (with the steps taken), no fault, or
    dispatched to the field.

    Raises:
        ConflictError: The alarm is resolved already.
    """
    async with conn.transaction():
        row = await _locked(conn, alarm_id)
        if row["resolution"] is not None:
            raise ConflictError("resolution of alarm", str(alarm_id))
        await conn.execute(
            "UPDATE alarms SET resolution = $2, resolved_at = now(), resolved_by = $3, "
            "acknowledged_at = COALESCE(acknowledged_at, now()), "
            "acknowledged_by = COALESCE(acknowledged_by, $3), updated_at = now() "
            "WHERE alarm_id = $1",
            alarm_id,
            resolution,
            actor,
        )
        await record(
            conn, alarm_id, actor, f"resolved_{resolution}", {"steps": steps, "note": note}
        )
    return await get_alarm(conn, alarm_id)


async def escalate(
    conn: asyncpg.Connection, alarm_id: int, actor: str, to_line: int, note: str
) -> Alarm:
    """Hand an alarm up a support line: 1 first line, 2 expert, 3 R&D.

    Raises:
        InvalidRequestError: `to_line` is not above the current line.
    """
    async with conn.transaction():
        row = await _locked(conn, alarm_id)
        if to_line <= row["support_line"]:
            raise InvalidRequestError(
                f"alarm {alarm_id} is at line {row['support_line']}; escalate to a higher one"
            )
        await conn.execute(
            "UPDATE alarms SET support_line = $2, updated_at = now() WHERE alarm_id = $1",
            alarm_id,
            to_line,
        )
        await record(
            conn, alarm_id, actor, "escalated",
            {"from_line": row["support_line"], "to_line": to_line, "note": note},
        )  # fmt: skip
    return await get_alarm(conn, alarm_id)
