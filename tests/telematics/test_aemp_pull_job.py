"""The AEMP puller as the service runs it (a background job over real TCP) and as the
`telematics aemp-pull` command runs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import asyncpg
import orjson
import uvicorn

from telematics.aemp.puller import run_puller
from telematics.base.config import Settings
from telematics.wire.decode import Limits
from tests.conftest import unique
from tests.telematics.aemp_world import ADMIN
from tests.telematics.harness import api_client, eventually
from tests.telematics.test_aemp_pull import add_source, fixture_server


@asynccontextmanager
async def served(app: object) -> AsyncIterator[str]:
    """`app` under uvicorn on a free local port; yields its base URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")  # type: ignore[arg-type]
    )
    task = asyncio.create_task(server.serve())
    while not server.started and not task.done():  # noqa: ASYNC110 - uvicorn has no event
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_the_background_job_polls_a_due_source_over_http(pool: asyncpg.Pool) -> None:
    when = (datetime.now(UTC) - timedelta(minutes=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    page = (
        f'<Fleet xmlns="http://standards.iso.org/iso/15143/-3" version="2"><Equipment>'
        f"<EquipmentHeader><OEMName>Liebherr</OEMName><Model>R 920</Model><PIN>LH-{when}</PIN>"
        f'</EquipmentHeader><CumulativeOperatingHours datetime="{when}"><Hour>77.5</Hour>'
        f"</CumulativeOperatingHours></Equipment></Fleet>"
    ).encode()
    requested: list[str] = []
    transport = fixture_server({"/lh/Fleet/1": (200, "application/xml", page)}, requested)
    customer = unique("AEMPB")
    async with served(transport.app) as url:
        source = await add_source(pool, customer, base_url=f"{url}/lh", auth="none")
        stop = asyncio.Event()
        job = asyncio.create_task(run_puller(pool, Limits(), stop, check_s=0.05))
        try:
            count = await eventually(
                lambda: pool.fetchval(
                    "SELECT count(*) FROM readings r JOIN machines m USING (machine_id) "
                    "WHERE m.customer_id = $1 AND r.engine_hours = 77.5",
                    customer,
                ),
                1,
            )
        finally:
            stop.set()
            await asyncio.wait_for(job, 30)
    assert count == 1
    assert requested == ["/lh/Fleet/1"]  # polled once: the next poll is an interval away
    row = await pool.fetchrow(
        "SELECT last_result, next_poll_at > now() + interval '10 minutes' AS later "
        "FROM aemp_sources WHERE source_id = $1",
        source.source_id,
    )
    assert row["later"]
    assert "1 readings stored" in row["last_result"]


async def test_the_command_pulls_and_fails_clearly(settings: Settings, pool: asyncpg.Pool) -> None:
    assert settings.database_url is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELEMATICS_")}
    env["TELEMATICS_DATABASE_URL"] = settings.database_url.get_secret_value()
    source_id = unique("cli")[:20]
    # Nothing answers on port 9: the poll fails, with its reason, and the command says so.
    await add_source(pool, unique("AEMPK"), source_id=source_id,
                     base_url="http://127.0.0.1:9/none", auth="none")  # fmt: skip
    for args, stream, text in (
        (["--source", source_id], "stdout", f"{source_id}: 0 pages"),
        (["--source", "no-such-source"], "stderr", "not found"),
    ):
        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "telematics", "aemp-pull", *args],
            env=env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 1, done.stderr
        assert text in getattr(done, stream), (done.stdout, done.stderr)
        assert "Traceback" not in done.stderr
    last = await pool.fetchval(
        "SELECT last_result FROM aemp_sources WHERE source_id = $1", source_id
    )
    assert "failed: ConnectError" in last


async def test_the_admin_configures_sources_and_pulls_one_now(pool: asyncpg.Pool) -> None:
    when = (datetime.now(UTC) - timedelta(minutes=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    pin = unique("CAT")
    page = orjson.dumps({"Equipment": [{
        "EquipmentHeader": {"OEMName": "Caterpillar", "Model": "320 GC", "PIN": pin},
        "Location": {"datetime": when, "Latitude": 1.5, "Longitude": 2.5},
    }]})  # fmt: skip
    transport = fixture_server({"/cat/Fleet/1": (200, "application/json", page)}, [], ("u", "p"))
    customer, source_id = unique("AEMPD"), unique("cat")[:20]
    async with served(transport.app) as url, api_client(pool) as http:
        good = {"source_id": source_id, "customer_id": customer, "base_url": f"{url}/cat",
                "auth": "basic", "username": "u", "secret": "p",
                "poll_interval_s": 3600}  # fmt: skip
        for bad in (
            {**good, "base_url": "ftp://x/y"},
            {**good, "base_url": "not a url"},
            {**good, "auth": "oauth"},  # no token_url
            {**good, "poll_interval_s": 5},
            {**good, "source_id": "x" * 40},
            {**good, "secret": "p\x00"},
            {**good, "extra": 1},
        ):
            answer = await http.post("/v1/aemp/sources", json=bad, headers=ADMIN)
            assert answer.status_code == 422, bad
        created = await http.post("/v1/aemp/sources", json=good, headers=ADMIN)
        assert created.status_code == 201, created.text
        assert "secret" not in created.json()
        assert (await http.post("/v1/aemp/sources", json=good, headers=ADMIN)).status_code == 409
        listed = (await http.get("/v1/aemp/sources", headers=ADMIN)).json()
        assert [s["source_id"] for s in listed if s["source_id"] == source_id] == [source_id]
        assert all("secret" not in s for s in listed)
        pulled = await http.post(f"/v1/aemp/sources/{source_id}/pull", headers=ADMIN)
        assert pulled.status_code == 200, pulled.text
        assert pulled.json()["error"] is None
        assert (pulled.json()["machines"], pulled.json()["readings_inserted"]) == (1, 1)
        machine = await pool.fetchrow("SELECT * FROM machines WHERE serial_number = $1", pin)
        assert (machine["customer_id"], machine["oem"], machine["model"]) == (
            customer, "Caterpillar", "320 GC",
        )  # fmt: skip
        deleted = await http.delete(f"/v1/aemp/sources/{source_id}", headers=ADMIN)
        assert deleted.status_code == 200
        assert (await http.post(f"/v1/aemp/sources/{source_id}/pull",
                                headers=ADMIN)).status_code == 404  # fmt: skip
