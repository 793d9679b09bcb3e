"""Trained anomaly models: versions per model designation or machine class, newest in use.

A model's key is its scope and name: (`model`, designation), trained on the machines of one
designation, or (`class`, machine class), trained on a whole class.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, cast

import asyncpg
import orjson

Scope = Literal["model", "class"]
ModelKey = tuple[Scope, str]
"""(scope, name): (`model`, `SY215C`) or (`class`, `excavator`)."""


@dataclass(frozen=True, slots=True)
class StoredModel:
    """One trained model version (without its blob).

    Attributes:
        model: The designation or class it is for (see `scope`).
    """

    scope: Scope
    model: str
    version: int
    trained_at: datetime
    trained_from: datetime
    trained_to: datetime
    machines: int
    windows: int
    summary: dict[str, Any]


async def save_model(
    conn: asyncpg.Connection,
    model: str,
    blob: bytes,
    *,
    trained_from: datetime,
    trained_to: datetime,
    machines: int,
    windows: int,
    summary: dict[str, Any],
    scope: Scope = "model",
) -> StoredModel:
    """Store a new version of the anomaly model of `model` (a designation, or a class when
    `scope` is `class`); it becomes the one in use.
    """
    async with conn.transaction():
        # Serialise writers of one model so versions never collide.
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtext('anomaly_models:' || $1 || ':' || $2))",
            scope,
            model,
        )
        row = await conn.fetchrow(
            """
            INSERT INTO anomaly_models (scope, model, version, trained_from, trained_to,
                                        machines, windows, summary, blob)
            SELECT $8, $1, COALESCE(max(version), 0) + 1, $2, $3, $4, $5, $6::jsonb, $7
            FROM anomaly_models WHERE scope = $8 AND model = $1
            RETURNING scope, model, version, trained_at, trained_from, trained_to, machines,
                      windows, summary::text AS summary
            """,
            model,
            trained_from,
            trained_to,
            machines,
            windows,
            orjson.dumps(summary).decode(),
            blob,
            scope,
        )
    assert row is not None  # INSERT ... RETURNING always returns its row
    return _stored(row)


def _stored(row: asyncpg.Record) -> StoredModel:
    return StoredModel(
        scope=cast(Scope, row["scope"]),
        model=row["model"],
        version=row["version"],
        trained_at=row["trained_at"],
        trained_from=row["trained_from"],
        trained_to=row["trained_to"],
        machines=row["machines"],
        windows=row["windows"],
        summary=orjson.loads(row["summary"]),
    )


async def latest_blobs(conn: asyncpg.Connection) -> dict[ModelKey, tuple[int, bytes]]:
    """The newest version of every model, with its blob: (scope, name) -> (version, blob)."""
    rows = await conn.fetch(
        "SELECT DISTINCT ON (scope, model) scope, model, version, blob FROM anomaly_models "
        "ORDER BY scope, model, version DESC"
    )
    return {(row["scope"], row["model"]): (row["version"], row["blob"]) for row in rows}


async def latest_versions(conn: asyncpg.Connection) -> dict[ModelKey, int]:
    """The newest version number of every model (cheap: no blobs)."""
    rows = await conn.fetch(
        "SELECT scope, model, max(version) AS version FROM anomaly_models GROUP BY scope, model"
    )
    return {(row["scope"], row["model"]): row["version"] for row in rows}


async def list_models(conn: asyncpg.Connection) -> list[StoredModel]:
    """Every stored version, newest first within each model."""
    rows = await conn.fetch(
        "SELECT scope, model, version, trained_at, trained_from, trained_to, machines, windows, "
        "summary::text AS summary FROM anomaly_models ORDER BY scope, model, version DESC"
    )
    return [_stored(row) for row in rows]
