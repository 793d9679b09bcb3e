"""MQTT delivery: a notice published at QoS 1 on `customers/{customer_id}/notices`.

One client, connected on first use and again after a failure, publishes for every delivery; a
publish counts as sent once the broker acknowledges it (PUBACK). The broker keeps it for a
subscriber only if that subscriber holds a persistent session (docs/notifications.md). aiomqtt's
errors become `DeliveryError` here.
"""

from __future__ import annotations

import aiomqtt

from telematics.ingest.mqtt import LazyPublisher, MqttEndpoint
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
        self._publisher = LazyPublisher(endpoint, client_id, protocol=protocol, timeout_s=timeout_s)

    async def publish(self, customer_id: str, raw: bytes) -> None:
        """Publish one notice and wait for the broker's acknowledgement.

        Raises:
            DeliveryError: The customer id is not a topic level (permanent), or the broker is
                away or slow (retryable; the next publish reconnects).
        """
        topic = notice_topic(customer_id)
        try:
            await self._publisher.publish(topic, raw)
        except (aiomqtt.MqttError, TimeoutError, OSError) as exc:
            raise DeliveryError(f"MQTT: {type(exc).__name__}: {exc}", retryable=True) from exc

    async def close(self) -> None:
        """Disconnect (if connected)."""
        await self._publisher.close()
