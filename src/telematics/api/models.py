"""Anomaly models: list the trained versions, train a new one (admin).

A model is trained for a model designation (`scope` `model`, the default: `POST
/v1/models/SY215C/train`) or for a machine class (`scope` `class`: `POST
/v1/models/excavator/train` with `{"scope": "class"}`); a machine is scored by its designation's
model, else by its class's.
"""

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
from telematics.store.machine_fields import MACHINE_CLASSES
from telematics.store.models import Scope, StoredModel

router = APIRouter(prefix="/v1/models", dependencies=[Admin], tags=["models"])


class TrainIn(BodyIn):
    """What to learn from: the healthy history of the last `days`, of the machines of a
    designation (`scope` `model`) or of a class (`class`).
    """

    days: float = Field(default=14.0, gt=0, le=365)
    scope: Scope = "model"


class ModelOut(BaseModel):
    """One trained model version: of a designation (`scope` `model`) or a class (`class`)."""

    scope: Scope
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
            scope=m.scope,
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
    """Every trained version, newest first within each designation or class."""
    return [ModelOut.of(m) for m in await model_store.list_models(conn)]


@router.post("/{model}/train", status_code=status.HTTP_201_CREATED)
async def train_model(model: str, conn: Conn, ctx: Context, body: TrainIn = _DEFAULT) -> ModelOut:
    """Train the anomaly model of `model` (a designation, or a class with `scope` `class`) on
    its machines' healthy history; the new version is used at once by this service and within a
    minute by every other worker.
    """
    if ctx.rules is None:
        raise InvalidRequestError("diagnosis is not enabled in this service")
    if body.scope == "class" and model not in MACHINE_CLASSES:
        raise InvalidRequestError(f"{model!r} is not one of {', '.join(MACHINE_CLASSES)}")
    end = datetime.now(UTC)
    try:
        stored = await train(
            conn, model, end - timedelta(days=body.days), end, ctx.rules, body.scope
        )
    except NotEnoughDataError as exc:
        raise InvalidRequestError(f"cannot train {model}: {exc}") from exc
    if ctx.models_changed is not None:
        await ctx.models_changed()
    return ModelOut.of(stored)
