"""Surveys, survey instruments and machines' regions in PostgreSQL.

The quality capability's own SQL for the satisfaction index: answers in (`insert_survey`),
answers out by time span and scope (`answers_in`), the instrument put over the API
(`current_instrument`, `put_instrument`) and a machine's region (`set_region`). asyncpg
records never leave this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from telematics.base.errors import ConflictError, NotFoundError


@dataclass(frozen=True, slots=True)
class OrderFacts:
    """What a survey takes from its order."""

    order_id: int
    customer_id: str
    engineer_id: str | None
    region: str | None
    state: str


async def order_facts(conn: asyncpg.Connection, order_id: int) -> OrderFacts | None:
    """The order's customer, engineer, machine region and state; None when there is none."""
    row = await conn.fetchrow(
        "SELECT o.order_id, o.customer_id, o.engineer_id, m.region, o.state FROM orders o "
        "JOIN machines m USING (machine_id) WHERE o.order_id = $1",
        order_id,
    )
    return None if row is None else OrderFacts(*row.values())


@dataclass(frozen=True, slots=True)
class SurveyRecord:
    """One survey's answers, as stored."""

    customer_id: str
    order_id: int | None
    region: str | None
    engineer_id: str | None
    answered_at: datetime
    channel: str
    answers: Mapping[str, int]
    recorded_by: str


async def insert_survey(conn: asyncpg.Connection, s: SurveyRecord) -> int:
    """Store a survey; its id. A survey of an order also closes the order's open
    post-completion callback task on the monitoring desk (the answers are what it asks for).

    Raises:
        ConflictError: The order has a survey already.
    """
    async with conn.transaction():
        survey_id = await _insert(conn, s)
        if s.order_id is not None:
            await conn.execute(
                "UPDATE desk_tasks SET state = 'done', reached = true, said = $2, "
                "follow_up = '', done_at = now(), done_by = $3 "
                "WHERE order_id = $1 AND kind = 'post_completion_callback' AND state = 'open'",
                s.order_id,
                f"survey {survey_id} answered ({s.channel})",
                s.recorded_by,
            )
    return survey_id


async def _insert(conn: asyncpg.Connection, s: SurveyRecord) -> int:
    try:
        value = await conn.fetchval(
            "INSERT INTO surveys (customer_id, order_id, region, engineer_id, answered_at, "
            "channel, answers, recorded_by) VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8) "
            "RETURNING survey_id",
            s.customer_id, s.order_id, s.region, s.engineer_id, s.answered_at, s.channel,
            orjson.dumps(dict(s.answers)).decode(), s.recorded_by,
        )  # fmt: skip
    except asyncpg.UniqueViolationError as exc:
        raise ConflictError("survey of order", str(s.order_id)) from exc
    return int(value)


@dataclass(frozen=True, slots=True)
class Scope:
    """Which answers count; None means any."""

    customer_id: str | None = None
    region: str | None = None
    engineer_id: str | None = None


async def answers_in(
    conn: asyncpg.Connection, since: datetime, until: datetime, scope: Scope, *, limit: int
) -> list[tuple[datetime, dict[str, int]]]:
    """Answers given in [since, until) within the scope, oldest first, at most `limit`."""
    rows = await conn.fetch(
        "SELECT answered_at, answers::text AS answers FROM surveys "
        "WHERE answered_at >= $1 AND answered_at < $2 "
        "AND ($3::text IS NULL OR customer_id = $3) AND ($4::text IS NULL OR region = $4) "
        "AND ($5::text IS NULL OR engineer_id = $5) ORDER BY answered_at LIMIT $6",
        since, until, scope.customer_id, scope.region, scope.engineer_id, limit,
    )  # fmt: skip
    return [(r["answered_at"], orjson.loads(r["answers"])) for r in rows]


async def current_instrument(conn: asyncpg.Connection) -> tuple[int, Any] | None:
    """The newest instrument put over the API (version, document); None when none was."""
    row = await conn.fetchrow(
        "SELECT version, doc::text AS doc FROM satisfaction_instruments "
        "ORDER BY version DESC LIMIT 1"
    )
    return None if row is None else (row["version"], orjson.loads(row["doc"]))


async def put_instrument(conn: asyncpg.Connection, doc: Mapping[str, Any], by: str) -> int:
    """Store a new instrument version (validated by the caller); its version."""
    value = await conn.fetchval(
        "INSERT INTO satisfaction_instruments (doc, created_by) VALUES ($1::jsonb, $2) "
        "RETURNING version",
        orjson.dumps(dict(doc)).decode(),
        by,
    )
    return int(value)


async def set_region(conn: asyncpg.Connection, machine_id: str, region: str | None) -> None:
    """Set (or clear) a machine's region.

    Raises:
        NotFoundError: No such machine.
    """
    done = await conn.execute(
        "UPDATE machines SET region = $2, updated_at = now() WHERE machine_id = $1",
        machine_id,
        region,
    )
    if done == "UPDATE 0":
        raise NotFoundError("machine", machine_id)
