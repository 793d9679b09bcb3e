"""The simulator's MQTT session: QoS 1 publishing with a bounded window of unacknowledged messages.

This module owns the paho-mqtt client, and is the only one that imports paho. It translates paho's
errors into `simulators.errors` and never lets more than `window` messages wait for a PUBACK: paho
numbers packets with 16-bit ids, and with more than 65,535 messages outstanding some would be
silently lost when ids wrap.

Why paho-mqtt 2.x directly, driven from the publishing thread (no `loop_start`): publishing is a
tight CPU-bound loop, and a second network thread only adds GIL hand-offs and locks (measured ~30 %
slower). We `select()` on the client's socket ourselves and call `loop_read`/`loop_write`/
`loop_misc`, paho's documented external-loop interface; PUBACK callbacks therefore run in our own
thread, so the window is a plain counter rather than a semaphore. aiomqtt was not chosen: its
`publish` awaits each PUBACK, so keeping hundreds of messages in flight takes one task per message,
and it spends ~35-45 µs a message against paho's ~15.
"""

from __future__ import annotations

import logging
import select
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from simulators.errors import BrokerRefusedError, BrokerUnavailableError

_log = logging.getLogger(__name__)

MqttProtocol = Literal["5", "3.1.1"]

_MAX_WINDOW = 65_000  # below the 65,535 packet ids of MQTT
_SPEC_RECEIVE_MAXIMUM = 65_535  # MQTT 5 default when the CONNACK does not say


@dataclass(frozen=True, slots=True)
class MqttSettings:
    """How to reach the broker.

    Attributes:
        host: Broker host.
        port: Broker TCP port.
        client_id_prefix: Start of the client id; a random suffix makes each session unique.
        protocol: MQTT protocol version.
        username: User name, if the broker wants one.
        password: Password, never logged.
        keepalive_s: MQTT keepalive.
        connect_timeout_s: How long to wait for CONNACK.
        reconnect_timeout_s: How long to keep trying after the connection drops mid-run.
    """

    host: str = "127.0.0.1"
    port: int = 1883
    client_id_prefix: str = "sim"
    protocol: MqttProtocol = "5"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    keepalive_s: int = 60
    connect_timeout_s: float = 10.0
    reconnect_timeout_s: float = 30.0

    @classmethod
    def from_url(cls, url: str, **overrides: Any) -> MqttSettings:
        """Settings from `mqtt://[user[:password]@]host[:port]`; keyword arguments override.

        Raises:
            ValueError: Not an `mqtt://` URL.
        """
        parts = urlsplit(url)
        if parts.scheme != "mqtt" or not parts.hostname:
            raise ValueError(f"expected mqtt://host[:port], not {url!r}")
        values: dict[str, Any] = {"host": parts.hostname, "port": parts.port or 1883}
        if parts.username:
            values["username"] = unquote(parts.username)
            values["password"] = unquote(parts.password) if parts.password else None
        values.update(overrides)
        return cls(**values)


class Link:
    """One MQTT session that publishes QoS 1 messages and counts their acknowledgements.

    Not thread-safe: create, use and close it in one thread.

    Args:
        settings: Broker address and credentials.
        max_inflight: Most messages awaiting PUBACK at once.
        honour_receive_maximum: With MQTT 5, also stay within the Receive Maximum the broker
            announces (Mosquitto says 20, but does not enforce it for QoS 1).
        record_keys: Keep the keys passed to `publish` of every acknowledged message.
        stop: Set to abandon reconnecting and waiting for CONNACK early.
    """

    def __init__(
        self,
        settings: MqttSettings,
        *,
        max_inflight: int = 1000,
        honour_receive_maximum: bool = True,
        record_keys: bool = False,
        stop: threading.Event | None = None,
    ) -> None:
        if not 1 <= max_inflight <= _MAX_WINDOW:
            raise ValueError(f"max_inflight must be within 1..{_MAX_WINDOW}, not {max_inflight}")
        self.settings = settings
        self.max_inflight = max_inflight
        self.honour_receive_maximum = honour_receive_maximum
        self.window = max_inflight
        self.published = 0
        self.acked = 0
        self.refused = 0
        self.reconnects = 0
        self.peak_outstanding = 0
        self.acked_keys: list[tuple[str, int]] | None = [] if record_keys else None
        self._pending_keys: dict[int, list[tuple[str, int]]] = {}
        self._stop = stop or threading.Event()
        self._connack: ReasonCode | None = None
        protocol = paho.MQTTv5 if settings.protocol == "5" else paho.MQTTv311
        self.client_id = f"{settings.client_id_prefix}-{uuid.uuid4().hex[:12]}"
        self._client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=protocol
        )
        # Our window bounds what is outstanding; paho's own inflight limit would rescan every
        # outstanding message on each PUBACK, so it is switched off.
        self._client.max_inflight_messages_set(0)
        if settings.username is not None:
            self._client.username_pw_set(settings.username, settings.password)
        self._client.on_connect = self._on_connect
        self._client.on_publish = self._on_publish

    @property
    def outstanding(self) -> int:
        """Messages published and not yet acknowledged."""
        return self.published - self.acked - self.refused

    def connect(self) -> None:
        """Open the session and wait for CONNACK.

        Raises:
            BrokerUnavailableError: The broker cannot be reached or does not answer in time.
            BrokerRefusedError: The broker refused the connection.
        """
        s = self.settings
        try:
            self._client.connect(s.host, s.port, keepalive=s.keepalive_s)
        except OSError as exc:
            raise BrokerUnavailableError(s.host, s.port, str(exc)) from exc
        self._await_connack(time.monotonic() + s.connect_timeout_s)
        _log.info(
            "connected to %s:%d as %s, window %d", s.host, s.port, self.client_id, self.window
        )

    def publish(self, topic: str, payload: bytes, keys: list[tuple[str, int]] | None) -> None:
        """Publish one QoS 1 message, first waiting for room in the window.

        Args:
            topic: MQTT topic.
            payload: Message body.
            keys: `(machine_id, ts_ms)` of the readings inside, kept if recording keys.

        Raises:
            BrokerUnavailableError: The connection broke and could not be re-established.
        """
        while self.outstanding >= self.window:
            self.service(1.0)
        info = self._client.publish(topic, payload, qos=1)
        # NO_CONN: paho keeps the message and sends it once reconnected.
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            raise BrokerUnavailableError(self.settings.host, self.settings.port, str(info.rc))
        self.published += 1
        self.peak_outstanding = max(self.peak_outstanding, self.outstanding)
        if self.acked_keys is not None and keys is not None:
            self._pending_keys[info.mid] = keys

    def service(self, timeout_s: float) -> None:
        """Wait up to `timeout_s` for network traffic and process it (PUBACKs, pings)."""
        sock = self._client.socket()
        if sock is None:
            self._reconnect()
            return
        want_write = [sock] if self._client.want_write() else []
        readable, writable, _ = select.select([sock], want_write, [], timeout_s)
        rc = MQTTErrorCode.MQTT_ERR_SUCCESS
        if readable:
            rc = self._client.loop_read()
        if writable and rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
            rc = self._client.loop_write()
        if rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
            rc = self._client.loop_misc()
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            _log.warning("connection to the broker lost (%s), reconnecting", rc)
            self._reconnect()

    def drain(self, timeout_s: float) -> bool:
        """Wait until every published message is acknowledged, at most `timeout_s`.

        Returns:
            Whether nothing is outstanding any more.
        """
        deadline = time.monotonic() + timeout_s
        while self.outstanding:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.service(min(left, 0.1))
        return self.outstanding == 0

    def close(self) -> None:
        """Send DISCONNECT and close the socket; never raises."""
        try:
            self._client.disconnect()
            deadline = time.monotonic() + 1.0
            while (sock := self._client.socket()) is not None and self._client.want_write():
                if time.monotonic() > deadline:
                    break
                select.select([], [sock], [], 0.1)
                self._client.loop_write()
        except OSError:
            _log.debug("error while disconnecting", exc_info=True)
        finally:
            sock = self._client.socket()  # paho closes it once DISCONNECT is written
            if sock is not None:
                sock.close()

    def _await_connack(self, deadline: float) -> None:
        s = self.settings
        self._connack = None
        while (connack := self._received_connack()) is None:
            left = deadline - time.monotonic()
            if left <= 0 or self._stop.is_set():
                raise BrokerUnavailableError(s.host, s.port, "no CONNACK in time")
            sock = self._client.socket()
            if sock is None:
                raise BrokerUnavailableError(s.host, s.port, "connection closed before CONNACK")
            readable, _, _ = select.select([sock], [], [], min(left, 0.1))
            if readable and self._client.loop_read() != MQTTErrorCode.MQTT_ERR_SUCCESS:
                raise BrokerUnavailableError(s.host, s.port, "connection lost before CONNACK")
        if connack.is_failure:
            raise BrokerRefusedError(s.host, s.port, str(connack))

    def _received_connack(self) -> ReasonCode | None:
        # A method, not the attribute, so that type checkers see the callback may have set it.
        return self._connack

    def _reconnect(self) -> None:
        s = self.settings
        deadline = time.monotonic() + s.reconnect_timeout_s
        delay_s = 0.1
        while not self._stop.is_set():
            try:
                self._client.reconnect()
                self._await_connack(min(deadline, time.monotonic() + s.connect_timeout_s))
            except (OSError, BrokerUnavailableError) as exc:
                if time.monotonic() + delay_s > deadline:
                    raise BrokerUnavailableError(s.host, s.port, f"reconnect: {exc}") from exc
                self._stop.wait(delay_s)
                delay_s = min(delay_s * 2, 2.0)
                continue
            self.reconnects += 1
            _log.info("reconnected to %s:%d; unacknowledged messages are resent", s.host, s.port)
            return
        raise BrokerUnavailableError(s.host, s.port, "stopped while reconnecting")

    def _on_connect(
        self,
        client: paho.Client,
        userdata: object,
        flags: paho.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._connack = reason_code
        receive_maximum = _SPEC_RECEIVE_MAXIMUM
        if properties is not None and hasattr(properties, "ReceiveMaximum"):
            receive_maximum = int(properties.ReceiveMaximum)
        if self.honour_receive_maximum and self.settings.protocol == "5":
            self.window = min(self.max_inflight, receive_maximum)

    def _on_publish(
        self,
        client: paho.Client,
        userdata: object,
        mid: int,
        reason_code: ReasonCode,
        properties: Properties,
    ) -> None:
        # MQTT 5 PUBACK reason codes >= 0x80 mean the broker did not accept the message (not
        # authorised, quota exceeded...); 0x10 "no matching subscribers" is still a success.
        keys = self._pending_keys.pop(mid, None)
        if reason_code.is_failure:
            self.refused += 1
            _log.warning("broker refused message %d: %s", mid, reason_code)
            return
        self.acked += 1
        if keys is not None and self.acked_keys is not None:
            self.acked_keys.extend(keys)
