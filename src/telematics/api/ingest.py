"""Dead letters of the ingest path: list them, replay them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from telematics.api.context import Admin, Conn, Context
from telematics.api.schemas import BeforeId, RejectOut, RejectPage, ReplayIn, ReplayOut
from telematics.ingest.pipeline import replay
from telematics.store import rejects as rejects_store

router = APIRouter(prefix="/v1/ingest", dependencies=[Admin], tags=["ingest"])

_REPLAY_ALL = ReplayIn()


@router.get("/rejects")
async def list_rejects(
    conn: Conn,
    reason: str | None = None,
    source_id: str | None = None,
    pending: bool = False,
    before: BeforeId = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> RejectPage:
    """Dead letters, newest first. `pending=true` hides those already replayed."""
    letters = await rejects_store.list_rejects(
        conn,
        reason=reason,
        source_id=source_id,
        pending_only=pending,
        before_id=before,
        limit=limit,
    )
    return RejectPage(
        rejects=[RejectOut.of(letter) for letter in letters],
        next_before=letters[-1].reject_id if len(letters) == limit else None,
    )


@router.post("/rejects/replay")
async def replay_rejects(conn: Conn, ctx: Context, body: ReplayIn = _REPLAY_ALL) -> ReplayOut:
    """Feed pending dead letters through the decoder again, e.g. after registering a machine.

    Letters accepted now are stored and marked replayed; letters refused again keep their row with
    the new reason. Readings are deduplicated, so replaying twice stores nothing twice.
    """
    result = await replay(
        conn,
        ctx.directory,
        limits=ctx.limits,
        reject_ids=body.reject_ids,
        reason=body.reason,
        source_id=body.source_id,
        limit=body.limit,
    )
    ctx.metrics.readings_stored.inc(result.readings_inserted)
    return ReplayOut(
        replayed=result.replayed,
        accepted=result.accepted,
        refused=result.refused,
        readings_inserted=result.readings_inserted,
        new_rejects=result.new_rejects,
    )
