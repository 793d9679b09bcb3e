"""The MQTT adapter: connection settings, and the one place that reaches inside aiomqtt.

aiomqtt 2.5 acknowledges a QoS 1 message as soon as it arrives, before we have stored it; if the
process died then, the message would be gone. paho-mqtt 2.x, which aiomqtt wraps, can hold the
PUBACK back (`manual_ack_set(True)`, then `ack(mid, qos)`), but aiomqtt has no public way to reach
it. The workaround lives here and only here, behind `enable_manual_ack` and `ack`; when aiomqtt
grows a public manual-ack API, this module is the only one to change. aiomqtt is pinned for that
reason. `take_ready` likewise drains messages aiomqtt has already queued without paying its
per-message task and `asyncio.wait` overhead, which dominates the gateway's cost per message.
`share_property_tables` removes paho's other large per-message cost, for MQTT 5 (see there).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

DEFAULT_MQTT_PORT = 1883


@dataclass(frozen=True, slots=True)
class MqttEndpoint:
    """Where the broker is and how to log in."""

    host: str
    port: int
    username: str | None = None
    password: str | None = None

    def __repr__(self) -> str:
        # Never print the password.
        return f"MqttEndpoint(host={self.host!r}, port={self.port}, username={self.username!r})"


def parse_mqtt_url(url: str) -> MqttEndpoint:
    """Parse `mqtt://[user[:password]@]host[:port]`."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "tcp") or not parts.hostname:
        raise ValueError(f"not an mqtt:// URL: {parts.scheme}://{parts.hostname}")
    return MqttEndpoint(
        host=parts.hostname,
        port=parts.port or DEFAULT_MQTT_PORT,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


PACKET_HEADROOM_BYTES = 64 * 1024
"""Allowed beyond the payload limit in a PUBLISH: fixed header, topic, properties, and room for
a payload a little over the limit to arrive and be dead-lettered as too large."""


def broker_payload_limit(max_payload_bytes: int) -> int:
    """The broker's payload limit (Mosquitto's `message_size_limit`) that suits the gateway.

    A PUBLISH larger than the gateway's Maximum Packet Size is discarded by the broker for the
    gateway alone, as if delivered: the publisher gets its PUBACK and no dead letter tells of it.
    A broker refusing payloads above this limit says so to the publisher instead (MQTT 5:
    PUBACK reason 0x95, packet too large) and in its log; payloads between the service's limit
    and this one still reach the gateway and are dead-lettered as too large. Half the headroom
    is left for the topic and properties.
    """
    return max_payload_bytes + PACKET_HEADROOM_BYTES // 2


def connect_properties(
    receive_maximum: int, session_expiry_s: int, max_packet_bytes: int | None = None
) -> Properties:
    """MQTT 5 CONNECT properties for a persistent, flow-controlled session.

    Receive Maximum is the broker's limit on QoS 1 messages in flight to us, unacknowledged:
    with Maximum Packet Size, it is what bounds the gateway's memory (window x packet size),
    whatever devices publish. A packet over that size the broker does not send us at all (MQTT 5
    section 3.1.2.11.4: it discards it as if delivered). Session Expiry must be non-zero or the
    broker forgets the session, and the unacknowledged messages with it, on disconnect.
    """
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.ReceiveMaximum = receive_maximum
    props.SessionExpiryInterval = session_expiry_s
    if max_packet_bytes is not None:
        props.MaximumPacketSize = max_packet_bytes
    return props


def enable_manual_ack(client: aiomqtt.Client) -> None:
    """Hold PUBACKs until `ack` is called. Must run before the client connects.

    Before CONNECT, not merely before SUBSCRIBE: a persistent session's queued messages arrive
    right after CONNACK, and paho acknowledges whatever it reads while manual ack is off, so a
    switch after connecting would acknowledge the first messages of every resumed session
    before they are stored (tests/telematics/test_resume.py).
    """
    share_property_tables()
    client._client.manual_ack_set(True)


def manual_ack_enabled(client: aiomqtt.Client) -> bool:
    """Whether `client` holds its PUBACKs for `ack`."""
    return bool(client._client._manual_ack)


_PROPERTY_TABLES = ("types", "names", "properties")


def share_property_tables() -> None:
    """Make paho build its MQTT 5 property tables once, instead of once per packet.

    paho's `Properties.__init__` rebuilds three constant tables (property names, types, and
    the type and packet kinds of each property, through some thirty list look-ups) for every
    PUBLISH it decodes: a quarter of the gateway's CPU at full load, measured with py-spy.
    Nothing modifies the tables after construction, so all instances can share one copy.
    `clear`, run on each decoded packet, likewise walked every property name; it now deletes
    just the properties the instance holds, which is what it did in effect. Idempotent; the
    behaviour is pinned by tests/telematics/test_mqtt_adapter.py.
    """
    if Properties.__dict__.get("_tables_shared"):
        return
    template = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    tables = {name: template.__dict__[name] for name in _PROPERTY_TABLES}
    private = frozenset(("packetType", *_PROPERTY_TABLES))

    def init(self: Properties, packetType: int) -> None:  # noqa: N803 - paho's signature
        fields = self.__dict__
        fields["packetType"] = packetType
        fields.update(tables)

    def clear(self: Properties) -> None:
        for name in [name for name in self.__dict__ if name not in private]:
            delattr(self, name)

    Properties.__init__ = init  # type: ignore[method-assign]
    Properties.clear = clear  # type: ignore[method-assign]
    Properties._tables_shared = True  # type: ignore[attr-defined]


def granted_qos(reply: Sequence[int] | Sequence[ReasonCode]) -> list[int]:
    """The QoS granted for each topic of a SUBSCRIBE, -1 where the broker refused it.

    MQTT 3.1.1 answers with integers (0x80 for a failure), MQTT 5 with reason codes (0x80 and
    above for a failure, else the granted QoS).
    """
    codes = [code.value if isinstance(code, ReasonCode) else int(code) for code in reply]
    return [code if code < 0x80 else -1 for code in codes]


def ack(client: aiomqtt.Client, message: aiomqtt.Message) -> bool:
    """Send the PUBACK of one message. Returns False if the connection is already gone.

    The packet id of a message is only meaningful on the connection it came in on: after a
    reconnect the broker redelivers unacknowledged messages with ids of the new connection, so
    acknowledging an old id there would acknowledge the wrong message. Callers pass the client the
    message arrived on, and a closed client refuses.
    """
    if message.qos == 0:
        return True
    if client._disconnected.done():
        return False
    return client._client.ack(message.mid, message.qos) == 0


def take_ready(
    client: aiomqtt.Client,
    into: list[aiomqtt.Message],
    limit: int,
    max_bytes: int | None = None,
    have_bytes: int = 0,
) -> int:
    """Move messages aiomqtt has already received into `into`, without waiting, up to `limit`
    messages and, if given, until their payloads reach `max_bytes` (counting `have_bytes`
    already in `into`). Returns the payload bytes in `into` afterwards.

    Synchronous and never cancelled halfway, so it cannot drop a message the way a timeout around
    aiomqtt's async iterator can.
    """
    queue = client._queue
    while len(into) < limit and (max_bytes is None or have_bytes < max_bytes) and not queue.empty():
        message = queue.get_nowait()
        into.append(message)
        have_bytes += len(message.payload)
    return have_bytes


class LazyPublisher:
    """A QoS 1 publishing client that connects on its first publish and again after a failure.

    For the service's own outgoing messages (notices, demo van positions): `publish` raises
    what aiomqtt raises (`aiomqtt.MqttError`, `TimeoutError`, `OSError`) after dropping the
    connection, so the next call reconnects.
    """

    def __init__(
        self, endpoint: MqttEndpoint, client_id: str, *, protocol: str = "5", timeout_s: float = 10
    ) -> None:
        """Create the publisher; nothing connects until the first `publish`."""
        self._endpoint = endpoint
        self._client_id = client_id
        self._protocol = (
            aiomqtt.ProtocolVersion.V5 if protocol == "5" else aiomqtt.ProtocolVersion.V311
        )
        self.timeout_s = timeout_s
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
                    timeout=self.timeout_s,
                )  # fmt: skip
                await asyncio.wait_for(stack.enter_async_context(client), self.timeout_s)
                self._stack, self._client = stack, client
            return self._client

    async def publish(self, topic: str, payload: bytes) -> None:
        """Publish at QoS 1 and wait for the broker's acknowledgement."""
        try:
            client = await self._connected()
            await client.publish(topic, payload, qos=1, timeout=self.timeout_s)
        except (aiomqtt.MqttError, TimeoutError, OSError):
            await self.close()
            raise

    async def close(self) -> None:
        """Disconnect (if connected)."""
        async with self._lock:
            stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            # The connection is gone either way.
            with contextlib.suppress(aiomqtt.MqttError, TimeoutError, OSError):
                await asyncio.wait_for(stack.aclose(), self.timeout_s)
