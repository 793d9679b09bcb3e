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

from telematics.base.db import TRANSIENT_ERRORS, acquire, with_retry
from telematics.base.errors import StoreUnavailableError
from telematics.base.metrics import Metrics
from telematics.ingest import mqtt
from telematics.ingest.pipeline import ingest
from telematics.store.ingest import WriteResult, write_batch
from telematics.store.registry import SourceDirectory
from telematics.wire.decode import DecodedBatch, Limits, Reject, RejectReason, parse_topic

log = logging.getLogger(__name__)

TELEMETRY_TOPIC = "machines/+/telemetry"
POSITION_TOPIC = "engineers/+/position"

AfterCommit = Callable[[DecodedBatch], None]
"""Called with each committed batch, synchronously, in arrival (acknowledgement) order."""
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
    batch_max_delay_s: float = 0.05
    writers: int = 2
    reconnect_max_delay_s: float = 5.0
    stall_s: float = 10.0
    limits: Limits = field(default_factory=Limits)

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
    committed: bool = False
    abandoned: bool = False
    decoded: DecodedBatch | None = None


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
                properties=mqtt.connect_properties(cfg.receive_maximum, cfg.session_expiry_s),
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
        delay_s = 0.1
        while not stop.is_set():
            try:
                async with self._client() as client:
                    delay_s = 0.1
                    await self._session(client, stop)
            except aiomqtt.MqttError as exc:
                self.connected.clear()
                self._heard_since = None
                self._metrics.mqtt_connected.set(0)
                if stop.is_set():
                    break
                self._metrics.mqtt_reconnects.inc()
                log.warning("broker connection lost (%s); reconnecting in %.1f s", exc, delay_s)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=delay_s)
                delay_s = min(delay_s * 2, self._config.reconnect_max_delay_s)
        self.connected.clear()
        self._heard_since = None
        self._metrics.mqtt_connected.set(0)

    async def _session(self, client: aiomqtt.Client, stop: asyncio.Event) -> None:
        cfg = self._config
        mqtt.enable_manual_ack(client)
        prefix = f"$share/{cfg.shared_group}/" if cfg.shared_group else ""
        await client.subscribe([(prefix + TELEMETRY_TOPIC, 1), (prefix + POSITION_TOPIC, 1)])
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
        messages = client.messages
        async for message in messages:
            batch = self._filling
            if batch is None:
                batch = self._filling = _Batch(client, [], time.monotonic())
            before = len(batch.messages)
            batch.messages.append(message)
            mqtt.take_ready(client, batch.messages, limit)
            self._metrics.messages.inc(len(batch.messages) - before)
            if len(batch.messages) >= limit:
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

        tries = 0

        async def attempt() -> tuple[DecodedBatch, WriteResult]:
            nonlocal tries
            tries += 1
            if tries > 1:
                self._metrics.db_retries.inc()
            async with acquire(self._pool) as conn:
                try:
                    return await ingest(conn, self._directory, pairs, limits=self._config.limits)
                except asyncpg.PostgresError as exc:
                    if isinstance(exc, TRANSIENT_ERRORS):
                        raise
                    log.exception("database refused a batch; dead-lettering its messages")
                    return await self._dead_letter_all(conn, pairs, exc)

        try:
            decoded, result = await with_retry(attempt, what="batch write", stop=stop)
        except StoreUnavailableError:
            # Shutting down with the database away: leave these unacknowledged for redelivery.
            log.warning(
                "stopping with %d messages not stored; the broker keeps them", len(batch.messages)
            )
            batch.committed = batch.abandoned = True
            self._ack_committed()
            return
        batch.committed = True
        batch.decoded = decoded
        self._record(batch, decoded, result, started, time.monotonic())
        self._ack_committed()
        if self._backpressure is not None:
            await self._backpressure()

    async def _dead_letter_all(
        self, conn: asyncpg.Connection, pairs: list[tuple[str, bytes]], exc: Exception
    ) -> tuple[DecodedBatch, WriteResult]:
        batch = DecodedBatch()
        for topic, payload in pairs:
            parsed = parse_topic(topic)
            batch.rejects.append(
                Reject(
                    topic,
                    payload,
                    RejectReason.STORE_ERROR,
                    f"{type(exc).__name__}: {exc}",
                    parsed[1] if parsed else None,
                )
            )
        return batch, await write_batch(conn, batch)

    def _record(
        self,
        batch: _Batch,
        decoded: DecodedBatch,
        result: WriteResult,
        started: float,
        now: float,
    ) -> None:
        m = self._metrics
        for reject in decoded.rejects:
            m.rejects.labels(reject.reason.value).inc()
        m.batch_seconds.observe(now - started)
        m.batch_messages.observe(len(batch.messages))
        m.lag_seconds.observe(now - batch.first_received_s)
        if now - batch.first_received_s > self._config.stall_s and self._heard_since is not None:
            self._heard_since = max(self._heard_since, now)
        m.readings_stored.inc(result.readings_inserted)
        m.readings_duplicate.inc(result.readings_duplicate)
        m.positions_stored.inc(result.positions_inserted)
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
            decoded, batch.decoded = batch.decoded, None
            if self._after_commit is not None and decoded is not None and len(decoded.readings):
                self._after_commit(decoded)
            sent = sum(mqtt.ack(batch.client, message) for message in batch.messages)
            if sent < len(batch.messages):
                log.info(
                    "%d acks not sent: their connection closed; the broker will redeliver",
                    len(batch.messages) - sent,
                )
