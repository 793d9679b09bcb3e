"""One batch through the ingest path: resolve sources, decode, store. Also the replay of dead
letters, which is the same path fed from `ingest_rejects` instead of MQTT.

Acknowledgement is not done here: the gateway acks a batch's messages only after `ingest`
returns, i.e. after the commit.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import asyncpg

from telematics.base.db import Failure, classify
from telematics.store.ingest import WriteResult, write_batch
from telematics.store.pending import REPLAY_SOURCE
from telematics.store.registry import SourceDirectory
from telematics.store.rejects import claim_for_replay, mark_replayed
from telematics.wire.decode import (
    DecodedBatch,
    Limits,
    RejectReason,
    TopicKind,
    decode_message,
    parse_topic,
    storable,
)

log = logging.getLogger(__name__)


def now_ms() -> int:
    """Wall clock in epoch milliseconds."""
    return time.time_ns() // 1_000_000


async def _decode(
    conn: asyncpg.Connection,
    directory: SourceDirectory,
    messages: Sequence[tuple[str, bytes]],
    clock_ms: int,
    limits: Limits,
) -> DecodedBatch:
    machine_ids: set[str] = set()
    engineer_ids: set[str] = set()
    for topic, _ in messages:
        parsed = parse_topic(topic)
        if parsed is not None:
            (machine_ids if parsed[0] is TopicKind.TELEMETRY else engineer_ids).add(parsed[1])
    await directory.resolve(conn, machine_ids, engineer_ids)
    batch = DecodedBatch()
    for topic, payload in messages:
        decode_message(
            topic,
            payload,
            now_ms=clock_ms,
            limits=limits,
            known_machines=directory.machines,
            known_engineers=directory.engineers,
            out=batch,
        )
    return batch


class BatchTooLargeError(Exception):
    """A batch decoded to more readings than the caller allows in one transaction."""

    def __init__(self, readings: int, max_readings: int) -> None:
        super().__init__(f"{readings} readings in one batch, at most {max_readings}")
        self.readings = readings
        self.max_readings = max_readings


async def ingest(
    conn: asyncpg.Connection,
    directory: SourceDirectory,
    messages: Sequence[tuple[str, bytes]],
    *,
    limits: Limits,
    clock_ms: int | None = None,
    max_readings: int | None = None,
    pending_source: str | None = None,
) -> tuple[DecodedBatch, WriteResult]:
    """Decode and store a batch of `(topic, payload)` messages in one transaction.

    With `pending_source`, the readings are also recorded as waiting for diagnosis, in the same
    transaction (`store.pending`).

    Raises:
        BatchTooLargeError: The batch holds more than `max_readings` readings; nothing was
            written.
    """
    batch = await _decode(
        conn, directory, messages, now_ms() if clock_ms is None else clock_ms, limits
    )
    if max_readings is not None and len(batch.readings) > max_readings:
        raise BatchTooLargeError(len(batch.readings), max_readings)
    return batch, await write_batch(conn, batch, pending_source=pending_source)


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """Outcome of a replay of dead letters.

    Attributes:
        replayed: Dead letters taken up.
        accepted: Dead letters now stored, wholly or all but the readings refused again.
        refused: Dead letters refused again as a whole (their reason is updated).
        readings_inserted: Readings stored by the replay.
        new_rejects: Single readings refused again, dead-lettered with `replay_of` set.
    """

    replayed: int
    accepted: int
    refused: int
    readings_inserted: int
    new_rejects: int


async def replay(
    conn: asyncpg.Connection,
    directory: SourceDirectory,
    *,
    limits: Limits,
    reject_ids: list[int] | None = None,
    reason: str | None = None,
    source_id: str | None = None,
    limit: int = 1000,
    clock_ms: int | None = None,
) -> ReplayResult:
    """Re-feed pending dead letters through the decoder, e.g. after registering a machine.

    Each letter is replayed or refused on its own: the letters are written together, and if the
    database refuses that write for any reason but being unreachable, each letter is written
    again in a savepoint of its own, and a letter refused there keeps its row as `store_error`
    with the error. One poison letter never rolls back, or blocks, the others.
    """
    clock = now_ms() if clock_ms is None else clock_ms
    directory.forget_misses()
    async with conn.transaction():
        letters = await claim_for_replay(
            conn, reject_ids=reject_ids, reason=reason, source_id=source_id, limit=limit
        )
        decoded: list[tuple[int, DecodedBatch]] = []
        refused: list[tuple[int, str, str]] = []
        for letter in letters:
            one = await _decode(conn, directory, [(letter.topic, letter.payload)], clock, limits)
            if not len(one.readings) and not len(one.positions):
                whole = one.rejects[0]
                refused.append((letter.reject_id, whole.reason.value, whole.detail))
            else:
                decoded.append((letter.reject_id, one))
        try:
            written = await _write_replayed(conn, decoded)  # one savepoint for all
        except asyncpg.PostgresError as exc:
            if classify(exc) is not Failure.PERMANENT:
                raise
            log.warning(
                "database refused a replay; writing its %d letters one by one", len(decoded)
            )
            written = await _write_one_by_one(conn, decoded, refused)
        accepted = [reject_id for reject_id, _ in decoded if reject_id not in written.refused]
        await mark_replayed(conn, accepted, refused)
    return ReplayResult(
        replayed=len(letters),
        accepted=len(accepted),
        refused=len(refused),
        readings_inserted=written.readings_inserted,
        new_rejects=written.rejects,
    )


@dataclass(slots=True)
class _Written:
    readings_inserted: int = 0
    rejects: int = 0
    refused: set[int] = field(default_factory=set)


async def _write_replayed(
    conn: asyncpg.Connection, decoded: list[tuple[int, DecodedBatch]]
) -> _Written:
    combined = DecodedBatch()
    replay_of: list[int | None] = []
    for reject_id, one in decoded:
        combined.readings.extend(one.readings)
        combined.positions.extend(one.positions)
        combined.rejects.extend(one.rejects)
        replay_of.extend([reject_id] * len(one.rejects))
    # Replayed readings are diagnosed too, by whichever diagnoser claims them.
    result = await write_batch(  # nested: a savepoint
        conn, combined, replay_of, pending_source=REPLAY_SOURCE
    )
    return _Written(result.readings_inserted, result.rejects)


async def _write_one_by_one(
    conn: asyncpg.Connection,
    decoded: list[tuple[int, DecodedBatch]],
    refused: list[tuple[int, str, str]],
) -> _Written:
    """Write each letter in its own savepoint; a letter the database refuses is refused alone."""
    written = _Written()
    for reject_id, one in decoded:
        try:
            result = await write_batch(
                conn, one, [reject_id] * len(one.rejects), pending_source=REPLAY_SOURCE
            )
        except asyncpg.PostgresError as exc:
            if classify(exc) is not Failure.PERMANENT:
                raise
            written.refused.add(reject_id)
            detail = storable(f"{type(exc).__name__}: {exc}")
            refused.append((reject_id, RejectReason.STORE_ERROR.value, detail))
            continue
        written.readings_inserted += result.readings_inserted
        written.rejects += result.rejects
    return written
