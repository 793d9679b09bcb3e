"""The MQTT gateway: telemetry and positions from the broker into the store, nothing lost.

Invariants this module keeps:

* A message is acknowledged (PUBACK) only after the transaction holding its readings, or its dead
  letter, has committed. A crash at any point loses nothing: the broker redelivers what was not
  acknowledged, and `ON CONFLICT DO NOTHING` absorbs what was stored but not acknowledged.
* Acknowledgements go out in arrival order, as MQTT requires, even with several batches committing
  concurrently: a batch's acks wait until every earlier batch has committed.
* Memory is bounded by the broker, not by us: the broker keeps at most Receive Maximum messages
  unacknowledged in flight to us, and a stalled database stops acknowledgements, so the stream
  pauses instead of piling up in this process.
* A batch whose write fails because the database is unreachable is retried until it commits. A
  batch the database refuses for any other reason is dead-lettered message by message with the
  error, then acknowledged, so a poison message cannot wedge the stream.

The session with the broker is persistent (fixed client id, no clean start), so messages that
arrive while the gateway is down wait in the broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiomqtt
import asyncpg
from paho.mqtt.client import MQTT_CLEAN_START_FIRST_ONLY

from telematics.base.db import acquire, with_retry
from telematics.base.errors import CommandTimeoutError, StoreUnavailableError
from telematics.base.metrics import Metrics
from telematics.ingest import mqtt
from telematics.ingest.pipeline import BatchTooLargeError, ingest
from telematics.store.ingest import WriteResult, write_batch
from telematics.store.registry import SourceDirectory
from telematics.wire.decode import DecodedBatch, Limits, Reject, RejectReason, parse_topic
from telematics.wire.untrusted import storable

log = logging.getLogger(__name__)

TELEMETRY_TOPIC = "machines/+/telemetry"
POSITION_TOPIC = "engineers/+/position"

AfterCommit = Callable[[DecodedBatch, int | None], None]
"""Called with each committed batch and its `diagnosis_pending` row (None if not recorded),
synchronously, in arrival (acknowledgement) order."""
Backpressure = Callable[[], Awaitable[None]]
"""Awaited by a writer after each commit; a slow consumer of committed batches holds it."""


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """What the gateway needs to know, resolved from settings."""

    endpoint: mqtt.MqttEndpoint
    client_id: str
    protocol: str = "5"
    shared_group: str | None = None
    receive_maximum: int = 8000
    broker_inflight_311: int = 20
    session_expiry_s: int = 7 * 24 * 3600
    batch_max_messages: int = 1000
    batch_max_bytes: int = 8 * 1024 * 1024
    batch_max_readings: int = 100_000
    batch_max_delay_s: float = 0.05
    writers: int = 2
    reconnect_max_delay_s: float = 5.0
    stall_s: float = 10.0
    limits: Limits = field(default_factory=Limits)
    diagnosis_source: str | None = None
    """If set, each committed batch is recorded as waiting for diagnosis under this source."""

    @property
    def window(self) -> int:
        """Unacknowledged messages the broker lets us hold."""
        return self.receive_maximum if self.protocol == "5" else self.broker_inflight_311

    @property
    def effective_batch_messages(self) -> int:
        """Largest batch that can still fill: every batch in flight plus the one filling must fit
        in the window, or batches would wait for the timer instead of filling.
        """
        in_flight = 2 * self.writers + 1  # committing + queued + filling
        return max(1, min(self.batch_max_messages, self.window // in_flight))


@dataclass(slots=True)
class _Batch:
    client: aiomqtt.Client
    messages: list[aiomqtt.Message]
    first_received_s: float
    payload_bytes: int = 0
    committed: bool = False
    abandoned: bool = False
    decoded: list[tuple[DecodedBatch, int | None]] = field(default_factory=list)


_Piece = tuple[DecodedBatch, WriteResult]
"""Messages stored in one transaction: what was decoded, and what the write did."""


class _SplitError(Exception):
    """Internal: this work must be split (or, for one message, dead-lettered). Never escapes."""


class Gateway:
    """Subscribes, batches, stores and acknowledges. Run with `run(stop)`."""

    def __init__(
        self,
        config: GatewayConfig,
        pool: asyncpg.Pool,
        directory: SourceDirectory,
        metrics: Metrics,
        after_commit: AfterCommit | None = None,
        backpressure: Backpressure | None = None,
    ) -> None:
        """Create a gateway; nothing connects until `run`."""
        self._config = config
        self._pool = pool
        self._directory = directory
        self._metrics = metrics
        self._after_commit = after_commit
        self._backpressure = backpressure
        self._queue: asyncio.Queue[_Batch] = asyncio.Queue(maxsize=config.writers)
        self._ack_order: deque[_Batch] = deque()
        self._filling: _Batch | None = None
        self._handoff = asyncio.Lock()
        self.connected = asyncio.Event()
        self._heard_since: float | None = None  # monotonic; None while disconnected
        self._reconnect_delay_s = 0.1

    async def run(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set, then drain: commit and acknowledge what was received."""
        async with asyncio.TaskGroup() as tg:
            writers = [tg.create_task(self._writer(stop)) for _ in range(self._config.writers)]
            await self._sessions(stop)
            await self._queue.join()
            for task in writers:
                task.cancel()

    def heard_since(self) -> float | None:
        """Since when (monotonic seconds) every message published to us reaches the store
        promptly: the broker session is up and no received batch has waited longer than
        `stall_s` for its commit. None while that is not so.

        Silence is measured from here (`Diagnoser.check_silence`): while the gateway is cut off
        from the broker, or the database holds its batches, machines are not silent, the path
        is, and its own metrics and health say so.
        """
        since = self._heard_since
        if since is None or not self.connected.is_set():
            return None
        now = time.monotonic()
        if self._ack_order and now - self._ack_order[0].first_received_s > self._config.stall_s:
            self._heard_since = now
            return None
        return since

    # -- broker side -------------------------------------------------------------------------

    def _client(self) -> aiomqtt.Client:
        # A new client for each connection, manual ack switched on before it connects.
        client = self._new_client()
        mqtt.enable_manual_ack(client)
        return client

    def _new_client(self) -> aiomqtt.Client:
        cfg = self._config
        ep = cfg.endpoint
        if cfg.protocol == "5":
            return aiomqtt.Client(
                ep.host,
                ep.port,
                username=ep.username,
                password=ep.password,
                identifier=cfg.client_id,
                protocol=aiomqtt.ProtocolVersion.V5,
                clean_start=False,
                properties=mqtt.connect_properties(
                    cfg.receive_maximum,
                    cfg.session_expiry_s,
                    max_packet_bytes=cfg.limits.max_payload_bytes + mqtt.PACKET_HEADROOM_BYTES,
                ),
                timeout=10,
            )
        return aiomqtt.Client(
            ep.host,
            ep.port,
            username=ep.username,
            password=ep.password,
            identifier=cfg.client_id,
            protocol=aiomqtt.ProtocolVersion.V311,
            clean_session=False,
            clean_start=MQTT_CLEAN_START_FIRST_ONLY,
            timeout=10,
        )

    async def _sessions(self, stop: asyncio.Event) -> None:
        self._reconnect_delay_s = 0.1
        while not stop.is_set():
            try:
                async with self._client() as client:
                    await self._session(client, stop)
            except aiomqtt.MqttError as exc:
                self.connected.clear()
                self._heard_since = None
                self._metrics.mqtt_connected.set(0)
                if stop.is_set():
                    break
                self._metrics.mqtt_reconnects.inc()
                delay_s = self._reconnect_delay_s
                log.warning("broker connection lost (%s); reconnecting in %.1f s", exc, delay_s)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=delay_s)
                # Reset only by a session that subscribed: a broker that accepts the connection
                # but refuses the subscription must not be hammered.
                self._reconnect_delay_s = min(delay_s * 2, self._config.reconnect_max_delay_s)
        self.connected.clear()
        self._heard_since = None
        self._metrics.mqtt_connected.set(0)

    async def _session(self, client: aiomqtt.Client, stop: asyncio.Event) -> None:
        cfg = self._config
        if not mqtt.manual_ack_enabled(client):
            raise RuntimeError("manual ack must be on before the client connects")
        prefix = f"$share/{cfg.shared_group}/" if cfg.shared_group else ""
        topics = [prefix + TELEMETRY_TOPIC, prefix + POSITION_TOPIC]
        granted = await client.subscribe([(topic, 1) for topic in topics], timeout=10)
        refused = [
            t for t, code in zip(topics, mqtt.granted_qos(granted), strict=True) if code != 1
        ]
        if refused:
            # QoS 0 would mean no PUBACK to hold back, so nothing to redeliver after a crash.
            raise aiomqtt.MqttError(f"broker refused QoS 1 on {', '.join(refused)}: {granted}")
        self._reconnect_delay_s = 0.1
        log.info(
            "subscribed as %s to %s:%d, batches of up to %d messages",
            cfg.client_id,
            cfg.endpoint.host,
            cfg.endpoint.port,
            cfg.effective_batch_messages,
        )
        self.connected.set()
        self._metrics.mqtt_connected.set(1)
        self._heard_since = time.monotonic()
        receiver = asyncio.create_task(self._receive(client))
        flusher = asyncio.create_task(self._flush_on_timer())
        stopper = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait((receiver, stopper), return_when=asyncio.FIRST_COMPLETED)
        finally:
            # Stop taking messages; what aiomqtt still holds is unacknowledged and comes back.
            for task in (receiver, flusher, stopper):
                task.cancel()
            await asyncio.gather(receiver, flusher, stopper, return_exceptions=True)
            # Store what was received; its acks go out only if this connection is still open.
            await self._hand_off()
        if not stop.is_set():
            failure = receiver.exception() if not receiver.cancelled() else None
            if failure is not None and not isinstance(failure, aiomqtt.MqttError):
                raise failure
            raise aiomqtt.MqttError("message stream ended") from failure
        await self._queue.join()  # drain: commit and acknowledge before disconnecting

    async def _receive(self, client: aiomqtt.Client) -> None:
        limit = self._config.effective_batch_messages
        max_bytes = self._config.batch_max_bytes
        messages = client.messages
        async for message in messages:
            batch = self._filling
            if batch is None:
                batch = self._filling = _Batch(client, [], time.monotonic())
            before = len(batch.messages)
            batch.messages.append(message)
            batch.payload_bytes = mqtt.take_ready(
                client,
                batch.messages,
                limit,
                max_bytes=max_bytes,
                have_bytes=batch.payload_bytes + len(message.payload),
            )
            self._metrics.messages.inc(len(batch.messages) - before)
            if len(batch.messages) >= limit or batch.payload_bytes >= max_bytes:
                await self._hand_off()

    async def _flush_on_timer(self) -> None:
        delay_s = self._config.batch_max_delay_s
        while True:
            await asyncio.sleep(delay_s / 2)
            batch = self._filling
            if batch is not None and time.monotonic() - batch.first_received_s >= delay_s:
                await self._hand_off()

    async def _hand_off(self) -> None:
        async with self._handoff:
            batch = self._filling
            if batch is None or not batch.messages:
                return
            self._filling = None
            # Queue first: a hand-off cancelled while waiting for room leaves no trace, and its
            # messages, never acknowledged, come back from the broker. Nothing awaits between the
            # put and the append, so no writer can see the batch before it is in the ack order.
            await self._queue.put(batch)
            self._ack_order.append(batch)
            self._metrics.unacked.inc(len(batch.messages))

    # -- database side -----------------------------------------------------------------------

    async def _writer(self, stop: asyncio.Event) -> None:
        while True:
            batch = await self._queue.get()
            try:
                await self._commit(batch, stop)
            finally:
                self._queue.task_done()

    async def _commit(self, batch: _Batch, stop: asyncio.Event) -> None:
        started = time.monotonic()
        pairs = [(m.topic.value, m.payload) for m in batch.messages]
        try:
            pieces = await self._store(pairs, stop)
        except StoreUnavailableError:
            # Shutting down with the database away: leave these unacknowledged for redelivery.
            log.warning(
                "stopping with %d messages not stored; the broker keeps them", len(batch.messages)
            )
            batch.committed = batch.abandoned = True
            self._ack_committed()
            return
        batch.committed = True
        batch.decoded = [(decoded, result.pending_seq) for decoded, result in pieces]
        self._record(batch, pieces, started, time.monotonic())
        self._ack_committed()
        if self._backpressure is not None:
            await self._backpressure()

    async def _store(self, pairs: list[tuple[str, bytes]], stop: asyncio.Event) -> list[_Piece]:
        """Store messages in one transaction or, if the database cannot take them together,
        in halves, recursively: a failure costs only the message that caused it.

        A transient failure (the database away, busy, read-only) is retried, with backoff, until
        the write commits or `stop` is set (then StoreUnavailableError). Work too large for the
        command timeout, or over `batch_max_readings`, is split. A permanent refusal is bisected
        down to the one message the database refuses, which becomes a `store_error` dead letter.
        """
        try:
            piece = await with_retry(
                lambda: self._attempt(pairs),
                what="batch write",
                stop=stop,
                on_retry=self._metrics.db_retries.inc,
            )
        except _SplitError as split:
            if len(pairs) > 1:
                self._metrics.batch_splits.inc()
                mid = len(pairs) // 2
                return [
                    *await self._store(pairs[:mid], stop),
                    *await self._store(pairs[mid:], stop),
                ]
            log.error(  # noqa: TRY400 - the traceback is the cause's, given as exc_info
                "database refused a message on %s; dead-lettering it",
                pairs[0][0],
                exc_info=split.__cause__ or split,
            )
            cause: BaseException = split
            while cause.__cause__ is not None:  # the database's own error, not our wrappers
                cause = cause.__cause__
            return [
                await with_retry(
                    lambda: self._dead_letter(pairs, cause), what="dead letter", stop=stop
                )
            ]
        return [piece]

    async def _attempt(self, pairs: list[tuple[str, bytes]]) -> _Piece:
        cfg = self._config
        try:
            async with acquire(self._pool) as conn:
                return await ingest(
                    conn,
                    self._directory,
                    pairs,
                    limits=cfg.limits,
                    max_readings=cfg.batch_max_readings if len(pairs) > 1 else None,
                    pending_source=cfg.diagnosis_source,
                )
        except CommandTimeoutError as exc:
            if len(pairs) == 1:
                raise  # one message is not too large: the database is slow; retry it
            raise _SplitError(str(exc)) from exc
        except (StoreUnavailableError, asyncio.CancelledError):
            raise
        except BatchTooLargeError as exc:
            raise _SplitError(str(exc)) from exc
        except Exception as exc:  # any refusal of this work is isolated, never fatal
            raise _SplitError(f"{type(exc).__name__}: {exc}") from exc

    async def _dead_letter(self, pairs: list[tuple[str, bytes]], exc: BaseException) -> _Piece:
        detail = storable(f"{type(exc).__name__}: {exc}")
        batch = DecodedBatch()
        for topic, payload in pairs:
            parsed = parse_topic(topic)
            source = parsed[1] if parsed else None
            batch.rejects.append(
                Reject(storable(topic), payload, RejectReason.STORE_ERROR, detail, source)
            )
        try:
            async with acquire(self._pool) as conn:
                return batch, await write_batch(conn, batch)
        except StoreUnavailableError:
            raise
        except Exception as refused:  # keep it, unacknowledged, and try again later
            log.exception("cannot write a dead letter; holding the message")
            raise StoreUnavailableError(f"dead letter refused: {refused!r}") from refused

    def _record(self, batch: _Batch, pieces: list[_Piece], started: float, now: float) -> None:
        m = self._metrics
        for decoded, result in pieces:
            for reject in decoded.rejects:
                m.rejects.labels(reject.reason.value).inc()
            m.readings_stored.inc(result.readings_inserted)
            m.readings_duplicate.inc(result.readings_duplicate)
            m.positions_stored.inc(result.positions_inserted)
        m.batch_seconds.observe(now - started)
        m.batch_messages.observe(len(batch.messages))
        m.lag_seconds.observe(now - batch.first_received_s)
        if now - batch.first_received_s > self._config.stall_s and self._heard_since is not None:
            self._heard_since = max(self._heard_since, now)
        m.last_commit_timestamp.set(time.time())

    def _ack_committed(self) -> None:
        # Acknowledge every committed batch at the head of the arrival order; a batch committed
        # out of order waits here until the batches before it are committed too.
        order = self._ack_order
        while order and order[0].committed:
            batch = order.popleft()
            self._metrics.unacked.dec(len(batch.messages))
            if batch.abandoned:
                continue
            pieces, batch.decoded = batch.decoded, []
            for decoded, seq in pieces:
                if self._after_commit is not None and len(decoded.readings):
                    self._after_commit(decoded, seq)
            sent = sum(mqtt.ack(batch.client, message) for message in batch.messages)
            if sent < len(batch.messages):
                log.info(
                    "%d acks not sent: their connection closed; the broker will redeliver",
                    len(batch.messages) - sent,
                )
