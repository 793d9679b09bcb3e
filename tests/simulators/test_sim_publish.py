"""Publishing to the real Mosquitto at 127.0.0.1:1883, checked by an MQTT 5 subscriber."""

from __future__ import annotations

import asyncio
import itertools
import socket
import time
import uuid
from datetime import datetime

import aiomqtt
import orjson
import pytest

from simulators import (
    BrokerUnavailableError,
    MqttSettings,
    SimConfig,
    SimReport,
    arun,
    make_fleet,
    run,
)
from simulators.cli import main
from simulators.state import WIRE_SIGNALS
from simulators.wire import telemetry_topic

HOST, PORT = "127.0.0.1", 1883


@pytest.fixture(scope="module", autouse=True)
def broker_answers() -> None:
    try:
        with socket.create_connection((HOST, PORT), timeout=5):
            pass
    except OSError as exc:
        pytest.fail(f"these tests need Mosquitto at {HOST}:{PORT}: {exc}")


def unique_prefix() -> str:
    return f"T{uuid.uuid4().hex[:10].upper()}"


async def _collect(client: aiomqtt.Client, expected: int) -> list[aiomqtt.Message]:
    received: list[aiomqtt.Message] = []
    async for message in client.messages:
        received.append(message)
        if len(received) == expected:
            break
    return received


async def publish_and_receive(
    config: SimConfig, expected_messages: int
) -> tuple[SimReport, list[aiomqtt.Message]]:
    """Subscribe to every machine's topic first, then run the simulator and collect."""
    topics = [telemetry_topic(m.machine_id) for m in config.machines]
    async with aiomqtt.Client(
        HOST, PORT, identifier=f"sim-test-{uuid.uuid4().hex}", protocol=aiomqtt.ProtocolVersion.V5
    ) as subscriber:
        await subscriber.subscribe([(topic, 1) for topic in topics])
        async with asyncio.timeout(60):
            consumer = asyncio.create_task(_collect(subscriber, expected_messages))
            report = await arun(config)
            messages = await consumer
    return report, messages


def machine_of(message: aiomqtt.Message) -> str:
    parts = message.topic.value.split("/")
    assert parts[0] == "machines"
    assert parts[2] == "telemetry"
    return parts[1]


async def test_every_single_reading_message_reaches_a_subscriber() -> None:
    machines = make_fleet(6, id_prefix=unique_prefix())
    config = SimConfig(
        machines=machines,
        readings_per_machine=30,
        max_inflight=5,
        record_keys=True,
        progress=False,
    )
    before_ms = time.time_ns() // 1_000_000
    report, messages = await publish_and_receive(config, expected_messages=180)

    assert report.readings == report.messages == report.messages_acked == 180
    assert report.is_complete
    assert report.peak_outstanding <= 5
    received: set[tuple[str, int]] = set()
    for message in messages:
        assert message.qos == 1
        assert isinstance(message.payload, bytes)
        doc = orjson.loads(message.payload)
        assert set(doc) == {"ts", *WIRE_SIGNALS}
        assert type(doc["ts"]) is int
        assert before_ms - 31 * 1000 <= doc["ts"] <= before_ms + 5000
        received.add((machine_of(message), doc["ts"]))
    assert len(received) == 180
    assert report.keys is not None
    assert received == set(report.keys)


async def test_a_batch_holds_consecutive_readings_of_one_machine() -> None:
    machines = make_fleet(4, id_prefix=unique_prefix())
    config = SimConfig(
        machines=machines,
        readings_per_machine=50,
        batch_size=20,
        period_s=2.0,
        record_keys=True,
        progress=False,
    )
    report, messages = await publish_and_receive(config, expected_messages=12)

    assert (report.messages, report.readings, report.messages_acked) == (12, 200, 12)
    sizes: dict[str, list[int]] = {}
    received: set[tuple[str, int]] = set()
    for message in messages:
        assert isinstance(message.payload, bytes)
        readings = orjson.loads(message.payload)["readings"]
        ts = [reading["ts"] for reading in readings]
        assert all(b - a == 2000 for a, b in itertools.pairwise(ts))
        sizes.setdefault(machine_of(message), []).append(len(readings))
        received.update((machine_of(message), t) for t in ts)
    assert sizes == {m.machine_id: [20, 20, 10] for m in machines}
    assert report.keys is not None
    assert received == set(report.keys)


async def test_real_time_readings_are_stamped_now() -> None:
    machines = make_fleet(3, id_prefix=unique_prefix())
    config = SimConfig(
        machines=machines,
        mqtt=MqttSettings(protocol="3.1.1"),
        duration_s=0.3,
        period_s=0.05,
        ts_format="rfc3339",
        progress=False,
    )
    start_ms = time.time_ns() // 1_000_000
    ticks = 6
    report, messages = await publish_and_receive(config, expected_messages=3 * ticks)
    end_ms = time.time_ns() // 1_000_000

    assert report.is_complete
    assert report.messages == report.readings == 3 * ticks
    assert report.first_ts_ms is not None
    assert report.last_ts_ms is not None
    assert start_ms <= report.first_ts_ms <= report.last_ts_ms <= end_ms
    stamps: dict[str, list[int]] = {}
    for message in messages:
        assert isinstance(message.payload, bytes)
        ts = datetime.fromisoformat(orjson.loads(message.payload)["ts"])
        assert ts.utcoffset() is not None
        stamps.setdefault(machine_of(message), []).append(round(ts.timestamp() * 1000))
    for machine_stamps in stamps.values():
        assert all(start_ms <= t <= end_ms for t in machine_stamps)
        assert machine_stamps == sorted(set(machine_stamps))


async def test_the_rate_cap_paces_publishing() -> None:
    config = SimConfig(
        machines=make_fleet(2, id_prefix=unique_prefix()),
        readings_per_machine=50,
        rate_readings_per_s=400.0,
        progress=False,
    )
    report = await arun(config)
    assert report.readings == 100
    assert report.elapsed_s >= 99 / 400.0
    assert report.readings_per_s <= 420.0


def test_an_unreachable_broker_is_reported() -> None:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        free_port = probe.getsockname()[1]
    config = SimConfig(
        machines=make_fleet(1, id_prefix=unique_prefix()),
        mqtt=MqttSettings(port=free_port),
        readings_per_machine=1,
        progress=False,
    )
    with pytest.raises(BrokerUnavailableError) as caught:
        run(config)
    assert caught.value.port == free_port


def test_the_command_line_publishes_and_reports(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--machines", "3", "--readings-per-machine", "5", "--batch", "5"]
    exit_code = main([*argv, "--id-prefix", unique_prefix(), "--no-progress"])
    assert exit_code == 0
    out = capsys.readouterr().out
    assert "15 readings in 3 messages" in out
    assert "all acknowledged" in out


def test_a_config_must_choose_one_time_mode() -> None:
    machines = make_fleet(1)
    with pytest.raises(ValueError, match="readings_per_machine"):
        SimConfig(machines=machines, readings_per_machine=10, duration_s=5.0)
    with pytest.raises(ValueError, match="batch_size"):
        SimConfig(machines=machines, batch_size=1001)


def test_mqtt_urls_give_settings() -> None:
    settings = MqttSettings.from_url("mqtt://dev%40x:s3cret@broker.example:1884", protocol="3.1.1")
    assert (settings.host, settings.port, settings.protocol) == ("broker.example", 1884, "3.1.1")
    assert (settings.username, settings.password) == ("dev@x", "s3cret")
    assert "s3cret" not in repr(settings)
    with pytest.raises(ValueError, match="mqtt://"):
        MqttSettings.from_url("http://broker:1883")


async def test_cancelling_a_real_time_run_stops_it() -> None:
    machines = make_fleet(2, id_prefix=unique_prefix())
    config = SimConfig(machines=machines, period_s=0.05, progress=False)  # runs until stopped
    async with aiomqtt.Client(
        HOST, PORT, identifier=f"sim-test-{uuid.uuid4().hex}", protocol=aiomqtt.ProtocolVersion.V5
    ) as subscriber:
        await subscriber.subscribe(telemetry_topic(machines[0].machine_id), qos=1)
        async with asyncio.timeout(30):
            simulation = asyncio.create_task(arun(config))
            await _collect(subscriber, 3)
            simulation.cancel()
            with pytest.raises(asyncio.CancelledError):
                await simulation


class DroppingProxy:
    """A TCP proxy to the broker whose connections the test can cut, as a network failure would;
    with `cut_after_bytes`, it cuts its first connection itself once that much went upstream."""

    def __init__(self, cut_after_bytes: int | None = None) -> None:
        self.transports: list[asyncio.BaseTransport] = []
        self.connections = 0
        self.cut_after_bytes = cut_after_bytes
        self.upstream_bytes = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(HOST, PORT)
        self.connections += 1
        self.transports += [writer.transport, up_writer.transport]
        await asyncio.gather(
            self._pipe(reader, up_writer, upstream=True), self._pipe(up_reader, writer)
        )

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, upstream: bool = False
    ) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
                if upstream and self.connections == 1 and self.cut_after_bytes is not None:
                    self.upstream_bytes += len(data)
                    if self.upstream_bytes >= self.cut_after_bytes:
                        self.cut()
        except OSError:
            pass
        finally:
            writer.transport.abort()

    def cut(self) -> None:
        for transport in self.transports:
            transport.abort()  # type: ignore[attr-defined]
        self.transports.clear()


async def test_a_dropped_connection_is_resumed_and_nothing_is_lost() -> None:
    # Cut by the publisher's progress, a quarter of the way through: a cut when the subscriber
    # had seen 100 messages could come after the publisher had sent (and had acked) everything.
    proxy = DroppingProxy(cut_after_bytes=40_000)
    server = await asyncio.start_server(proxy.handle, HOST, 0)
    proxy_port = server.sockets[0].getsockname()[1]
    machines = make_fleet(3, id_prefix=unique_prefix())
    config = SimConfig(
        machines=machines,
        mqtt=MqttSettings(port=proxy_port, reconnect_timeout_s=20.0),
        readings_per_machine=200,
        rate_readings_per_s=1000.0,
        record_keys=True,
        progress=False,
    )
    received: set[tuple[str, int]] = set()
    async with aiomqtt.Client(
        HOST, PORT, identifier=f"sim-test-{uuid.uuid4().hex}", protocol=aiomqtt.ProtocolVersion.V5
    ) as subscriber:
        await subscriber.subscribe([(telemetry_topic(m.machine_id), 1) for m in machines])
        simulation = asyncio.create_task(arun(config))
        try:
            async with asyncio.timeout(60):
                async for message in subscriber.messages:
                    assert isinstance(message.payload, bytes)
                    received.add((machine_of(message), orjson.loads(message.payload)["ts"]))
                    if len(received) == 600:
                        break
                report = await simulation
        except TimeoutError:
            # Say which side stopped: the simulator (still reconnecting, or done) or delivery.
            done = simulation.done() and not simulation.cancelled()
            outcome = repr(simulation.exception() or simulation.result()) if done else "running"
            simulation.cancel()
            pytest.fail(
                f"60 s: {len(received)} of 600 readings received; {proxy.connections} proxy "
                f"connections, {proxy.upstream_bytes} bytes before the cut; simulator: {outcome}"
            )
        finally:
            proxy.cut()
            server.close()
            await server.wait_closed()

    assert report.reconnects >= 1
    assert proxy.connections >= 2
    assert report.is_complete
    assert report.keys is not None
    assert len(report.keys) == 600
    assert received == set(report.keys)
