"""The embedded database and broker listen on stable, printed ports: the configured one when it
is free, the next free one (with a warning that says so) when it is taken.
"""

from __future__ import annotations

import logging
import socket
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


def test_a_free_stable_port_is_kept_and_zero_means_any() -> None:
    port = embedded.free_port()
    assert embedded.stable_port(port, "PostgreSQL") == port
    assert embedded.stable_port(0, "PostgreSQL") > 0


async def test_embedded_postgres_answers_on_its_tcp_port(tmp_path: Path) -> None:
    port = embedded.stable_port(embedded.free_port(), "PostgreSQL")
    dsn, tcp_port = await embedded.start_postgres(tmp_path, port)
    assert tcp_port == port
    for where in (dsn, f"postgresql://postgres@127.0.0.1:{port}/{embedded.EMBEDDED_DB_NAME}"):
        conn = await asyncpg.connect(where, timeout=10)
        try:
            assert await conn.fetchval("SELECT current_database()") == embedded.EMBEDDED_DB_NAME
        finally:
            await conn.close()
