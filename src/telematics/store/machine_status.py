"""Machines with how they are doing: last reading, online or not, position, hours, open alarms.

Computed per page of machines, never by scanning readings: each machine's newest reading is a
backward probe of the readings primary key `(machine_id, ts)` (a `LATERAL ... ORDER BY ts DESC
LIMIT 1`), in the partitions of the last day for a machine that reported in it and in every
partition for one that did not; its open alarms are counted on the partial index of open alarms.
A page costs one such probe a machine, whatever the fleet's size or history
(bench/registry_import.py: about 11 ms of SQL a page of 1,000 machines, 70 ms over HTTP).

Position and engine hours are those of the newest reading, null when it did not carry them.
Online means the newest reading's time (the machine's clock, as stored) is within
`online_within_s` of the database's clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from telematics.store.registry import Machine, machine_of

ONLINE_WITHIN_S = 300
"""Default: a machine is online when its newest reading is at most 5 minutes old."""


@dataclass(frozen=True, slots=True)
class MachineStatus:
    """A machine and how it is doing.

    Attributes:
        machine: The registered machine.
        last_reading_at: Time of its newest reading; None if it never reported.
        online: Its newest reading is within the online window.
        lat: Latitude of the newest reading, if it carried one.
        lon: Longitude of the newest reading, if it carried one.
        engine_hours: Engine hours of the newest reading, if it carried them.
        open_alarms: Alarm episodes open on it.
    """

    machine: Machine
    last_reading_at: datetime | None
    online: bool
    lat: float | None
    lon: float | None
    engine_hours: float | None
    open_alarms: int


# The newest reading is looked for in the last day first: runtime partition pruning keeps that
# probe to the newest partitions. Only a machine quiet for a day is probed in every partition
# (the second LATERAL runs only when the first found nothing).
_WITH_STATUS = """
SELECT m.*, last.ts AS last_ts, last.lat AS last_lat, last.lon AS last_lon,
       last.engine_hours AS last_engine_hours,
       coalesce(last.ts >= now() - make_interval(secs => $1::float8), false) AS online,
       (SELECT count(*) FROM alarms a
        WHERE a.machine_id = m.machine_id AND a.state = 'open') AS open_alarms
FROM ({machines}) m
LEFT JOIN LATERAL (
    SELECT r.ts, r.lat, r.lon, r.engine_hours FROM readings r
    WHERE r.machine_id = m.machine_id AND r.ts >= now() - interval '1 day'
    ORDER BY r.ts DESC LIMIT 1
) recent ON true
LEFT JOIN LATERAL (
    SELECT r.ts, r.lat, r.lon, r.engine_hours FROM readings r
    WHERE recent.ts IS NULL AND r.machine_id = m.machine_id
    ORDER BY r.ts DESC LIMIT 1
) older ON true
CROSS JOIN LATERAL (
    SELECT coalesce(recent.ts, older.ts) AS ts,
           CASE WHEN recent.ts IS NULL THEN older.lat ELSE recent.lat END AS lat,
           CASE WHEN recent.ts IS NULL THEN older.lon ELSE recent.lon END AS lon,
           CASE WHEN recent.ts IS NULL THEN older.engine_hours ELSE recent.engine_hours END
               AS engine_hours
) last
ORDER BY m.machine_id
"""

_PAGE = _WITH_STATUS.format(
    machines="""SELECT * FROM machines
       WHERE ($2::text IS NULL OR customer_id = $2)
         AND ($3::text IS NULL OR model = $3)
         AND ($4::text IS NULL OR machine_class = $4)
         AND ($5::text IS NULL OR machine_id > $5)
       ORDER BY machine_id LIMIT $6"""
)
_ONE = _WITH_STATUS.format(machines="SELECT * FROM machines WHERE machine_id = $2")


def _status(row: asyncpg.Record) -> MachineStatus:
    return MachineStatus(
        machine=machine_of(row),
        last_reading_at=row["last_ts"],
        online=row["online"],
        lat=row["last_lat"] if row["last_lon"] is not None else None,
        lon=row["last_lon"] if row["last_lat"] is not None else None,
        engine_hours=row["last_engine_hours"],
        open_alarms=row["open_alarms"],
    )


async def list_with_status(
    conn: asyncpg.Connection,
    *,
    customer_id: str | None = None,
    model: str | None = None,
    machine_class: str | None = None,
    after: str | None = None,
    limit: int = 100,
    online_within_s: float = ONLINE_WITHIN_S,
) -> list[MachineStatus]:
    """Machines ordered by id, filtered, paged by keyset (`after`: last id of the page before)."""
    rows = await conn.fetch(_PAGE, online_within_s, customer_id, model, machine_class, after, limit)
    return [_status(row) for row in rows]


async def status_of(
    conn: asyncpg.Connection, machine_id: str, online_within_s: float = ONLINE_WITHIN_S
) -> MachineStatus | None:
    """One machine with its status; None if it is not registered."""
    row = await conn.fetchrow(_ONE, online_within_s, machine_id)
    return None if row is None else _status(row)
