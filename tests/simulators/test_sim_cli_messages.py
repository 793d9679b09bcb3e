"""`telematics simulate`'s own words: `--help` names every fault kind, and a connection that
fails says in one line what is at the address and what to change.

Real sockets throughout: a port nobody listens on, amqtt (a real broker that speaks MQTT 3.1.1
only) and a server that answers like a web server, for a port that is not a broker.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator

import pytest

from simulators import cli
from simulators.faults import FAULT_KINDS


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _simulate(port: int, *extra: str) -> list[str]:
    return ["--mqtt-url", f"mqtt://127.0.0.1:{port}", "--machines", "1", "--duration", "1", *extra]


def _one_line_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    assert "Traceback" not in err
    return lines[0]


def test_help_names_every_fault_kind_with_a_line_of_its_own() -> None:
    text = cli.build_parser().format_help()
    for kind in FAULT_KINDS:
        line = next((x for x in text.splitlines() if x.split()[:1] == [kind]), None)
        assert line is not None, f"{kind} is not in --help"
        assert len(line.split()) > 3, f"{kind} has no description: {line!r}"


def test_nothing_listening_is_said_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    port = _free_port()
    assert cli.main(_simulate(port)) == 3
    line = _one_line_error(capsys.readouterr().err)
    assert f"nothing listens at 127.0.0.1:{port}" in line


async def test_mqtt5_to_a_311_broker_says_which_protocol_it_wants(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from amqtt.broker import Broker  # noqa: PLC0415 - a dev-only broker for this test

    port = _free_port()
    broker = Broker(
        {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
            },
        }
    )
    await broker.start()
    try:
        # The simulator blocks; amqtt answers on this loop meanwhile.
        assert await asyncio.to_thread(cli.main, _simulate(port, "--protocol", "5")) == 3
        line = _one_line_error(capsys.readouterr().err)
        assert "speaks MQTT 3.1.1, not MQTT 5" in line
        assert "--protocol 3.1.1" in line
        assert await asyncio.to_thread(cli.main, _simulate(port, "--protocol", "3.1.1")) == 0
    finally:
        await broker.shutdown()


@pytest.fixture
def http_port() -> Iterator[int]:
    """A port that answers like a web server: a status line, then it hangs up."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.recv(1024)
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        done.set()
        thread.join()
        listener.close()


def test_a_port_that_is_no_broker_is_named(
    http_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(_simulate(http_port)) == 3
    line = _one_line_error(capsys.readouterr().err)
    assert "not as an MQTT broker" in line
    assert "HTTP/1" in line
