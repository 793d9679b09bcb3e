"""Anomaly models: list the trained versions, train a new one (admin)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, status
from pydantic import BaseModel, Field

from diagnosis.model import NotEnoughDataError
from telematics.api.context import Admin, Conn, Context
from telematics.api.schemas import BodyIn
from telematics.base.errors import InvalidRequestError
from telematics.services.training import train
from telematics.store import models as model_store
from telematics.store.models import StoredModel

router = APIRouter(prefix="/v1/models", dependencies=[Admin], tags=["models"])


class TrainIn(BodyIn):
    """What to learn from: the healthy history of the last `days`."""

    days: float = Field(default=14.0, gt=0, le=365)


class ModelOut(BaseModel):
    """One trained model version."""

    model: str
    version: int
    trained_at: datetime
    trained_from: datetime
    trained_to: datetime
    machines: int
    windows: int
    summary: dict[str, Any]

    @classmethod
    def of(cls, m: StoredModel) -> ModelOut:
        """From the store's value."""
        return cls(
            model=m.model,
            version=m.version,
            trained_at=m.trained_at,
            trained_from=m.trained_from,
            trained_to=m.trained_to,
            machines=m.machines,
            windows=m.windows,
            summary=m.summary,
        )


_DEFAULT = TrainIn()


@router.get("")
async def list_models(conn: Conn) -> list[ModelOut]:
    """Every trained version, newest first within each machine model."""
    return [ModelOut.of(m) for m in await model_store.list_models(conn)]


@router.post("/{model}/train", status_code=status.HTTP_201_CREATED)
async def train_model(model: str, conn: Conn, ctx: Context, body: TrainIn = _DEFAULT) -> ModelOut:
    """Train `model`'s anomaly model on its healthy history; the new version is used at once
    by this service and within a minute by every other worker.
    """
    if ctx.rules is None:
        raise InvalidRequestError("diagnosis is not enabled in this service")
    end = datetime.now(UTC)
    try:
        stored = await train(conn, model, end - timedelta(days=body.days), end, ctx.rules)
    except NotEnoughDataError as exc:
        raise InvalidRequestError(f"cannot train {model}: {exc}") from exc
    if ctx.models_changed is not None:
        await ctx.models_changed()
    return ModelOut.of(stored)
