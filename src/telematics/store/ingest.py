"""The ingest write path: one decoded batch into `readings`, `engineer_positions` and
`ingest_rejects`, in one transaction.

Readings are COPYed into a per-connection temporary table, then moved with
`INSERT ... ON CONFLICT DO NOTHING`: COPY is the fastest way in, and the INSERT absorbs repeats of
(machine_id, ts), both across batches (MQTT redelivery) and within one. Absent signals travel as
NaN in the float columns (cheaper than None through COPY) and become NULL on the way out of the
staging table.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from diagnosis.signals import SIGNAL_NAMES
from telematics.store import pending
from telematics.wire.decode import DecodedBatch

_STAGE_COLUMNS = ("machine_id", "ts_ms", *SIGNAL_NAMES, "dtc", "extra")
_INSERT_READINGS = f"""
INSERT INTO readings (machine_id, ts, {", ".join(SIGNAL_NAMES)}, dtc, extra)
SELECT machine_id, 'epoch'::timestamptz + ts_ms * interval '1 millisecond',
       {", ".join(f"NULLIF({name}, 'NaN')" for name in SIGNAL_NAMES)},
       dtc::jsonb, extra::jsonb
FROM readings_stage
ON CONFLICT (machine_id, ts) DO NOTHING
"""
_INSERT_POSITIONS = """
INSERT INTO engineer_positions (engineer_id, ts, lat, lon)
SELECT e, 'epoch'::timestamptz + t * interval '1 millisecond', la, lo
FROM unnest($1::text[], $2::bigint[], $3::float8[], $4::float8[]) AS u(e, t, la, lo)
ON CONFLICT (engineer_id, ts) DO NOTHING
"""
_INSERT_REJECTS = """
INSERT INTO ingest_rejects (topic, source_id, payload, reason, detail, replay_of)
SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[], $4::text[], $5::text[], $6::bigint[])
"""


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What one batch write did.

    Attributes:
        readings_inserted: New readings stored.
        readings_duplicate: Readings absorbed because (machine_id, ts) was already stored.
        positions_inserted: New engineer positions stored.
        rejects: Dead letters written.
        pending_seq: The batch's row in `diagnosis_pending`, if it was recorded there.
    """

    readings_inserted: int
    readings_duplicate: int
    positions_inserted: int
    rejects: int
    pending_seq: int | None = None


def _row_count(status: str) -> int:
    # asyncpg returns the command tag, e.g. "INSERT 0 17".
    return int(status.rsplit(" ", 1)[-1])


async def write_batch(
    conn: asyncpg.Connection,
    batch: DecodedBatch,
    replay_of: list[int | None] | None = None,
    *,
    pending_source: str | None = None,
) -> WriteResult:
    """Store a decoded batch atomically.

    Args:
        conn: A pool connection (it carries the staging table).
        batch: Decoded readings, positions and rejects.
        replay_of: For replays, the dead letter each reject came from, aligned with
            `batch.rejects`.
        pending_source: If set, the batch's readings are recorded as waiting for diagnosis
            (`store.pending`) in the same transaction, under this source.
    """
    readings = batch.readings
    positions = batch.positions
    inserted = positions_inserted = 0
    pending_seq = None
    async with conn.transaction():
        if pending_source is not None and len(readings):
            pending_seq = await pending.add(
                conn, pending_source, readings.machine_ids, readings.ts_ms
            )
        if len(readings):
            records = zip(
                readings.machine_ids,
                readings.ts_ms,
                *readings.values,
                readings.dtc,
                readings.extra,
                strict=True,
            )
            await conn.copy_records_to_table(
                "readings_stage", records=records, columns=_STAGE_COLUMNS
            )
            inserted = _row_count(await conn.execute(_INSERT_READINGS))
        if len(positions):
            positions_inserted = _row_count(
                await conn.execute(
                    _INSERT_POSITIONS,
                    positions.engineer_ids,
                    positions.ts_ms,
                    positions.lat,
                    positions.lon,
                )
            )
        if batch.rejects:
            rejects = batch.rejects
            await conn.execute(
                _INSERT_REJECTS,
                [r.topic for r in rejects],
                [r.source_id for r in rejects],
                [r.payload for r in rejects],
                [r.reason.value for r in rejects],
                [r.detail for r in rejects],
                replay_of if replay_of is not None else [None] * len(rejects),
            )
    return WriteResult(
        readings_inserted=inserted,
        readings_duplicate=len(readings) - inserted,
        positions_inserted=positions_inserted,
        rejects=len(batch.rejects),
        pending_seq=pending_seq,
    )
