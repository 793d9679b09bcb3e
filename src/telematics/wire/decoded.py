"""What decoding yields: accepted rows as columns, refusals as values, and the batch of both.

This module owns the values that leave `telematics.wire.decode` for the store, the diagnosis adapter
and the gateway: `ReadingColumns` and `PositionColumns` (one list per column; readings in
`SIGNALS` order, NaN where a signal is absent), `Reject` with its `RejectReason` codes (stored in
`ingest_rejects.reason`), and `DecodedBatch`, which holds all three. `telematics.wire.decode`
re-exports every one of them.

It must never parse, validate or decide what is accepted (that is `telematics.wire.decode`'s), do
I/O, or put logic in the way of an append: the decoder appends to these lists once per reading,
so they stay plain slotted dataclasses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from diagnosis.signals import SIGNALS


class RejectReason(StrEnum):
    """Why a payload or a reading was refused; stored in `ingest_rejects.reason`.

    `BAD_TEXT` is text the store cannot hold (a NUL character, a lone surrogate) in a key or a
    value kept as sent. `DECODE_ERROR` is an exception the decoder did not foresee, its class in
    the detail: a decoder bug, replayable once it is fixed.
    """

    BAD_TOPIC = "bad_topic"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    NOT_JSON = "not_json"
    BAD_STRUCTURE = "bad_structure"
    TOO_MANY_READINGS = "too_many_readings"
    MACHINE_ID_MISMATCH = "machine_id_mismatch"
    UNKNOWN_MACHINE = "unknown_machine"
    UNKNOWN_ENGINEER = "unknown_engineer"
    BAD_TIMESTAMP = "bad_timestamp"
    TS_IN_FUTURE = "ts_in_future"
    TS_TOO_OLD = "ts_too_old"
    WRONG_TYPE = "wrong_type"
    NOT_FINITE = "not_finite"
    OUT_OF_RANGE = "out_of_range"
    BAD_DTC = "bad_dtc"
    BAD_TEXT = "bad_text"
    DECODE_ERROR = "decode_error"
    STORE_ERROR = "store_error"


@dataclass(frozen=True, slots=True)
class Reject:
    """A payload, or one reading of it, that could not be accepted.

    Attributes:
        topic: The MQTT topic it arrived on.
        payload: The bytes refused: the whole payload, or the one reading re-encoded as JSON.
        reason: Machine-readable reason code.
        detail: Human explanation, naming the field and value where there is one.
        source_id: Machine or engineer id from the topic, when the topic could be parsed.
    """

    topic: str
    payload: bytes
    reason: RejectReason
    detail: str
    source_id: str | None = None


@dataclass(slots=True)
class ReadingColumns:
    """Accepted telemetry readings as columns, in `SIGNALS` order; NaN where a signal is absent.

    `dtc` and `extra` hold JSON text (or None), ready for the JSONB columns.
    """

    machine_ids: list[str] = field(default_factory=list)
    ts_ms: list[int] = field(default_factory=list)
    values: list[list[float]] = field(default_factory=lambda: [[] for _ in SIGNALS])
    dtc: list[str | None] = field(default_factory=list)
    extra: list[str | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ts_ms)

    def extend(self, other: ReadingColumns) -> None:
        """Append all of `other`'s readings."""
        self.machine_ids.extend(other.machine_ids)
        self.ts_ms.extend(other.ts_ms)
        for mine, theirs in zip(self.values, other.values, strict=True):
            mine.extend(theirs)
        self.dtc.extend(other.dtc)
        self.extra.extend(other.extra)

    def truncate(self, count: int) -> None:
        """Keep the first `count` readings, each column cut on its own (even if uneven)."""
        columns: tuple[list[Any], ...] = (
            self.machine_ids,
            self.ts_ms,
            self.dtc,
            self.extra,
            *self.values,
        )
        for column in columns:
            del column[count:]


@dataclass(slots=True)
class PositionColumns:
    """Accepted engineer positions as columns."""

    engineer_ids: list[str] = field(default_factory=list)
    ts_ms: list[int] = field(default_factory=list)
    lat: list[float] = field(default_factory=list)
    lon: list[float] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ts_ms)

    def extend(self, other: PositionColumns) -> None:
        """Append all of `other`'s positions."""
        self.engineer_ids.extend(other.engineer_ids)
        self.ts_ms.extend(other.ts_ms)
        self.lat.extend(other.lat)
        self.lon.extend(other.lon)

    def truncate(self, count: int) -> None:
        """Keep the first `count` positions, each column cut on its own (even if uneven)."""
        columns: tuple[list[Any], ...] = (self.engineer_ids, self.ts_ms, self.lat, self.lon)
        for column in columns:
            del column[count:]


@dataclass(slots=True)
class DecodedBatch:
    """Everything decoded from a group of messages: accepted rows and dead letters."""

    readings: ReadingColumns = field(default_factory=ReadingColumns)
    positions: PositionColumns = field(default_factory=PositionColumns)
    rejects: list[Reject] = field(default_factory=list)
