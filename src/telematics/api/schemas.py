"""HTTP request and response bodies."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from datetime import UTC, date, datetime, time
from typing import Annotated, Any, cast

from fastapi import Path, Query
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
)

from telematics.store import machine_fields as fields
from telematics.store.machine_fields import MachineClass
from telematics.store.machine_status import MachineStatus
from telematics.store.readings import StoredReading
from telematics.store.registry import Engineer, Machine, MachineRecord, Site
from telematics.store.rejects import DeadLetter

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"

INT64_MAX = 2**63 - 1
INT32_MAX = 2**31 - 1

StoredId = Annotated[int, Field(ge=1, le=INT64_MAX)]
"""A row id in a body: bigint, so a larger number is refused here, not by the driver."""


def _digits(value: object) -> object:
    # int() takes " 1", "+1", "1_0" and other scripts' digits; an id in a path is ASCII digits.
    if isinstance(value, str) and not (value.isascii() and value.isdigit()):
        raise ValueError("an id is digits only")
    return value


PathId = Annotated[int, BeforeValidator(_digits), Path(ge=1, le=INT64_MAX)]
"""A row id in the path: digits only, bigint."""
BeforeId = Annotated[int | None, Query(ge=1, le=INT64_MAX, description="Keyset: ids below")]
"""A keyset cursor in the query."""

# Windows are computed around a requested time (an hour before it, minutes after an alarm), so
# the accepted range keeps a day clear of the ends of Python's and PostgreSQL's calendars.
_EARLIEST = datetime(1, 1, 2, tzinfo=UTC)
_LATEST = datetime(9999, 12, 30, tzinfo=UTC)


def _within_calendar(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("the time needs a UTC offset (Z or +08:00, say)")
    try:
        utc = value.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError("the time lies outside the years 1 to 9999") from exc
    if not _EARLIEST <= utc <= _LATEST:
        raise ValueError("the time must lie between 0001-01-02 and 9999-12-30 (UTC)")
    return value


Instant = Annotated[datetime, AfterValidator(_within_calendar)]
"""A time in a query or body: with a UTC offset (a time without one names no instant), and
bounded so that windows around it stay inside the calendar."""


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


def _checked(problem: Callable[[str], str | None]) -> Callable[[str], str]:
    def check(value: str) -> str:
        found = problem(value)
        if found:
            raise ValueError(found)
        return value

    return check


def _calendar_day(value: object) -> object:
    # A delivery is a day, written as one: not a timestamp, not a number of seconds.
    if isinstance(value, date) or (isinstance(value, str) and _DAY.fullmatch(value)):
        return value
    raise ValueError("must be a date like 2024-03-18")


_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")

Designation = Annotated[
    str,
    Field(min_length=1, max_length=fields.DESIGNATION_MAX, pattern=fields.DESIGNATION_PATTERN),
]
Oem = Annotated[
    str,
    Field(max_length=fields.OEM_MAX),
    AfterValidator(_checked(lambda v: fields.text_problem(v, fields.OEM_MAX))),
]
DisplayName = Annotated[
    str,
    Field(max_length=fields.NAME_MAX),
    AfterValidator(_checked(lambda v: fields.text_problem(v, fields.NAME_MAX))),
]


class MachineIn(BodyIn):
    """A machine to register, as the fleet describes it."""

    machine_id: str = Field(pattern=ID_PATTERN, examples=["EX-0001"])
    model: Designation = Field(
        description="Model designation as the manufacturer writes it.",
        examples=["SY215C", "PC200-8", "320 GC"],
    )
    machine_class: MachineClass | None = Field(
        default=None,
        description="Selects the rule book and the fallback anomaly model. Left out, it follows "
        "from the model (`crane` is a crane; a designation such as SY215C gives `other`).",
    )
    customer_id: str = Field(pattern=ID_PATTERN, examples=["CUST-001"])
    site: SiteIn | None = None
    oem: Oem | None = Field(default=None, examples=["SANY"])
    serial_number: Designation | None = Field(default=None, description="Serial number or PIN.")
    fuel_tank_l: float | None = Field(default=None, gt=0, le=fields.FUEL_TANK_L_MAX)
    delivered_at: Annotated[date, BeforeValidator(_calendar_day)] | None = Field(
        default=None,
        strict=False,
        ge=fields.DELIVERED_FIRST,
        le=fields.DELIVERED_LAST,
        description="Delivery date (YYYY-MM-DD): the warranty starts on it.",
    )
    name: DisplayName | None = Field(default=None, examples=["Excavator 7, north pit"])

    def record(self) -> MachineRecord:
        """The store's value."""
        site = self.site
        return MachineRecord(
            machine_id=self.machine_id,
            model=self.model,
            customer_id=self.customer_id,
            site=Site(site.lat, site.lon, site.radius_m) if site else None,
            machine_class=self.machine_class,
            oem=self.oem,
            serial_number=self.serial_number,
            fuel_tank_l=self.fuel_tank_l,
            delivered_at=self.delivered_at,
            name=self.name,
        )


class Position(BaseModel):
    """A position, degrees."""

    lat: float
    lon: float


class MachineOut(BaseModel):
    """A registered machine and how it is doing."""

    machine_id: str
    model: str
    machine_class: MachineClass
    customer_id: str
    site: SiteIn | None
    oem: str | None
    serial_number: str | None
    fuel_tank_l: float | None
    delivered_at: date | None
    name: str | None
    created_at: datetime
    last_reading_at: datetime | None = Field(
        default=None, description="Time of the newest reading; null if it never reported."
    )
    online: bool = Field(
        default=False,
        description="The newest reading is within `online_within_s` (default 300 s) of now.",
    )
    position: Position | None = Field(default=None, description="Of the newest reading.")
    engine_hours: float | None = Field(default=None, description="Of the newest reading.")
    open_alarms: int = 0

    @classmethod
    def of(cls, machine: Machine, status: MachineStatus | None = None) -> MachineOut:
        """From the store's values."""
        site = machine.site
        out = cls(
            machine_id=machine.machine_id,
            model=machine.model,
            machine_class=cast(MachineClass, machine.machine_class),
            customer_id=machine.customer_id,
            site=SiteIn(lat=site.lat, lon=site.lon, radius_m=site.radius_m) if site else None,
            oem=machine.oem,
            serial_number=machine.serial_number,
            fuel_tank_l=machine.fuel_tank_l,
            delivered_at=machine.delivered_at,
            name=machine.name,
            created_at=machine.created_at,
        )
        if status is not None:
            out.last_reading_at = status.last_reading_at
            out.online = status.online
            if status.lat is not None and status.lon is not None:
                out.position = Position(lat=status.lat, lon=status.lon)
            out.engine_hours = status.engine_hours
            out.open_alarms = status.open_alarms
        return out

    @classmethod
    def of_status(cls, status: MachineStatus) -> MachineOut:
        """From a machine with its status."""
        return cls.of(status.machine, status)


class MachinePage(BaseModel):
    """A page of machines; pass `next_after` as `after` for the next one."""

    machines: list[MachineOut]
    next_after: str | None


class MachineImportOut(BaseModel):
    """What a machine import wrote."""

    kind: str = "machines"
    rows: int
    created: int
    updated: int


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
