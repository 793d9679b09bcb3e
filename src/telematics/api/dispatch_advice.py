"""What an expert consults beside an alarm before acting: who could be sent, and why
(`GET /v1/alarms/{id}/suggestions`), and the faults a diagnosis may be corrected to
(`GET /v1/faults`).

Both only read. The suggestions are the ranking a dispatch would make now
(`services.suggestions`), with each candidate's figures as numbers, so a page can word them in
its own language; `explanation` is the matching's English sentence, as the order's plan keeps it.
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter
from pydantic import BaseModel, Field

from diagnosis.knowledge import KnowledgeBase
from telematics.api.alarm_schemas import PartOut
from telematics.api.context import Context, Staff
from telematics.api.schemas import PathId
from telematics.base.errors import InvalidRequestError
from telematics.services.suggestions import suggest

router = APIRouter(prefix="/v1", tags=["alarms"])


class CandidateOut(BaseModel):
    """An engineer who can serve the order, with the route's figures."""

    engineer_id: str
    pickup_warehouse_id: str | None = Field(description="Where to collect parts; None: the van")
    eta_min: float = Field(description="Minutes from now to arrival at the site")
    distance_km: float = Field(description="Road km of the whole route")
    direct_km: float = Field(description="Road km straight to the site")
    detour_km: float = Field(description="What the pickup adds")
    explanation: str


class RejectionOut(BaseModel):
    """Engineers left out for one reason, with a few of them and the figures."""

    reason: str = Field(
        description="missing_skills, off_shift, at_capacity, no_parts_source or "
        "shift_ends_before_arrival"
    )
    count: int
    examples: list[dict[str, str]] = Field(description="engineer_id and text of a few")


class SuggestionsOut(BaseModel):
    """Who a dispatch would choose from now, fastest first; nothing is reserved."""

    alarm_id: int
    fault: str
    skills: list[str]
    parts: list[PartOut]
    candidates: list[CandidateOut]
    rejected: list[RejectionOut]
    outranked: int = Field(description="More who could serve, all slower than the last listed")
    note: str


class FaultOut(BaseModel):
    """A fault the knowledge base describes."""

    fault: str
    title: str
    severity: str


def _knowledge(ctx: Context) -> KnowledgeBase:
    if ctx.knowledge is None:
        raise InvalidRequestError("diagnosis is not enabled in this service")
    return ctx.knowledge


@router.get("/alarms/{alarm_id}/suggestions")
async def suggestions(alarm_id: PathId, ctx: Context, caller: Staff) -> SuggestionsOut:
    """The engineers a dispatch of this alarm would choose from now, fastest first, each with
    route, pickup and ETA, and why the others are not listed. Reserves nothing.
    """
    found = await suggest(ctx.pool, _knowledge(ctx), alarm_id, now=datetime.now(UTC))
    ranking = found.ranking
    return SuggestionsOut(
        alarm_id=alarm_id,
        fault=found.fault,
        skills=list(found.diagnosis.skills),
        parts=[PartOut(part_no=p.part_no, name=p.name, quantity=p.quantity)
               for p in found.diagnosis.parts],
        candidates=[
            CandidateOut(
                engineer_id=c.engineer_id, pickup_warehouse_id=c.pickup_warehouse_id,
                eta_min=round(c.eta_min, 1), distance_km=round(c.distance_km, 2),
                direct_km=round(c.direct_km, 2), detour_km=round(c.detour_km, 2),
                explanation=c.explanation,
            )
            for c in ranking.candidates
        ],
        rejected=[
            RejectionOut(
                reason=reason.value, count=count,
                examples=[{"engineer_id": r.engineer_id, "text": r.text}
                          for r in ranking.rejected_examples if r.reason is reason],
            )
            for reason, count in ranking.rejected_counts.items()
        ],
        outranked=ranking.outranked,
        note=ranking.note,
    )  # fmt: skip


@router.get("/faults")
async def faults(ctx: Context, caller: Staff) -> list[FaultOut]:
    """The faults the knowledge base describes (what a diagnosis may be corrected to)."""
    kb = _knowledge(ctx)
    found = [kb.diagnose(code) for code in kb.faults]
    return [FaultOut(fault=d.fault, title=d.title, severity=d.severity.value) for d in found]
