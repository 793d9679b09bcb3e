"""paho's Properties with shared tables behave exactly as paho's own."""

from __future__ import annotations

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import MQTTException, Properties

from telematics.ingest import mqtt


@pytest.fixture(autouse=True)
def shared() -> None:
    mqtt.share_property_tables()
    mqtt.share_property_tables()  # idempotent


def test_publish_properties_round_trip() -> None:
    sent = Properties(PacketTypes.PUBLISH)
    sent.ContentType = "application/json"
    sent.MessageExpiryInterval = 60
    sent.UserProperty = ("schema", "v1")
    sent.UserProperty = ("site", "A")
    received = Properties(PacketTypes.PUBLISH)
    received.unpack(sent.pack())
    assert received.ContentType == "application/json"
    assert received.MessageExpiryInterval == 60
    assert received.UserProperty == [("schema", "v1"), ("site", "A")]


def test_instances_do_not_share_values() -> None:
    one = Properties(PacketTypes.PUBLISH)
    two = Properties(PacketTypes.CONNECT)
    one.UserProperty = ("a", "1")
    assert not hasattr(two, "UserProperty")
    assert two.packetType == PacketTypes.CONNECT
    assert one.packetType == PacketTypes.PUBLISH
    assert two.isEmpty()


def test_unpack_clears_what_an_instance_held() -> None:
    props = Properties(PacketTypes.PUBLISH)
    props.ContentType = "text/plain"
    empty = Properties(PacketTypes.PUBLISH)
    props.unpack(empty.pack())
    assert not hasattr(props, "ContentType")
    assert props.isEmpty()
    assert props.names["Content Type"] == 3  # the tables survive a clear


def test_validation_still_applies() -> None:
    props = Properties(PacketTypes.PUBLISH)
    with pytest.raises(MQTTException):
        props.NotAProperty = 1
    with pytest.raises(MQTTException):
        props.ReceiveMaximum = 10  # a CONNECT property, not a PUBLISH one
    connect = Properties(PacketTypes.CONNECT)
    with pytest.raises(MQTTException):
        connect.ReceiveMaximum = 0
