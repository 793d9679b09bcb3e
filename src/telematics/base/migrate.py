"""Schema migrations: the SQL files of `migrations/`, applied in order, each once, under a lock.

A session-level advisory lock serialises concurrent starters (several gateway workers booting at
once); each file runs in its own transaction together with its bookkeeping row, so a failed file
leaves no trace. An applied file whose checksum changed is refused: migrations are append-only.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from importlib import resources

import asyncpg

from telematics.base.errors import MigrationError

log = logging.getLogger(__name__)

# Arbitrary constant: the advisory lock key shared by every process that migrates this schema.
MIGRATION_LOCK_KEY = 0x7E1E_0001


@dataclass(frozen=True, slots=True)
class Migration:
    """One migration file."""

    version: str
    sql: str

    @property
    def checksum(self) -> str:
        """SHA-256 of the file's text."""
        return hashlib.sha256(self.sql.encode()).hexdigest()


def packaged_migrations() -> list[Migration]:
    """The migrations shipped with the package, in the order they apply."""
    folder = resources.files("telematics_migrations")
    files = sorted(
        (entry for entry in folder.iterdir() if entry.name.endswith(".sql")),
        key=lambda entry: entry.name,
    )
    return [Migration(entry.name.removesuffix(".sql"), entry.read_text()) for entry in files]


async def migrate(conn: asyncpg.Connection, migrations: list[Migration] | None = None) -> list[str]:
    """Apply every migration not yet applied.

    Returns:
        The versions applied by this call.

    Raises:
        MigrationError: A migration failed, or an applied one no longer matches its file.
    """
    todo = packaged_migrations() if migrations is None else migrations
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
    try:
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version text PRIMARY KEY,
                   checksum text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        rows = await conn.fetch("SELECT version, checksum FROM schema_migrations")
        applied = {row["version"]: row["checksum"] for row in rows}
        done: list[str] = []
        for migration in todo:
            if migration.version in applied:
                if applied[migration.version] != migration.checksum:
                    raise MigrationError(migration.version, "file changed after it was applied")
                continue
            try:
                async with conn.transaction():
                    await conn.execute(migration.sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, checksum) VALUES ($1, $2)",
                        migration.version,
                        migration.checksum,
                    )
            except asyncpg.PostgresError as exc:
                raise MigrationError(migration.version, str(exc)) from exc
            log.info("applied migration %s", migration.version)
            done.append(migration.version)
        return done
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
