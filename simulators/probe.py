"""What is at a broker address that did not take our connection: one line a person can act on.

When the simulator cannot connect, the client library says only "connection refused" or
"connection lost before CONNACK". This module finds out why with bare sockets, speaking the first
packet of MQTT by hand: nothing listens there, the broker speaks the other MQTT version (amqtt
speaks 3.1.1 only and hangs up on an MQTT 5 CONNECT; a broker set to 5 only refuses 3.1.1 with
"unacceptable protocol version"), or the port is not a broker at all (the HTTP API's port, say).
It never imports the backend and is used only after a connection failed.
"""

from __future__ import annotations

import socket
import uuid
from typing import Final, Literal

from simulators.link import MqttProtocol

_CONNACK: Final = 0x20
_DISCONNECT: Final = b"\xe0\x00"
_LEVEL: Final[dict[MqttProtocol, int]] = {"3.1.1": 4, "5": 5}
_OTHER: Final[dict[MqttProtocol, MqttProtocol]] = {"3.1.1": "5", "5": "3.1.1"}

Answer = Literal["accepted", "refused", "closed", "not_mqtt", "silent", "unreachable"]


def connect_packet(protocol: MqttProtocol, client_id: str) -> bytes:
    """An MQTT CONNECT: clean start, keep-alive 10 s, no will, no credentials."""
    cid = client_id.encode()
    variable = b"\x00\x04MQTT" + bytes([_LEVEL[protocol], 0x02]) + (10).to_bytes(2, "big")
    if protocol == "5":
        variable += b"\x00"  # no properties
    body = variable + len(cid).to_bytes(2, "big") + cid
    return bytes([0x10, len(body)]) + body  # short enough for a one-byte remaining length


def try_connect(
    host: str, port: int, protocol: MqttProtocol, timeout_s: float = 3.0
) -> tuple[Answer, bytes]:
    """Send one CONNECT of `protocol` and classify the answer; returns it with the bytes read."""
    try:
        sock = socket.create_connection((host, port), timeout=timeout_s)
    except OSError:
        return "unreachable", b""
    with sock:
        try:
            sock.sendall(connect_packet(protocol, f"probe-{uuid.uuid4().hex[:8]}"))
            head = sock.recv(64)
            answer = _classify(head)
            if answer == "accepted":
                sock.sendall(_DISCONNECT)
        except TimeoutError:
            return "silent", b""
        except OSError:
            return "closed", b""
        return answer, head


def _classify(head: bytes) -> Answer:
    if not head:
        return "closed"
    if head[0] != _CONNACK or len(head) < 4:  # fixed header, remaining length, 2 bytes
        return "not_mqtt"
    # 3.1.1: return code 0 accepts; 5: reason code 0 accepts (both at byte 3).
    return "accepted" if head[3] == 0 else "refused"


def explain(host: str, port: int, protocol: MqttProtocol, timeout_s: float = 3.0) -> str | None:
    """Why a connection with `protocol` to `host:port` failed, in one line; None if unknown."""
    where = f"{host}:{port}"
    answer, head = try_connect(host, port, protocol, timeout_s)
    if answer == "unreachable":
        return (
            f"nothing listens at {where} (connection refused or unreachable): start an MQTT "
            "broker there, or point --mqtt-url at one (telematics demo prints its broker's)"
        )
    if answer == "not_mqtt":
        shown = head[:40].decode("latin-1").splitlines()[0] if head else ""
        return (
            f"{where} answers, but not as an MQTT broker (it said {shown!r}): is that another "
            "service's port, such as the HTTP API's?"
        )
    if answer == "accepted":
        return None  # it takes this protocol now: the failure was something else
    other = _OTHER[protocol]
    if try_connect(host, port, other, timeout_s)[0] == "accepted":
        return (
            f"the broker at {where} speaks MQTT {other}, not MQTT {protocol}: "
            f"run with --protocol {other}"
        )
    if answer == "refused":
        return f"the broker at {where} refused the connection (CONNACK code {head[3]:#04x})"
    return f"the broker at {where} hung up on an MQTT {protocol} and an MQTT {other} CONNECT"
