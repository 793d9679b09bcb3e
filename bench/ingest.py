"""End-to-end ingest benchmark: the gateway beside a naive gateway, a bare pipe and the broker.

Run by hand (not in CI): `.venv/bin/python -m bench.ingest` (see bench/README.md).

Everything runs here, on one machine: a private Mosquitto on a free port (unlimited queues, so
nothing is dropped), fresh databases on the PostgreSQL of TELEMATICS_BENCH_DATABASE_URL, and the
fleet simulator, in a subprocess, as the publisher. Each contender drains the same published
workload, one at a time, each from its own persistent session, each into its own database:

* gateway  - the product: decode, validate, COPY + INSERT ... ON CONFLICT, PUBACK after commit.
* naive    - per message: one executemany of INSERT ... ON CONFLICT, then the PUBACK.
* naive-loop - the same with one INSERT statement per reading, in a transaction per message.
* bare     - receive, ack, parse, COPY into a table without constraints: the ceiling.
* broker   - an aiomqtt subscriber that acks and counts: what the broker carries at QoS 1.
* broker-fast - the same, taking messages off aiomqtt's queue the way the gateway does.

Throughput is measured in drain mode: the simulator first publishes the workload while every
contender's session is offline (the broker queues it for each), then each contender in turn
connects and the rate of readings committed (received, for `broker`) is sampled over a window
after a warm-up. Publisher CPU is then not in the measurement and every contender sees the
same messages. Lag is measured in live mode: the simulator publishes in real time at a fraction
of the gateway's measured capacity, and each committed batch yields, per machine, commit time
minus the newest reading's timestamp (stamped by the simulator just before it publishes).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiomqtt
import asyncpg
import numpy as np
import orjson
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from diagnosis.engine import Engine
from diagnosis.knowledge import KnowledgeBase
from diagnosis.rules import RuleBook
from diagnosis.signals import SIGNAL_NAMES
from simulators import make_fleet
from telematics.base.config import Settings
from telematics.base.db import create_pool
from telematics.base.metrics import Metrics
from telematics.base.migrate import migrate
from telematics.ingest import mqtt
from telematics.ingest.gateway import POSITION_TOPIC, TELEMETRY_TOPIC, Gateway
from telematics.service import gateway_config
from telematics.services.diagnose import Diagnoser, DiagnoserConfig
from telematics.store.registry import SourceDirectory
from telematics.summaries.rollup import Rollup
from telematics.wire.decode import DecodedBatch

ADMIN_DSN = os.environ.get(
    "TELEMATICS_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
TOPICS = [(TELEMETRY_TOPIC, 1), (POSITION_TOPIC, 1)]
SESSION_EXPIRY_S = 3600
CONTENDERS = (
    "gateway",
    "bare",
    "naive",
    "naive-loop",
    "broker",
    "broker-fast",
    "with-diagnosis",
    "with-summaries",
)
DEFAULT_CONTENDERS = CONTENDERS[:6]
MIN_WINDOW_S = 1.0


# -- infrastructure ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def private_mosquitto() -> Iterator[str]:
    """A Mosquitto of our own: unlimited queues and in-flight window, no persistence."""
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="bench-mqtt-") as folder:
        conf = Path(folder) / "mosquitto.conf"
        conf.write_text(
            f"listener {port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence false\n"
            "max_queued_messages 0\n"  # the default, 1,000, would drop most of the workload
            "max_queued_bytes 0\n"
            "max_inflight_messages 0\n"  # MQTT 5 clients' Receive Maximum still applies
            "log_type error\n"
            "set_tcp_nodelay true\n"
        )
        proc = subprocess.Popen([binary, "-c", str(conf)], stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 10
            while True:
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)):
                    break
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"mosquitto did not start: {proc.stderr!r}")
                time.sleep(0.05)
            yield f"mqtt://127.0.0.1:{port}"
        finally:
            proc.terminate()
            proc.wait(10)


async def drop_database(name: str, *, create: bool = False) -> str:
    """Drop the bench database `name` (and create it empty if `create`); return its DSN."""
    admin = await asyncpg.connect(ADMIN_DSN)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if create:
            await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return f"{ADMIN_DSN.rsplit('/', 1)[0]}/{name}"


BARE_TABLE = f"""
CREATE TABLE bare_readings (
    machine_id text, ts_ms bigint, {", ".join(f"{n} double precision" for n in SIGNAL_NAMES)}
)"""


async def prepare_database(name: str, machines: Sequence[tuple[str, str, str]]) -> str:
    dsn = await drop_database(name, create=True)
    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn)
        await conn.execute(BARE_TABLE)
        await conn.executemany(
            "INSERT INTO machines (machine_id, model, customer_id) VALUES ($1, $2, $3)", machines
        )
        await conn.execute(  # the summaries' time zone per customer (UTC)
            "INSERT INTO customer_settings (customer_id) SELECT DISTINCT customer_id FROM machines"
        )
    finally:
        await conn.close()
    return dsn


def subscriber(
    url: str, client_id: str, *, clean_start: bool = False, expiry_s: int = SESSION_EXPIRY_S
) -> aiomqtt.Client:
    """A persistent MQTT 5 session with the gateway's Receive Maximum."""
    ep = mqtt.parse_mqtt_url(url)
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = expiry_s
    props.ReceiveMaximum = Settings().mqtt_receive_maximum
    client = aiomqtt.Client(
        ep.host,
        ep.port,
        identifier=client_id,
        protocol=aiomqtt.ProtocolVersion.V5,
        clean_start=clean_start,
        properties=props,
        timeout=30,
    )
    mqtt.enable_manual_ack(client)  # before CONNECT, as the gateway does
    return client


async def prime_sessions(url: str, client_ids: list[str]) -> None:
    """Create each contender's persistent session and subscription, then leave it offline."""
    for client_id in client_ids:
        async with subscriber(url, client_id, clean_start=True) as client:
            await client.subscribe(TOPICS)


async def discard_sessions(url: str, client_ids: list[str]) -> None:
    """Drop sessions and what is still queued for them, to free the broker's memory."""
    for client_id in client_ids:
        async with subscriber(url, client_id, clean_start=True, expiry_s=0):
            pass


def publish(url: str, machines: int, per_machine: int, batch: int, extra: list[str]) -> str:
    """Publish with the simulator in a subprocess; return its summary line."""
    cmd = [
        sys.executable,
        "-m",
        "simulators",
        "--machines",
        str(machines),
        "--batch",
        str(batch),
        "--mqtt-url",
        url,
        "--protocol",
        "5",
        "--ignore-receive-maximum",
        "--max-inflight",
        "2000",
        "--no-progress",
        *(["--readings-per-machine", str(per_machine)] if per_machine else []),
        *extra,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"simulator failed ({done.returncode}): {done.stderr}{done.stdout}")
    return done.stdout.strip()


# -- contenders --------------------------------------------------------------------------------


@dataclass
class Contender:
    """A running consumer with a counter of what it has committed (or, for `broker`, received)."""

    stored: Callable[[], float]


@asynccontextmanager
async def run_gateway(
    url: str, dsn: str, client_id: str, lags_ms: list[float] | None = None
) -> AsyncIterator[Contender]:
    settings = Settings(mqtt_client_id=client_id)
    pool = await create_pool(dsn, max_size=settings.db_ingest_pool_size)
    metrics = Metrics()

    def after_commit(batch: DecodedBatch, _seq: int | None) -> None:
        if lags_ms is None:
            return
        now_ms = time.time() * 1000
        newest: dict[str, int] = {}
        for machine_id, ts in zip(batch.readings.machine_ids, batch.readings.ts_ms, strict=True):
            if ts > newest.get(machine_id, 0):
                newest[machine_id] = ts
        lags_ms.extend(now_ms - ts for ts in newest.values())

    gateway = Gateway(
        gateway_config(settings, url, "5"),
        pool,
        SourceDirectory(),
        metrics,
        after_commit=after_commit,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(gateway.run(stop))
    try:
        yield Contender(
            lambda: metrics.registry.get_sample_value("telematics_readings_stored_total") or 0.0
        )
    finally:
        stop.set()
        await asyncio.wait_for(task, 120)
        await pool.close()


@asynccontextmanager
async def run_service_gateway(
    url: str, dsn: str, client_id: str, *, summaries: bool
) -> AsyncIterator[Contender]:
    """The gateway wired to the diagnoser as `telematics.service` wires them.

    Two pools (ingest and jobs), the diagnoser's backpressure, its pending-batch bookkeeping
    under the gateway's client id and, with `summaries`, the work-summary rollup as its
    after-batch consumer (asked to flush with the batch marks, once a second; it writes every
    `TELEMATICS_SUMMARY_FLUSH_S`). Silence checks are off (see below). The counter is what
    was diagnosed (stored minus the diagnosis backlog), so a consumer that falls behind shows.
    """
    settings = Settings(mqtt_client_id=client_id)
    ingest_pool = await create_pool(dsn, max_size=settings.db_ingest_pool_size)
    jobs_pool = await create_pool(dsn, max_size=settings.db_jobs_pool_size)
    metrics = Metrics()
    rules = RuleBook.load()
    diagnoser = Diagnoser(
        jobs_pool,
        Engine(rules),
        KnowledgeBase.load(),
        metrics,
        # No silence checks: the drained readings are old by design, and a check raising an
        # alarm for each of the fleet's machines would stall whichever contender it hit.
        DiagnoserConfig(
            history_s=settings.diagnosis_history_s, source=client_id, silence_check_s=3600.0
        ),
        consumers=[
            Rollup(
                jobs_pool,
                rules,
                settings.summary_max_gap_s,
                settings.summary_flush_s,
                settings.summary_flush_readings,
            )
        ]
        if summaries
        else [],
    )
    gateway = Gateway(
        gateway_config(settings, url, "5"),
        ingest_pool,
        SourceDirectory(),
        metrics,
        after_commit=lambda d, seq: diagnoser.submit(d.readings, seq),
        backpressure=diagnoser.room,
    )
    diagnoser.heard_since = gateway.heard_since
    gateway_stop, diagnosis_stop = asyncio.Event(), asyncio.Event()
    diagnosis = asyncio.create_task(diagnoser.run(diagnosis_stop))
    task = asyncio.create_task(gateway.run(gateway_stop))

    def diagnosed() -> float:
        sample = metrics.registry.get_sample_value
        stored = sample("telematics_readings_stored_total") or 0.0
        return stored - (sample("telematics_diagnosis_backlog_readings") or 0.0)

    try:
        yield Contender(diagnosed)
    finally:
        gateway_stop.set()
        await asyncio.wait_for(task, 120)
        diagnosis_stop.set()
        await asyncio.wait_for(diagnosis, 300)
        await ingest_pool.close()
        await jobs_pool.close()


def _reading_rows(machine_id: str, payload: bytes) -> list[tuple[Any, ...]]:
    doc = orjson.loads(payload)
    readings = doc.get("readings", [doc])
    return [
        (
            machine_id,
            datetime.fromtimestamp(r["ts"] / 1000, UTC),
            *(r.get(name) for name in SIGNAL_NAMES),
            orjson.dumps(r["dtc"]).decode() if r.get("dtc") else None,
        )
        for r in readings
    ]


NAIVE_INSERT = f"""
INSERT INTO readings (machine_id, ts, {", ".join(SIGNAL_NAMES)}, dtc)
VALUES ({", ".join(f"${i}" for i in range(1, len(SIGNAL_NAMES) + 4))})
ON CONFLICT (machine_id, ts) DO NOTHING
"""


@asynccontextmanager
async def run_naive(url: str, dsn: str, client_id: str, *, loop: bool) -> AsyncIterator[Contender]:
    """A straightforward gateway: per message, one transaction of INSERT ... ON CONFLICT
    (`executemany` of its readings, or with `loop` one `execute` each), then its PUBACK.
    """
    conn = await asyncpg.connect(dsn)
    count = [0]

    async def store(rows: list[tuple[Any, ...]]) -> None:
        if not loop:
            await conn.executemany(NAIVE_INSERT, rows)
            return
        async with conn.transaction():
            for row in rows:
                await conn.execute(NAIVE_INSERT, *row)

    async def consume() -> None:
        async with subscriber(url, client_id) as client:
            async for message in client.messages:
                rows = _reading_rows(message.topic.value.split("/")[1], message.payload)
                await store(rows)
                mqtt.ack(client, message)
                count[0] += len(rows)

    task = asyncio.create_task(consume())
    try:
        yield Contender(lambda: float(count[0]))
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await conn.close()


BARE_COLUMNS = ["machine_id", "ts_ms", *SIGNAL_NAMES]


@asynccontextmanager
async def run_bare(url: str, dsn: str, client_id: str) -> AsyncIterator[Contender]:
    """Receive (with the gateway's fast drain of aiomqtt's queue), ack, parse, COPY: no more."""
    pool = await create_pool(dsn, max_size=3)
    count = [0]
    queue: asyncio.Queue[list[aiomqtt.Message]] = asyncio.Queue(maxsize=2)

    async def receive() -> None:
        async with subscriber(url, client_id) as client:
            async for message in client.messages:
                batch = [message]
                mqtt.take_ready(client, batch, 500)
                for taken in batch:  # ack on receipt, but only what was taken: bounded memory
                    mqtt.ack(client, taken)
                await queue.put(batch)

    async def write() -> None:
        while True:
            batch = await queue.get()
            rows: list[tuple[Any, ...]] = []
            for message in batch:
                machine_id = message.topic.value.split("/")[1]
                doc = orjson.loads(message.payload)
                readings = doc.get("readings", [doc])
                rows.extend(
                    (machine_id, r["ts"], *(r.get(n) for n in SIGNAL_NAMES)) for r in readings
                )
            async with pool.acquire() as conn:
                await conn.copy_records_to_table(
                    "bare_readings", records=rows, columns=BARE_COLUMNS
                )
            count[0] += len(rows)

    tasks = [asyncio.create_task(receive()), *(asyncio.create_task(write()) for _ in range(2))]
    try:
        yield Contender(lambda: float(count[0]))
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await pool.close()


@asynccontextmanager
async def run_broker(
    url: str, client_id: str, readings_per_message: int, *, fast: bool
) -> AsyncIterator[Contender]:
    """An aiomqtt subscriber that acks what it takes and counts it; nothing else.

    It acks as it takes messages rather than letting paho ack on receipt: with automatic acks
    the broker's flow control is gone, aiomqtt's queue grows without bound, and garbage
    collection over it, not the broker, sets the pace. With `fast`, it takes the messages
    already queued in aiomqtt without its per-message overhead, as the gateway does.
    """
    count = [0]

    async def consume() -> None:
        async with subscriber(url, client_id) as client:
            async for message in client.messages:
                batch = [message]
                if fast:
                    mqtt.take_ready(client, batch, 500)
                for taken in batch:
                    mqtt.ack(client, taken)
                count[0] += len(batch)

    task = asyncio.create_task(consume())
    try:
        yield Contender(lambda: float(count[0] * readings_per_message))
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


# -- measurement -------------------------------------------------------------------------------


@dataclass
class Rate:
    readings_per_s: float
    window_s: float
    ran_dry: bool


async def measure(
    counter: Callable[[], float], total: int, warmup_s: float, window_s: float
) -> Rate:
    """Rate of `counter` over `window_s`, after the first reading and `warmup_s` more."""
    deadline = time.monotonic() + 60
    while counter() == 0:
        if time.monotonic() > deadline:
            raise RuntimeError("nothing arrived in 60 s")
        await asyncio.sleep(0.02)
    await asyncio.sleep(warmup_s)
    c0, t0 = counter(), time.monotonic()
    if c0 >= total:
        raise RuntimeError("the workload was drained during the warm-up: raise --readings")
    c1, t1 = c0, t0
    while t1 - t0 < window_s and c1 < total:
        await asyncio.sleep(0.05)
        c1, t1 = counter(), time.monotonic()
    if t1 - t0 < MIN_WINDOW_S:
        raise RuntimeError(f"the queue ran dry {t1 - t0:.1f} s into the window: raise --readings")
    return Rate((c1 - c0) / (t1 - t0), t1 - t0, c1 >= total)


@dataclass
class Phase:
    name: str
    batch: int
    machines: int
    per_machine: int
    rates: dict[str, Rate] = field(default_factory=dict)
    lag_p50_ms: float = float("nan")
    lag_p99_ms: float = float("nan")
    lag_load: float = 0.0
    published: str = ""

    @property
    def total(self) -> int:
        return self.machines * self.per_machine


async def drain_phase(url: str, phase: Phase, args: argparse.Namespace) -> None:
    fleet = make_fleet(phase.machines, seed=0)
    machines = [(m.machine_id, m.model, m.customer_id) for m in fleet]
    names = {c: f"bench_{phase.name}_{c.replace('-', '_')}" for c in CONTENDERS if c != "broker"}
    dsns = {c: await prepare_database(n, machines) for c, n in names.items()}
    ids = {c: f"bench-{phase.name}-{c}" for c in CONTENDERS}
    await prime_sessions(url, list(ids.values()))
    print(f"  publishing {phase.total:,} readings in messages of {phase.batch} ...", flush=True)
    phase.published = await asyncio.to_thread(
        publish, url, phase.machines, phase.per_machine, phase.batch, []
    )
    print(f"  simulator: {phase.published}", flush=True)
    runners: dict[str, Callable[[], Any]] = {
        "gateway": lambda: run_gateway(url, dsns["gateway"], ids["gateway"]),
        "bare": lambda: run_bare(url, dsns["bare"], ids["bare"]),
        "naive": lambda: run_naive(url, dsns["naive"], ids["naive"], loop=False),
        "naive-loop": lambda: run_naive(url, dsns["naive-loop"], ids["naive-loop"], loop=True),
        "broker": lambda: run_broker(url, ids["broker"], phase.batch, fast=False),
        "broker-fast": lambda: run_broker(url, ids["broker-fast"], phase.batch, fast=True),
        "with-diagnosis": lambda: run_service_gateway(
            url, dsns["with-diagnosis"], ids["with-diagnosis"], summaries=False
        ),
        "with-summaries": lambda: run_service_gateway(
            url, dsns["with-summaries"], ids["with-summaries"], summaries=True
        ),
    }
    for name in args.only:
        try:
            async with runners[name]() as contender:
                rate = await measure(contender.stored, phase.total, args.warmup, args.window)
        except RuntimeError as exc:  # a workload too small for this contender: no figure
            print(f"  {name:8s} no figure: {exc}", flush=True)
            continue
        phase.rates[name] = rate
        note = f" (queue empty after {rate.window_s:.1f} s)" if rate.ran_dry else ""
        print(f"  {name:8s} {rate.readings_per_s:>10,.0f} readings/s{note}", flush=True)
    await discard_sessions(url, list(ids.values()))
    await verify_stored(dsns["gateway"], phase)
    if not args.keep:
        for n in names.values():
            await drop_database(n)


async def verify_stored(dsn: str, phase: Phase) -> None:
    """The gateway's counter must match the table (no counting of what was not stored)."""
    conn = await asyncpg.connect(dsn)
    try:
        stored = await conn.fetchval("SELECT count(*) FROM readings")
        rejects = await conn.fetchval("SELECT count(*) FROM ingest_rejects")
    finally:
        await conn.close()
    if rejects:
        raise RuntimeError(f"the gateway dead-lettered {rejects} messages of a clean workload")
    print(f"  gateway stored {stored:,} rows, 0 dead letters (checked in the table)", flush=True)


async def lag_phase(url: str, phase: Phase, args: argparse.Namespace) -> None:
    """Live: publish in real time at `--lag-load` of the gateway's capacity; commit lag."""
    capacity = phase.rates["gateway"].readings_per_s
    rate = capacity * args.lag_load
    # All machines report each period; a batch of k readings goes out every k periods.
    period_s = phase.machines / rate
    fleet = make_fleet(phase.machines, seed=0)
    name = f"bench_{phase.name}_lag"
    dsn = await prepare_database(name, [(m.machine_id, m.model, m.customer_id) for m in fleet])
    lags: list[float] = []
    client_id = f"bench-{phase.name}-live"
    await prime_sessions(url, [client_id])
    async with run_gateway(url, dsn, client_id, lags):
        await asyncio.sleep(0.5)
        extra = ["--duration", str(args.lag_duration), "--period", f"{period_s:.4f}"]
        print(
            f"  live: {rate:,.0f} readings/s ({args.lag_load:.0%} of capacity) "
            f"for {args.lag_duration:.0f} s ...",
            flush=True,
        )
        await asyncio.to_thread(publish, url, phase.machines, 0, phase.batch, extra)
        await asyncio.sleep(1.0)
    if not args.keep:
        await drop_database(name)
    steady = np.array(lags[len(lags) // 10 :])  # drop the first tenth: start-up
    if len(steady) == 0:
        raise RuntimeError("no commits observed in the live run")
    phase.lag_p50_ms, phase.lag_p99_ms = np.percentile(steady, [50, 99])
    phase.lag_load = args.lag_load
    print(f"  lag p50 {phase.lag_p50_ms:.0f} ms, p99 {phase.lag_p99_ms:.0f} ms", flush=True)


def report(phases: list[Phase]) -> None:
    print("\n== ingest benchmark: ratios against baselines run in this process ==")
    for p in phases:
        r = {k: v.readings_per_s for k, v in p.rates.items()}
        print(f"\n{p.name}: {p.machines} machines, {p.batch} reading(s) per message")
        for name, rate in r.items():
            line = f"  {name:12s} {rate:>10,.0f} readings/s {rate / p.batch:>9,.0f} msg/s"
            if name != "gateway" and "gateway" in r:
                line += f"   gateway is {r['gateway'] / rate:5.2f}x this"
            print(line + GOALS.get((p.name, name), ""))
        if "with-diagnosis" in r and "with-summaries" in r:
            base = r.get("gateway", r["with-diagnosis"])
            added = (1 / r["with-summaries"] - 1 / r["with-diagnosis"]) * base
            print(
                f"  the summaries add {added:.1%} to the gateway's cost per reading"
                " (with-summaries minus with-diagnosis, over the gateway's; goal < 10%)"
            )
        if p.lag_load:
            print(
                f"  publish-to-commit lag at {p.lag_load:.0%} of capacity: "
                f"p50 {p.lag_p50_ms:.0f} ms, p99 {p.lag_p99_ms:.0f} ms"
            )


GOALS = {
    ("batched", "bare"): "  (goal >= 0.70)",
    ("batched", "naive"): "  (goal >= 10)",
    ("single", "broker"): "  (goal >= 0.80)",
}


async def main_async(args: argparse.Namespace) -> None:
    phases = []
    if args.batch > 1:
        phases.append(Phase("batched", args.batch, args.machines, args.readings // args.machines))
    if args.single_readings:
        phases.append(Phase("single", 1, args.machines, args.single_readings // args.machines))
    with private_mosquitto() as url:
        print(f"private broker at {url}; databases on {ADMIN_DSN.rsplit('/', 1)[0]}", flush=True)
        for phase in phases:
            print(f"\n[{phase.name}]", flush=True)
            await drain_phase(url, phase, args)
            if args.lag_duration > 0 and "gateway" in phase.rates:
                await lag_phase(url, phase, args)
    report(phases)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--machines", type=int, default=1000)
    p.add_argument("--batch", type=int, default=20, help="readings per message, batched phase")
    p.add_argument("--readings", type=int, default=2_500_000, help="workload, batched phase")
    p.add_argument(
        "--single-readings", type=int, default=250_000, help="workload, single phase (0: skip)"
    )
    p.add_argument("--warmup", type=float, default=1.0, help="seconds before the window")
    p.add_argument("--window", type=float, default=8.0, help="seconds measured per contender")
    p.add_argument("--lag-load", type=float, default=0.5, help="live load, share of capacity")
    p.add_argument("--lag-duration", type=float, default=20.0, help="live run seconds (0: skip)")
    p.add_argument("--keep", action="store_true", help="keep the bench databases")
    p.add_argument(
        "--only",
        type=lambda s: s.split(","),
        default=list(DEFAULT_CONTENDERS),
        help=f"comma list of contenders to run, of {','.join(CONTENDERS)}"
        f" (default: {','.join(DEFAULT_CONTENDERS)})",
    )
    asyncio.run(main_async(p.parse_args()))


if __name__ == "__main__":
    main()
