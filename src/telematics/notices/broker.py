"""MQTT delivery: a notice published at QoS 1 on `customers/{customer_id}/notices`.

One client, connected on first use and again after a failure, publishes for every delivery; a
publish counts as sent once the broker acknowledges it (PUBACK). The broker keeps it for a
subscriber only if that subscriber holds a persistent session (docs/notifications.md). aiomqtt's
errors become `DeliveryError` here.
"""

from __future__ import annotations

import asyncio
import contextlib
from contextlib import AsyncExitStack

import aiomqtt

from telematics.ingest.mqtt import MqttEndpoint
from telematics.notices.errors import DeliveryError

_TOPIC_FORBIDDEN = frozenset("+#/\x00")


def notice_topic(customer_id: str) -> str:
    """The topic a customer's notices go to.

    Raises:
        DeliveryError: The customer id cannot be one topic level (permanent).
    """
    if not customer_id or _TOPIC_FORBIDDEN.intersection(customer_id):
        raise DeliveryError(f"customer id {customer_id!r} is not a topic level", retryable=False)
    return f"customers/{customer_id}/notices"


class NoticeBroker:
    """Publishes notices; connects lazily, reconnects on the next publish after a failure."""

    def __init__(
        self, endpoint: MqttEndpoint, client_id: str, *, protocol: str = "5", timeout_s: float = 10
    ) -> None:
        """Create the publisher; nothing connects until the first `publish`."""
        self._endpoint = endpoint
        self._client_id = client_id
        self._protocol = (
            aiomqtt.ProtocolVersion.V5 if protocol == "5" else aiomqtt.ProtocolVersion.V311
        )
        self._timeout_s = timeout_s
        self._lock = asyncio.Lock()
        self._stack: AsyncExitStack | None = None
        self._client: aiomqtt.Client | None = None

    async def _connected(self) -> aiomqtt.Client:
        async with self._lock:
            if self._client is None:
                ep = self._endpoint
                stack = AsyncExitStack()
                client = aiomqtt.Client(
                    ep.host, ep.port, username=ep.username, password=ep.password,
                    identifier=self._client_id, protocol=self._protocol,
                    timeout=self._timeout_s,
                )  # fmt: skip
                await asyncio.wait_for(stack.enter_async_context(client), self._timeout_s)
                self._stack, self._client = stack, client
            return self._client

    async def publish(self, customer_id: str, raw: bytes) -> None:
        """Publish one notice and wait for the broker's acknowledgement.

        Raises:
            DeliveryError: The customer id is not a topic level (permanent), or the broker is
                away or slow (retryable; the next publish reconnects).
        """
        topic = notice_topic(customer_id)
        try:
            client = await self._connected()
            await client.publish(topic, raw, qos=1, timeout=self._timeout_s)
        except (aiomqtt.MqttError, TimeoutError, OSError) as exc:
            await self.close()
            raise DeliveryError(f"MQTT: {type(exc).__name__}: {exc}", retryable=True) from exc

    async def close(self) -> None:
        """Disconnect (if connected)."""
        async with self._lock:
            stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            # The connection is gone either way.
            with contextlib.suppress(aiomqtt.MqttError, TimeoutError, OSError):
                await asyncio.wait_for(stack.aclose(), self._timeout_s)
