"""Surveys and the satisfaction index over HTTP: the instrument, answers in, the index out.

`GET/PUT /v1/satisfaction/instrument`, `POST /v1/surveys`, `GET /v1/satisfaction`. The
instrument in use is the newest one put over the API, else the file of
`TELEMATICS_SATISFACTION_INSTRUMENT_PATH`, else the packaged ACSI one. A customer answers only
its own orders' surveys and sees only its own index; staff see every answer, by region and
engineer.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

import asyncpg
from fastapi import APIRouter, Depends, Query, status
from pydantic import BaseModel, Field, StringConstraints

from telematics.api.context import Caller, Conn, Context, allow
from telematics.api.schemas import ID_PATTERN, BodyIn, Instant, StoredId
from telematics.base.config import Settings
from telematics.base.errors import InvalidRequestError, NotFoundError, RefusedError
from telematics.quality import instrument as instruments
from telematics.quality import survey_store
from telematics.quality.index import PeriodIndex, answer_matrix, period_index
from telematics.quality.instrument import Instrument
from telematics.quality.periods import Period, default_since, period_start, starts
from telematics.quality.plspm import EstimationError, Scheme
from telematics.store.tokens import Principal, Role

router = APIRouter(prefix="/v1", tags=["satisfaction"])

MAX_ANSWERS = 500_000
"""Answers one index query may read; a longer span is refused (ask for a shorter one)."""
FUTURE_TOLERANCE = timedelta(minutes=5)

Name = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
Text = Annotated[str, StringConstraints(min_length=1, max_length=500)]


class ItemIO(BodyIn):
    """A question."""

    item: Name
    text_zh: Text
    text_en: Text


class ConstructIO(BodyIn):
    """A construct and its items."""

    name: Name
    items: list[ItemIO] = Field(min_length=1, max_length=instruments.MAX_ITEMS)


class InstrumentIO(BodyIn):
    """The survey instrument: constructs with their 1-10 items, paths, the index construct."""

    constructs: list[ConstructIO] = Field(min_length=2, max_length=instruments.MAX_CONSTRUCTS)
    paths: list[Annotated[list[Name], Field(min_length=2, max_length=2)]] = Field(max_length=500)
    index: Name
    version: int | None = Field(default=None, description="Stored version; None: shipped file")


async def _instrument(
    conn: asyncpg.Connection, settings: Settings
) -> tuple[int | None, Instrument]:
    stored = await survey_store.current_instrument(conn)
    if stored is not None:
        return stored[0], Instrument.from_doc(stored[1])
    return None, instruments.load(settings.satisfaction_instrument_path)


@router.get("/satisfaction/instrument")
async def get_instrument(conn: Conn, ctx: Context, caller: Caller) -> InstrumentIO:
    """The survey instrument in use (the questions a customer is asked, in zh and en)."""
    version, found = await _instrument(conn, ctx.settings)
    return InstrumentIO.model_validate({**found.to_doc(), "version": version})


@router.put("/satisfaction/instrument")
async def put_instrument(
    body: InstrumentIO, conn: Conn, caller: Annotated[Principal, Depends(allow())]
) -> InstrumentIO:
    """Replace the instrument (a new version; answers already stored are kept as given)."""
    doc = body.model_dump(exclude={"version"})
    found = Instrument.from_doc(doc)  # 422 naming what is wrong
    version = await survey_store.put_instrument(conn, found.to_doc(), caller.actor)
    return InstrumentIO.model_validate({**found.to_doc(), "version": version})


Channel = Literal["phone", "sms", "app", "web", "visit"]
Score = Annotated[int, Field(ge=1, le=10)]


class SurveyIn(BodyIn):
    """One customer's answers: after an order's completion, or a periodic callback."""

    customer_id: str = Field(pattern=ID_PATTERN)
    order_id: StoredId | None = None
    region: str | None = Field(default=None, pattern=ID_PATTERN)
    engineer_id: str | None = Field(default=None, pattern=ID_PATTERN)
    answered_at: Instant = Field(strict=False)
    channel: Channel
    answers: dict[Name, Score] = Field(min_length=1, max_length=200)


class SurveyOut(BaseModel):
    """A stored survey."""

    survey_id: int
    customer_id: str
    order_id: int | None
    region: str | None
    engineer_id: str | None
    answered_at: datetime
    channel: str
    answers: dict[str, int]
    instrument_version: int | None


def _check_time(answered_at: datetime) -> None:
    if answered_at.tzinfo is None:
        raise InvalidRequestError("answered_at needs a UTC offset")
    if answered_at > datetime.now(UTC) + FUTURE_TOLERANCE:
        raise InvalidRequestError("answered_at lies in the future")


def _check_customer(body: SurveyIn, caller: Principal) -> None:
    if body.customer_id != caller.subject_id:
        raise InvalidRequestError("customer_id must be the caller's own")
    if body.order_id is None:
        raise InvalidRequestError("a customer answers the survey of one of its orders: order_id")
    if body.region is not None or body.engineer_id is not None:
        raise InvalidRequestError("region and engineer_id come from the order")


async def _order_of(
    conn: asyncpg.Connection, body: SurveyIn, caller: Principal
) -> survey_store.OrderFacts:
    assert body.order_id is not None
    order = await survey_store.order_facts(conn, body.order_id)
    if order is None or (caller.role is Role.CUSTOMER and order.customer_id != caller.subject_id):
        raise NotFoundError("order", str(body.order_id))
    if order.customer_id != body.customer_id:
        raise InvalidRequestError(f"order {order.order_id} is not customer's order")
    if order.state not in ("completed", "closed"):
        raise RefusedError(f"order {order.order_id} is {order.state}, not completed")
    return order


@router.post("/surveys", status_code=status.HTTP_201_CREATED)
async def post_survey(
    body: SurveyIn,
    conn: Conn,
    ctx: Context,
    caller: Annotated[Principal, Depends(allow(Role.EXPERT, Role.MONITOR, Role.CUSTOMER))],
) -> SurveyOut:
    """Store a survey's answers (partial answers allowed; items must be the instrument's).

    With `order_id`, region and engineer default to the order's; a customer may answer only
    its own completed orders' surveys, once each.
    """
    _check_time(body.answered_at)
    version, found = await _instrument(conn, ctx.settings)
    unknown = sorted(set(body.answers) - set(found.items))
    if unknown:
        raise InvalidRequestError(f"items not in the instrument: {', '.join(unknown[:10])}")
    if caller.role is Role.CUSTOMER:
        _check_customer(body, caller)
    region, engineer_id = body.region, body.engineer_id
    if body.order_id is not None:
        order = await _order_of(conn, body, caller)
        region = region or order.region
        engineer_id = engineer_id or order.engineer_id
    record = survey_store.SurveyRecord(
        body.customer_id, body.order_id, region, engineer_id, body.answered_at, body.channel,
        body.answers, caller.actor,
    )  # fmt: skip
    survey_id = await survey_store.insert_survey(conn, record)
    return SurveyOut(
        survey_id=survey_id, customer_id=record.customer_id, order_id=record.order_id,
        region=region, engineer_id=engineer_id, answered_at=record.answered_at,
        channel=record.channel, answers=dict(record.answers), instrument_version=version,
    )  # fmt: skip


class PathOut(BaseModel):
    """A path coefficient."""

    from_: str = Field(serialization_alias="from")
    to: str
    coefficient: float


class PeriodOut(BaseModel):
    """The index of one period, or why there is none."""

    period_start: datetime
    n: int = Field(description="Answers in the period")
    index: float | None = Field(description="Satisfaction index, 0-100")
    index_ci_95: list[float] | None = Field(description="Percentile bootstrap 95% interval")
    constructs: dict[str, float | None] = Field(description="Construct -> score, 0-100")
    paths: list[PathOut]
    weights: dict[str, float] = Field(description="PLS outer weights: unit-variance scores")
    index_weights: dict[str, float] = Field(description="w̃: the index's weights, sum 1")
    r_squared: dict[str, float]
    refused: str | None = Field(description="Why there is no index for this period")


class SatisfactionOut(BaseModel):
    """The index, period by period."""

    period: str
    scheme: str
    min_n: int
    instrument_version: int | None
    periods: list[PeriodOut]


def _period_out(start: datetime, n: int, fit: PeriodIndex | None, refused: str | None) -> PeriodOut:
    if fit is None:
        return PeriodOut(
            period_start=start, n=n, index=None, index_ci_95=None, constructs={}, paths=[],
            weights={}, index_weights={}, r_squared={}, refused=refused,
        )  # fmt: skip
    return PeriodOut(
        period_start=start, n=n, index=round(fit.index, 3),
        index_ci_95=None if fit.ci_95 is None else [round(v, 3) for v in fit.ci_95],
        constructs={k: None if v is None else round(v, 3) for k, v in fit.constructs.items()},
        paths=[PathOut(from_=a, to=b, coefficient=c) for a, b, c in fit.paths],
        weights=fit.weights, index_weights=fit.index_weights, r_squared=fit.r_squared,
        refused=None,
    )  # fmt: skip


def _estimate_periods(
    grouped: dict[datetime, list[dict[str, int]]],
    order: list[datetime],
    found: Instrument,
    scheme: Scheme,
    settings: Settings,
) -> list[PeriodOut]:
    out = []
    for start in order:
        answers = grouped.get(start, [])
        n = len(answers)
        if n < settings.satisfaction_min_n:
            why = f"too few answers to estimate: {n} < {settings.satisfaction_min_n}"
            out.append(_period_out(start, n, None, why))
            continue
        matrix = answer_matrix(answers, found.items)
        try:
            fit = period_index(matrix, found, scheme=scheme,
                               resamples=settings.satisfaction_bootstrap,
                               seed=int(start.timestamp()))  # fmt: skip
        except EstimationError as exc:
            out.append(_period_out(start, n, None, f"cannot estimate: {exc}"))
            continue
        out.append(_period_out(start, n, fit, None))
    return out


@router.get("/satisfaction", response_model_by_alias=True)
async def satisfaction(
    conn: Conn,
    ctx: Context,
    caller: Annotated[Principal, Depends(allow(Role.EXPERT, Role.MONITOR, Role.CUSTOMER))],
    period: Period = Period.MONTH,
    from_: Annotated[Instant | None, Query(alias="from")] = None,
    to: Instant | None = None,
    region: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    engineer_id: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    customer_id: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    scheme: Scheme = Scheme.CENTROID,
) -> SatisfactionOut:
    """The customer satisfaction index per period by PLS-PM (docs/service-quality.md), with
    its bootstrap interval, construct scores, paths, weights and R². A period with fewer than
    `TELEMATICS_SATISFACTION_MIN_N` answers has no index, and says why. Customers see only
    their own answers. Default span: the last 12 months.
    """
    if caller.role is Role.CUSTOMER:
        customer_id = caller.subject_id
    until = to or datetime.now(UTC)
    since = from_ or default_since(until, period)
    try:
        order = starts(since, until, period)
    except ValueError as exc:
        raise InvalidRequestError(str(exc)) from exc
    scope = survey_store.Scope(customer_id, region, engineer_id)
    rows = await survey_store.answers_in(conn, since, until, scope, limit=MAX_ANSWERS + 1)
    if len(rows) > MAX_ANSWERS:
        raise InvalidRequestError(f"more than {MAX_ANSWERS} answers in the span; shorten it")
    version, found = await _instrument(conn, ctx.settings)
    grouped: dict[datetime, list[dict[str, int]]] = {}
    for at, answers in rows:
        grouped.setdefault(period_start(at, period), []).append(answers)
    # The estimation is CPU work: off the event loop, so other requests keep being served.
    periods = await asyncio.to_thread(
        _estimate_periods, grouped, order, found, scheme, ctx.settings
    )
    return SatisfactionOut(period=period.value, scheme=scheme.value,
                           min_n=ctx.settings.satisfaction_min_n, instrument_version=version,
                           periods=periods)  # fmt: skip
