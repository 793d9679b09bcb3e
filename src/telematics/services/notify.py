"""Alarm notices for on-board displays: each alarm change published on
`machines/{machine_id}/alarms`.

Notices are a courtesy copy; the store is the record. They go out at QoS 1 from a client of their
own, in the order the changes were stored. The queue is bounded: when the broker is away longer
than the queue lasts, the oldest notices are dropped (and counted), never the alarms themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Sequence

import aiomqtt
import orjson

from telematics.base.metrics import Metrics
from telematics.ingest.mqtt import MqttEndpoint
from telematics.store.alarms import AlarmChange

log = logging.getLogger(__name__)


def alarm_topic(machine_id: str) -> str:
    """The topic a machine's alarm notices go to."""
    return f"machines/{machine_id}/alarms"


def notice(change: AlarmChange) -> bytes:
    """The JSON body of one notice."""
    return orjson.dumps(
        {
            "alarm_id": change.alarm_id,
            "incident_id": change.incident_id,
            "machine_id": change.machine_id,
            "fault": change.fault,
            "transition": change.transition.value,
            "severity": change.severity.value,
            "title": change.title,
            "ts": change.ts.isoformat(),
            "detail": change.detail,
        }
    )


class AlarmPublisher:
    """Publishes alarm changes; `publish` never blocks, `run` does the sending."""

    def __init__(
        self,
        endpoint: MqttEndpoint,
        client_id: str,
        metrics: Metrics,
        *,
        protocol: str = "5",
        max_queued: int = 10_000,
    ) -> None:
        """Create a publisher; nothing connects until `run`."""
        self._endpoint = endpoint
        self._client_id = client_id
        self._metrics = metrics
        self._protocol = protocol
        self._queue: deque[AlarmChange] = deque()
        self._max_queued = max_queued
        self._ready = asyncio.Event()

    def publish(self, changes: Sequence[AlarmChange]) -> None:
        """Queue notices of `changes`, dropping the oldest beyond the queue's bound."""
        self._queue.extend(changes)
        overflow = len(self._queue) - self._max_queued
        for _ in range(max(overflow, 0)):
            self._queue.popleft()
            self._metrics.alarm_notices_dropped.inc()
        if self._queue:
            self._ready.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Send queued notices until `stop`, reconnecting with backoff."""
        delay_s = 0.1
        ep = self._endpoint
        version = (
            aiomqtt.ProtocolVersion.V5 if self._protocol == "5" else aiomqtt.ProtocolVersion.V311
        )
        while not stop.is_set():
            try:
                async with aiomqtt.Client(
                    ep.host,
                    ep.port,
                    username=ep.username,
                    password=ep.password,
                    identifier=self._client_id,
                    protocol=version,
                    timeout=10,
                ) as client:
                    delay_s = 0.1
                    await self._send(client, stop)
                    return
            except aiomqtt.MqttError as exc:
                log.warning("alarm notices: broker lost (%s); retrying in %.1f s", exc, delay_s)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=delay_s)
                delay_s = min(delay_s * 2, 5.0)

    async def _send(self, client: aiomqtt.Client, stop: asyncio.Event) -> None:
        while True:
            while self._queue:
                change = self._queue[0]
                await client.publish(
                    alarm_topic(change.machine_id), notice(change), qos=1, timeout=10
                )
                self._queue.popleft()
            if stop.is_set():
                return
            self._ready.clear()
            waiter = asyncio.create_task(self._ready.wait())
            stopper = asyncio.create_task(stop.wait())
            try:
                await asyncio.wait((waiter, stopper), return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
                stopper.cancel()
