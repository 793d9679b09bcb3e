"""Trained anomaly models: versions per machine model, newest in use."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import orjson


@dataclass(frozen=True, slots=True)
class StoredModel:
    """One trained model version (without its blob)."""

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
) -> StoredModel:
    """Store a new version of `model`'s anomaly model; it becomes the one in use."""
    async with conn.transaction():
        # Serialise writers of one model so versions never collide.
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('anomaly_models:' || $1))", model)
        row = await conn.fetchrow(
            """
            INSERT INTO anomaly_models (model, version, trained_from, trained_to, machines,
                                        windows, summary, blob)
            SELECT $1, COALESCE(max(version), 0) + 1, $2, $3, $4, $5, $6::jsonb, $7
            FROM anomaly_models WHERE model = $1
            RETURNING model, version, trained_at, trained_from, trained_to, machines, windows,
                      summary::text AS summary
            """,
            model,
            trained_from,
            trained_to,
            machines,
            windows,
            orjson.dumps(summary).decode(),
            blob,
        )
    assert row is not None  # INSERT ... RETURNING always returns its row
    return _stored(row)


def _stored(row: asyncpg.Record) -> StoredModel:
    return StoredModel(
        model=row["model"],
        version=row["version"],
        trained_at=row["trained_at"],
        trained_from=row["trained_from"],
        trained_to=row["trained_to"],
        machines=row["machines"],
        windows=row["windows"],
        summary=orjson.loads(row["summary"]),
    )


async def latest_blobs(conn: asyncpg.Connection) -> dict[str, tuple[int, bytes]]:
    """The newest version of every model, with its blob: model -> (version, blob)."""
    rows = await conn.fetch(
        "SELECT DISTINCT ON (model) model, version, blob FROM anomaly_models "
        "ORDER BY model, version DESC"
    )
    return {row["model"]: (row["version"], row["blob"]) for row in rows}


async def latest_versions(conn: asyncpg.Connection) -> dict[str, int]:
    """The newest version number of every model (cheap: no blobs)."""
    rows = await conn.fetch(
        "SELECT model, max(version) AS version FROM anomaly_models GROUP BY model"
    )
    return {row["model"]: row["version"] for row in rows}


async def list_models(conn: asyncpg.Connection) -> list[StoredModel]:
    """Every stored version, newest first within each model."""
    rows = await conn.fetch(
        "SELECT model, version, trained_at, trained_from, trained_to, machines, windows, "
        "summary::text AS summary FROM anomaly_models ORDER BY model, version DESC"
    )
    return [_stored(row) for row in rows]
