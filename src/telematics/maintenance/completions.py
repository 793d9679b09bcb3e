"""Completions of plan items, in `maintenance_done`: the only SQL of completions.

A completion is identified by (machine, item, done_at): the same one posted twice is one row,
and the second post learns that it was recorded already. An item's current cycle counts from its
latest completion by `done_at`; the cycle number is how many completions it has.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg
import orjson

from telematics.maintenance.plan import PartLine


@dataclass(frozen=True, slots=True)
class Completion:
    """A recorded completion."""

    done_id: int
    machine_id: str
    item: str
    done_at: datetime
    engine_hours: float
    done_by: str
    parts_used: tuple[PartLine, ...]
    notes: str


@dataclass(frozen=True, slots=True)
class ItemHistory:
    """An item's latest completion on a machine and how many it has had (its cycle)."""

    last: Completion
    cycle: int


_COLUMNS = "done_id, machine_id, item, done_at, engine_hours, done_by, " \
    "parts_used::text AS parts_used, notes"  # fmt: skip


def _completion(row: asyncpg.Record) -> Completion:
    return Completion(
        done_id=row["done_id"],
        machine_id=row["machine_id"],
        item=row["item"],
        done_at=row["done_at"],
        engine_hours=row["engine_hours"],
        done_by=row["done_by"],
        parts_used=tuple(PartLine(p, q) for p, q in orjson.loads(row["parts_used"])),
        notes=row["notes"],
    )


async def record(
    conn: asyncpg.Connection,
    machine_id: str,
    item: str,
    *,
    done_at: datetime,
    engine_hours: float,
    done_by: str,
    parts_used: Sequence[PartLine],
    notes: str,
) -> tuple[Completion, bool]:
    """Record a completion; returns it and whether this call created it (False: the same
    machine, item and time were recorded before, and that record is returned as it is).
    """
    row = await conn.fetchrow(
        f"""
        INSERT INTO maintenance_done (machine_id, item, done_at, engine_hours, done_by,
                                      parts_used, notes)
        VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7)
        ON CONFLICT (machine_id, item, done_at) DO NOTHING
        RETURNING {_COLUMNS}
        """,
        machine_id,
        item,
        done_at,
        engine_hours,
        done_by,
        orjson.dumps([[p.part_no, p.quantity] for p in parts_used]).decode(),
        notes,
    )
    if row is not None:
        return _completion(row), True
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM maintenance_done "
        "WHERE machine_id = $1 AND item = $2 AND done_at = $3",
        machine_id,
        item,
        done_at,
    )
    assert row is not None
    return _completion(row), False


async def histories(
    conn: asyncpg.Connection, machine_ids: Sequence[str]
) -> dict[tuple[str, str], ItemHistory]:
    """The latest completion and the cycle of every item done on these machines."""
    rows = await conn.fetch(
        f"""
        SELECT DISTINCT ON (machine_id, item) {_COLUMNS},
               count(*) OVER (PARTITION BY machine_id, item) AS cycle
        FROM maintenance_done WHERE machine_id = ANY($1::text[])
        ORDER BY machine_id, item, done_at DESC
        """,
        list(machine_ids),
    )
    return {
        (row["machine_id"], row["item"]): ItemHistory(_completion(row), row["cycle"])
        for row in rows
    }
