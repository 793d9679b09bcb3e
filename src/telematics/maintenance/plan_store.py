"""Plans edited over the API, in `maintenance_plans`: the only SQL of plans.

Stored items were validated when written (`schemas.PlanIn`) and are read back as they were.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg
import orjson

from telematics.maintenance.book import PlanKey, Scope
from telematics.maintenance.plan import PlanItem, item_of


@dataclass(frozen=True, slots=True)
class StoredPlan:
    """A plan as stored: its items, when and by whom it was last written."""

    scope: Scope
    key: str
    items: tuple[PlanItem, ...]
    updated_at: datetime
    updated_by: str


def _items(raw: str) -> tuple[PlanItem, ...]:
    return tuple(item_of(d) for d in orjson.loads(raw))


async def stored_plans(conn: asyncpg.Connection) -> dict[PlanKey, tuple[PlanItem, ...]]:
    """Every stored plan (a few per class and model: small)."""
    rows = await conn.fetch("SELECT scope, key, items::text AS items FROM maintenance_plans")
    return {(row["scope"], row["key"]): _items(row["items"]) for row in rows}


async def put_plan(
    conn: asyncpg.Connection, scope: Scope, key: str, items: Sequence[PlanItem], actor: str
) -> StoredPlan:
    """Store (or replace) the plan of a class or model."""
    row = await conn.fetchrow(
        """
        INSERT INTO maintenance_plans (scope, key, items, updated_by)
        VALUES ($1, $2, $3::jsonb, $4)
        ON CONFLICT (scope, key) DO UPDATE
            SET items = EXCLUDED.items, updated_by = EXCLUDED.updated_by, updated_at = now()
        RETURNING scope, key, items::text AS items, updated_at, updated_by
        """,
        scope,
        key,
        orjson.dumps([i.as_json() for i in items]).decode(),
        actor,
    )
    assert row is not None
    return StoredPlan(
        row["scope"], row["key"], _items(row["items"]), row["updated_at"], row["updated_by"]
    )


async def unknown_parts(conn: asyncpg.Connection, part_nos: Sequence[str]) -> list[str]:
    """Those of `part_nos` missing from the parts catalogue, sorted."""
    rows = await conn.fetch(
        "SELECT p FROM unnest($1::text[]) AS p "
        "WHERE NOT EXISTS (SELECT 1 FROM parts WHERE part_no = p) ORDER BY p",
        list(set(part_nos)),
    )
    return [row["p"] for row in rows]
