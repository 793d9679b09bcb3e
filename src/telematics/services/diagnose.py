"""Diagnosis at the edge: committed batches through the engine, alarm changes into the store.

The gateway hands over each committed batch in commit order (`submit`, synchronous, in the order
acknowledgements go out); one task diagnoses them one by one, so the engine sees every machine's
readings in time order even with several writers committing concurrently. The engine's state is a
cache: a machine it has not seen is restored from its recent readings and its open episodes in the
store before its first batch, and a batch whose diagnosis fails makes the engine forget its
machines, so the next batch restores them from the store again.

Diagnosing after the commit, not inside it, keeps ingestion as fast as it was. If the process dies
between the two, the restore on restart replays the stored readings (persistence counters
included) and takes the open episodes from the store, so a missed raise or clear happens on the
machine's next reading instead.

After the engine, every batch (live and catch-up) goes to the after-batch consumers
(`AfterBatch`, e.g. the work-summary rollup), in the same order; a consumer's database being
away is retried like diagnosis, and a batch it could not take stays pending.

Backpressure: the backlog of committed readings not yet diagnosed is bounded; past the bound,
`room` makes the gateway's writers wait, which holds acknowledgements, which stops the broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import asyncpg
import numpy as np

from diagnosis.engine import Engine
from diagnosis.events import AlarmEvent, Severity, Transition
from diagnosis.frame import Frame
from diagnosis.knowledge import KnowledgeBase
from diagnosis.model import ModelError, RegimeModel
from telematics.base.db import acquire, with_retry
from telematics.base.errors import StoreUnavailableError
from telematics.base.metrics import Metrics
from telematics.services import handover, late
from telematics.services.dtc_report import SuppressedCodes
from telematics.services.recent import RecentMachines
from telematics.store import alarms as alarm_store
from telematics.store import models as model_store
from telematics.store import pending as pending_store
from telematics.store import readings as readings_store
from telematics.store.models import ModelKey
from telematics.wire.decode import ReadingColumns

log = logging.getLogger(__name__)

Notify = Callable[[Sequence[alarm_store.AlarmChange]], None]
_RESTORE_CHUNK = 500
_CATCH_UP_BATCHES = 10


class AfterBatch(Protocol):
    """Work done on every committed batch after the engine, in commit order."""

    async def consume(self, frame: Frame) -> None:
        """Take one batch. Raise only `StoreUnavailableError` (it is retried); anything else
        must be handled (logged) inside: one batch's failure must not stop diagnosis.
        """

    async def flush(self, *, due_only: bool = False) -> bool:
        """Make durable what the batches taken so far did; called before they are marked
        diagnosed (about every `done_flush_s`, with `due_only`: the consumer may wait for a
        larger flush; at a stop, without). Raise only `StoreUnavailableError`.

        Returns:
            Whether everything taken so far is durable (False: not flushed yet, so the
            batches are not marked diagnosed yet).
        """


@dataclass(frozen=True, slots=True)
class DiagnoserConfig:
    """Tuning of the edge around the engine.

    Attributes:
        history_s: How far back a machine's readings are replayed to rebuild its state.
        silence_check_s: How often silent machines are looked for.
        max_backlog_readings: Committed readings allowed to wait for diagnosis.
        model_refresh_s: How often the store is asked for newer anomaly models.
        source: The gateway whose batches this diagnoser takes (its MQTT client id): batches
            recorded in `diagnosis_pending` under it are diagnosed on start, and each one
            diagnosed is taken off the table. None: nothing is durable (tests, tools).
        done_flush_s: How often diagnosed batches are taken off `diagnosis_pending`.
        shared: Other workers take the same stream (a shared subscription): a machine's
            state is trusted only while no other worker diagnosed it since, silence only
            when the store has nothing newer either (`store.diagnosis_marks`). Needs `source`.
        restore_chunk: Recently active machines restored at a time on start, between batches.
    """

    history_s: float = 900.0
    silence_check_s: float = 5.0
    max_backlog_readings: int = 500_000
    model_refresh_s: float = 60.0
    source: str | None = None
    done_flush_s: float = 1.0
    shared: bool = False
    restore_chunk: int = _RESTORE_CHUNK


def frame_of(readings: ReadingColumns) -> Frame:
    """The engine's frame from the gateway's decoded columns."""
    dtcs = None
    if any(d is not None for d in readings.dtc):
        dtcs = [readings_store.dtc_codes(raw) for raw in readings.dtc]
    return Frame.build(readings.machine_ids, readings.ts_ms, readings.values, dtcs)


class Diagnoser:
    """Runs the engine over committed batches and keeps the alarm episodes in the store."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        engine: Engine,
        knowledge: KnowledgeBase,
        metrics: Metrics,
        config: DiagnoserConfig | None = None,
        notify: Notify | None = None,
        consumers: Sequence[AfterBatch] = (),
    ) -> None:
        """Create a diagnoser; `run` does the work."""
        self._consumers = tuple(consumers)
        self._pool = pool
        self.engine = engine
        self._knowledge = knowledge
        self._metrics = metrics
        self._suppressed = SuppressedCodes(metrics)
        self._config = config or DiagnoserConfig()
        self._notify = notify
        self._backlog: deque[tuple[ReadingColumns, int | None]] = deque()
        self._done: list[int] = []
        self._backlog_readings = 0
        self._work = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self.idle = asyncio.Event()
        self.idle.set()
        self._recent = RecentMachines(pool, engine, metrics, self._config.restore_chunk)
        self.restored = self._recent.done
        """Set once the machines that reported within `history_s` before the start are all
        restored (or cannot be, the database being away), so that silence is judged for them."""
        self.caught_up = asyncio.Event()
        """Set once the batches left undiagnosed by an earlier run are diagnosed (or cannot be,
        the database being away): the gateway waits for it before it takes new messages, so
        that the live stream never overtakes them."""
        self.model_versions: dict[ModelKey, int] = {}
        self._models: dict[ModelKey, RegimeModel] = {}
        self._scorers: tuple[dict[str, RegimeModel], dict[str, RegimeModel]] = ({}, {})
        self.heard_since: Callable[[], float | None] | None = None
        """Since when (monotonic) the gateway hears every machine, None while it does not
        (`Gateway.heard_since`); unset, silence counts from each machine's last reading."""

    @property
    def restore_left(self) -> int:
        """Recently active machines still to be restored after the start (see `run`)."""
        return self._recent.left

    def describe(self, fault: str) -> tuple[Severity, str]:
        """Severity and title of a fault, from the knowledge base."""
        diagnosis = self._knowledge.diagnose(fault)
        return diagnosis.severity, diagnosis.title

    # -- hand-over from the gateway ------------------------------------------------------------

    def submit(self, readings: ReadingColumns, pending_seq: int | None = None) -> None:
        """Queue a committed batch's readings; call in commit order.

        Args:
            readings: The batch's readings.
            pending_seq: Its row in `diagnosis_pending`, taken off once it is diagnosed.
        """
        if not len(readings):
            return
        self._backlog.append((readings, pending_seq))
        self._backlog_readings += len(readings)
        self._metrics.diagnosis_backlog.set(self._backlog_readings)
        self.idle.clear()
        self._work.set()
        if self._backlog_readings >= self._config.max_backlog_readings:
            self._room.clear()

    async def room(self) -> None:
        """Wait until the backlog is under its bound."""
        await self._room.wait()

    # -- the work ------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Diagnose submitted batches, and look for silent machines, until `stop` and drained.

        First what the store says was committed and not diagnosed (a crash, or a replay). Then
        the machines that reported lately are restored, so that one that never reports again
        is still declared silent: in chunks while no batch waits (`restored` is set when done),
        so that after the restart of a large fleet the live stream is diagnosed at once
        instead of after the whole restore; a batch restores its own machines as it comes.
        """
        last_silence_check = last_model_refresh = last_flush = time.monotonic()
        with contextlib.suppress(StoreUnavailableError):
            await self.refresh_models()
        await self._catch_up(stop)
        await self._recent.find(self._config.history_s)
        await self._catch_up(stop, replays_only=True)
        try:
            while True:
                if self._backlog:
                    await self._take_batch(stop)
                elif self._recent.due() and not stop.is_set():
                    self.idle.set()  # nothing submitted waits
                    await self._recent.restore_some()  # instead of waiting: a batch goes first
                else:
                    self.idle.set()
                    if stop.is_set():
                        return
                    self._work.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._work.wait(), timeout=1.0)
                    if self._backlog:
                        await self._take_batch(stop)
                now = time.monotonic()
                if now - last_flush >= self._config.done_flush_s:
                    last_flush = now
                    await self._flush_done()
                if now - last_silence_check >= self._config.silence_check_s:
                    last_silence_check = now
                    await self._catch_up(stop, replays_only=True)
                    await self.check_silence(stop)
                if now - last_model_refresh >= self._config.model_refresh_s:
                    last_model_refresh = now
                    with contextlib.suppress(StoreUnavailableError):
                        await self.refresh_models()
        finally:
            with contextlib.suppress(StoreUnavailableError):
                await self._flush_done(due_only=False)

    async def _take_batch(self, stop: asyncio.Event) -> None:
        """Diagnose the oldest submitted batch."""
        readings, seq = self._backlog.popleft()
        self._backlog_readings -= len(readings)
        self._metrics.diagnosis_backlog.set(self._backlog_readings)
        if self._backlog_readings < self._config.max_backlog_readings:
            self._room.set()
        if await self._diagnose_batch(frame_of(readings), stop) and seq is not None:
            self._done.append(seq)

    async def _diagnose_batch(self, frame: Frame, stop: asyncio.Event) -> bool:
        """Diagnose one batch; False if it must be diagnosed again (the database was away)."""
        started = time.monotonic()
        try:
            changes = await with_retry(
                lambda: self.diagnose(frame), what="batch diagnosis", stop=stop
            )
        except StoreUnavailableError:
            self.engine.forget(frame.machine_ids)
            if stop.is_set():
                self._abandon_backlog()
            return False
        except Exception:  # a supervisor: diagnosis must never stop ingestion
            log.exception("diagnosis of a batch failed; its machines' state will be rebuilt")
            self._metrics.diagnosis_failures.inc()
            self.engine.forget(frame.machine_ids)
            return True  # diagnosing it again would fail again
        self._metrics.diagnosis_seconds.observe(time.monotonic() - started)
        self._published(changes)
        for consumer in self._consumers:
            try:
                await with_retry(
                    lambda c=consumer: c.consume(frame),  # type: ignore[misc]
                    what="after-batch work",
                    stop=stop,
                )
            except StoreUnavailableError:
                return False  # stopping with the database away: left pending, done next run
        return True

    async def _flush_done(self, *, due_only: bool = True) -> None:
        # The consumers first: a batch is marked diagnosed only once what they did with it is
        # stored, so a crash before that feeds it to them again on restart.
        try:
            stored = True
            for consumer in self._consumers:
                stored = await consumer.flush(due_only=due_only) and stored
        except StoreUnavailableError:
            return  # the batches stay pending; flushed next time
        if not stored or not self._done:
            return
        seqs, self._done = self._done, []
        try:
            async with acquire(self._pool) as conn:
                await pending_store.done(conn, seqs)
        except StoreUnavailableError:
            self._done[:0] = seqs  # taken off next time; until then they count as pending
        except BaseException:
            self._done[:0] = seqs
            raise

    async def _catch_up(self, stop: asyncio.Event, *, replays_only: bool = False) -> None:
        """Diagnose batches recorded as committed and not diagnosed.

        On start (before the gateway takes messages, see `caught_up`): this source's, left by a
        crash. Any time after (`replays_only`): those stored by dead-letter replays, claimed
        first, so that no batch of the live stream is diagnosed out of its turn.
        """
        source = self._config.source
        if source is None:
            self.caught_up.set()
            return
        try:
            while True:  # bounded by the table; a database going away ends it
                async with acquire(self._pool) as conn:
                    if replays_only:
                        seqs = await pending_store.claim_replays(conn, source, _CATCH_UP_BATCHES)
                        batches = await pending_store.take(conn, source, only=seqs)
                    else:
                        batches = await pending_store.take(
                            conn, source, exclude=self._done, limit=_CATCH_UP_BATCHES
                        )
                    frames = [await self._frame_of(conn, batch) for batch in batches]
                if not batches:
                    return
                for batch, frame in zip(batches, frames, strict=True):
                    if len(frame) and not await self._diagnose_batch(frame, stop):
                        return  # the database went away: the rest waits for the next try
                    self._done.append(batch.seq)
                await self._flush_done()
        except StoreUnavailableError:
            log.warning("catching up on undiagnosed batches: the database is away; later")
        finally:
            self.caught_up.set()

    async def _frame_of(self, conn: asyncpg.Connection, batch: pending_store.Pending) -> Frame:
        start = datetime.fromtimestamp(batch.first_ts_ms / 1000, UTC)
        end = datetime.fromtimestamp(batch.last_ts_ms / 1000, UTC)
        past = await readings_store.history(conn, list(batch.machine_ids), start, end)
        return Frame.build(past.machine_ids, past.ts_ms, past.values, past.dtcs)

    def _abandon_backlog(self) -> None:
        # Stopping with the database away: each batch would wait out its own connection
        # timeout, one after another. Their readings are committed; leave them undiagnosed.
        if self._backlog:
            log.warning(
                "stopping with the database away: %d committed readings left undiagnosed",
                self._backlog_readings,
            )
        self._backlog.clear()
        self._backlog_readings = 0
        self._metrics.diagnosis_backlog.set(0)
        self._room.set()

    async def diagnose(self, frame: Frame) -> list[alarm_store.AlarmChange]:
        """Restore unknown machines, run the engine on `frame`, store the alarm changes.

        With `shared` on, all of it is one transaction holding the batch's machines' locks
        (`store.diagnosis_marks`): a machine another worker diagnosed since this one did is
        rebuilt from the store first, and two workers never diagnose one machine at once.
        Alone with a `source`, a batch that changes alarms marks its machines too, so that one
        diagnosed again after a crash changes nothing (`handover`).
        """
        source = self._config.source
        async with acquire(self._pool) as conn:
            try:
                if source is None or not self._config.shared:
                    alone = await handover.floor_alone(conn, self.engine, frame) if source else {}
                    return await self._diagnose_on(conn, frame, alone, mark_changed=source)
                async with conn.transaction():
                    floor = await handover.claim(conn, self.engine, frame, source)
                    changes = await self._diagnose_on(conn, frame, floor)
                    await handover.mark(conn, frame, source)
                    return changes
            except BaseException:
                # Memory must not run ahead of the store: what this batch taught the engine is
                # forgotten, and rebuilt from the store next time.
                self.engine.forget(frame.machine_ids)
                raise

    async def _diagnose_on(
        self,
        conn: asyncpg.Connection,
        frame: Frame,
        floor: dict[str, int],
        mark_changed: str | None = None,
    ) -> list[alarm_store.AlarmChange]:
        unknown = self.engine.unknown(frame.machine_ids)
        if unknown:
            first = handover.per_machine(frame, np.minimum)
            before = {m: max(first[m], floor.get(m, first[m])) for m in unknown}
            await late.restore_each(conn, self.engine, before, self._config.history_s)
        is_late = self.engine.late_rows(frame)
        missed: list[AlarmEvent] = []
        if bool(is_late.any()):
            missed = await late.late_events(
                conn,
                frame.take(is_late),
                self.engine.rules,
                self._scorers,
                self._config.history_s,
            )
        events = self.engine.process(frame)
        self._suppressed.add(self.engine.take_suppressed_dtcs())
        if not events and not missed:
            return []
        async with conn.transaction():
            changes = await alarm_store.apply_events(conn, missed + events, self.describe)
            if mark_changed is not None:  # alone: see `handover`
                await handover.mark_changed(conn, frame, missed + events, mark_changed)
        if missed:
            # Episodes the live state does not know of: rebuilt from the store next time, so
            # the next live reading decides whether they are still active.
            self.engine.forget({e.machine_id for e in missed})
        return changes

    async def refresh_models(self) -> list[ModelKey]:
        """Load anomaly models newer than those in use; returns the (scope, name) refreshed.

        A machine is scored by its designation's model, else by its class's.
        """
        async with acquire(self._pool) as conn:
            versions = await model_store.latest_versions(conn)
            stale = [m for m, v in versions.items() if self.model_versions.get(m) != v]
            if not stale:
                return []
            blobs = await model_store.latest_blobs(conn)
        loaded: dict[ModelKey, RegimeModel] = {}
        for key in stale:
            version, blob = blobs[key]
            try:
                loaded[key] = RegimeModel.from_bytes(blob)
            except ModelError:
                log.exception("anomaly model %s %s v%d cannot be loaded; retrain it", *key, version)
            self.model_versions[key] = version
        if loaded:
            self._models.update(loaded)
            by_scope: dict[str, dict[str, RegimeModel]] = {"model": {}, "class": {}}
            for (scope, name), model in self._models.items():
                by_scope[scope][name] = model
            self._scorers = (by_scope["model"], by_scope["class"])
            self.engine.set_models(*self._scorers)
            log.info("anomaly models in use: %s", sorted(self.model_versions.items()))
        return sorted(loaded)

    async def check_silence(self, stop: asyncio.Event | None = None) -> None:
        """Raise `machine_silent` for machines that stopped reporting while running.

        Not while committed batches wait here (they may hold the readings), nor while the
        gateway does not hear every machine (`heard_since`): then the path is out, not them.
        """
        if self._backlog:
            return
        now_s, now_ms = time.monotonic(), time.time_ns() // 1_000_000
        heard_ms = None
        if self.heard_since is not None:
            since = self.heard_since()
            if since is None:
                return
            heard_ms = now_ms - round((now_s - since) * 1000)
        events = self.engine.check_silence(now_ms, heard_ms)
        if events and self._config.shared:
            events = await handover.silent_in_store(self._pool, self.engine, events, stop)
        if events:
            await self.apply(events, stop)

    async def apply(
        self, events: Sequence[AlarmEvent], stop: asyncio.Event | None = None
    ) -> list[alarm_store.AlarmChange]:
        """Store events that did not come from a batch (silence), and publish the changes."""

        async def once() -> list[alarm_store.AlarmChange]:
            async with acquire(self._pool) as conn, conn.transaction():
                return await alarm_store.apply_events(conn, events, self.describe)

        changes = await with_retry(once, what="alarm update", stop=stop)
        self._published(changes)
        return changes

    def _published(self, changes: Sequence[alarm_store.AlarmChange]) -> None:
        for change in changes:
            if change.transition is not Transition.UPDATED:
                self._metrics.alarms.labels(change.transition.value, change.severity.value).inc()
            log.info(
                "alarm %s %s on %s: %s",
                change.fault,
                change.transition,
                change.machine_id,
                change.detail,
            )
        if changes and self._notify is not None:
            self._notify(changes)
