"""HTTP request and response bodies."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime, time
from typing import Annotated, Any

from fastapi import Path, Query
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
)

from telematics.store.readings import StoredReading
from telematics.store.registry import Engineer, Machine
from telematics.store.rejects import DeadLetter

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"

INT64_MAX = 2**63 - 1
INT32_MAX = 2**31 - 1

StoredId = Annotated[int, Field(ge=1, le=INT64_MAX)]
"""A row id in a body: bigint, so a larger number is refused here, not by the driver."""
PathId = Annotated[int, Path(ge=1, le=INT64_MAX)]
"""A row id in the path."""
BeforeId = Annotated[int | None, Query(ge=1, le=INT64_MAX, description="Keyset: ids below")]
"""A keyset cursor in the query."""

# Windows are computed around a requested time (an hour before it, minutes after an alarm), so
# the accepted range keeps a day clear of the ends of Python's and PostgreSQL's calendars.
_EARLIEST = datetime(1, 1, 2, tzinfo=UTC)
_LATEST = datetime(9999, 12, 30, tzinfo=UTC)


def _within_calendar(value: datetime) -> datetime:
    try:
        utc = value.astimezone(UTC) if value.tzinfo is not None else value.replace(tzinfo=UTC)
    except OverflowError as exc:
        raise ValueError("the time lies outside the years 1 to 9999") from exc
    if not _EARLIEST <= utc <= _LATEST:
        raise ValueError("the time must lie between 0001-01-02 and 9999-12-30 (UTC)")
    return value


Instant = Annotated[datetime, AfterValidator(_within_calendar)]
"""A time in a query or body, bounded so that windows around it stay inside the calendar."""


def _local(value: time) -> time:
    if value.tzinfo is not None:
        raise ValueError("a local time of day, without an offset (the zone is given apart)")
    return value


LocalTime = Annotated[
    time,
    AfterValidator(_local),
    # JSON Schema's "time" format demands an offset (RFC 3339 full-time); these have none.
    WithJsonSchema(
        {
            "type": "string",
            "format": "partial-time",
            "pattern": r"^([01]\d|2[0-3]):[0-5]\d(:[0-5]\d(\.\d{1,6})?)?$",
            "examples": ["08:00:00"],
        }
    ),
]
"""A time of day on the wall clock of a zone named beside it (RFC 3339 partial-time)."""

_FORBIDDEN_CHARS = re.compile("[\x00\ud800-\udfff]")


def _storable_text(value: object) -> object:
    if isinstance(value, str):
        if _FORBIDDEN_CHARS.search(value):
            raise ValueError("text may not contain NUL characters or lone surrogates")
    elif isinstance(value, list | tuple):
        for item in value:
            _storable_text(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            _storable_text(key)
            _storable_text(item)
    return value


class BodyIn(BaseModel):
    """Base of request bodies: unknown fields refused, numbers strict, text storable.

    Strict means `true` is not `1` and `"5"` is not `5`. Fields whose JSON form is a string of
    another type (times, enums) opt out with `Field(strict=False)`. Every text field, at any
    depth, is refused if it holds a NUL or a lone surrogate, which PostgreSQL cannot store.
    """

    model_config = ConfigDict(extra="forbid", strict=True)

    @field_validator("*", mode="after")
    @classmethod
    def _text_is_storable(cls, value: object) -> object:
        return _storable_text(value)


class ProblemOut(BaseModel):
    """An error, as RFC 9457 problem details (`application/problem+json`)."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    errors: list[dict[str, Any] | str] | None = Field(
        default=None,
        description="What failed: for validation, each field's loc, msg and type; for a CSV "
        "import, each bad line in words",
    )


class SiteIn(BodyIn):
    """Where a machine works."""

    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    radius_m: float = Field(default=500.0, gt=0, le=100_000)


class MachineIn(BodyIn):
    """A machine to register."""

    machine_id: str = Field(pattern=ID_PATTERN, examples=["EX-0001"])
    model: str = Field(pattern=r"^[a-z0-9_]{1,32}$", examples=["excavator"])
    customer_id: str = Field(pattern=ID_PATTERN, examples=["CUST-001"])
    site: SiteIn | None = None


class MachineOut(BaseModel):
    """A registered machine."""

    machine_id: str
    model: str
    customer_id: str
    site: SiteIn | None
    created_at: datetime

    @classmethod
    def of(cls, machine: Machine) -> MachineOut:
        """From the store's value."""
        site = machine.site
        return cls(
            machine_id=machine.machine_id,
            model=machine.model,
            customer_id=machine.customer_id,
            site=SiteIn(lat=site.lat, lon=site.lon, radius_m=site.radius_m) if site else None,
            created_at=machine.created_at,
        )


class MachinePage(BaseModel):
    """A page of machines; pass `next_after` as `after` for the next one."""

    machines: list[MachineOut]
    next_after: str | None


class EngineerIn(BodyIn):
    """An engineer to register."""

    engineer_id: str = Field(pattern=ID_PATTERN)
    name: str = Field(min_length=1, max_length=200)


class EngineerOut(BaseModel):
    """A registered engineer."""

    engineer_id: str
    name: str
    created_at: datetime

    @classmethod
    def of(cls, engineer: Engineer) -> EngineerOut:
        """From the store's value."""
        return cls(
            engineer_id=engineer.engineer_id, name=engineer.name, created_at=engineer.created_at
        )


class ReadingOut(BaseModel):
    """One stored reading; absent signals are null."""

    ts: datetime
    engine_speed_rpm: float | None = None
    oil_pressure_kpa: float | None = None
    coolant_temp_c: float | None = None
    hydraulic_oil_temp_c: float | None = None
    fuel_level_pct: float | None = None
    battery_v: float | None = None
    engine_hours: float | None = None
    lat: float | None = None
    lon: float | None = None
    load_pct: float | None = None
    dtc: list[dict[str, int]] = Field(default_factory=list)
    extra: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def of(cls, reading: StoredReading) -> ReadingOut:
        """From the store's value."""
        return cls(ts=reading.ts, dtc=reading.dtc, extra=reading.extra, **reading.signals)


class ReadingPage(BaseModel):
    """Readings oldest first; when `next_start` is set, more follow from there."""

    machine_id: str
    readings: list[ReadingOut]
    next_start: datetime | None


class RejectOut(BaseModel):
    """A dead letter."""

    reject_id: int
    received_at: datetime
    topic: str
    source_id: str | None
    reason: str
    detail: str
    payload_text: str | None = Field(description="The payload as UTF-8, when it is text.")
    payload_base64: str
    replay_of: int | None
    replay_attempts: int
    replayed_at: datetime | None

    @classmethod
    def of(cls, letter: DeadLetter) -> RejectOut:
        """From the store's value."""
        try:
            text: str | None = letter.payload.decode()
        except UnicodeDecodeError:
            text = None
        return cls(
            reject_id=letter.reject_id,
            received_at=letter.received_at,
            topic=letter.topic,
            source_id=letter.source_id,
            reason=letter.reason,
            detail=letter.detail,
            payload_text=text,
            payload_base64=base64.b64encode(letter.payload).decode(),
            replay_of=letter.replay_of,
            replay_attempts=letter.replay_attempts,
            replayed_at=letter.replayed_at,
        )


class RejectPage(BaseModel):
    """Dead letters, newest first; pass `next_before` as `before` for the next page."""

    rejects: list[RejectOut]
    next_before: int | None


class ReplayIn(BodyIn):
    """Which pending dead letters to replay; no filter means all of them, oldest first."""

    reject_ids: list[StoredId] | None = Field(default=None, max_length=10_000)
    reason: str | None = None
    source_id: str | None = None
    limit: int = Field(default=1000, ge=1, le=10_000)


class ReplayOut(BaseModel):
    """What a replay did."""

    replayed: int
    accepted: int
    refused: int
    readings_inserted: int
    new_rejects: int
