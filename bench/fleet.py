"""Fleet benchmark: 600,000 registered machines, one batched message a minute each, one box.

Run by hand (not in CI): `.venv/bin/python -m bench.fleet` (see bench/README.md); a short run:
`.venv/bin/python -m bench.fleet --machines 20000 --duration 60`.

Everything runs here: a private Mosquitto on a free port (unlimited queues: nothing is dropped,
a backlog shows as lag), a fresh bench database (`bench.harness.bench_database`), the machines
registered through `POST /v1/import/machines` (the registry's bulk import, in chunks), then:

* the service (`bench.fleet_service`, a process of its own): gateway, diagnosis and the summaries
  rollup, wired as `telematics run` wires them;
* the publisher(s) (`bench.fleet_publisher`, processes of their own): each machine one message
  every `--period` seconds with `--readings` readings, spread evenly over the period, payloads
  pre-encoded. 600,000 machines a minute with 10 readings is 10,000 messages/s, 100,000
  readings/s.

Two windows are reported: the cold one (the first period, in which every machine is seen for the
first time: directory look-ups, diagnosis restores and rollup tails from the store) and the warm
one (every period after: every machine known). For each: offered and stored rate, publish-to-
commit lag p50/p99, and the CPU each process took. Then the memory of the service (RSS, and deep
sizes of the directory cache, the diagnosis state and the rollup's tails per machine), and, with
`--restart`, the start-up of a second service process with every machine active in the store:
time to the first commit, and until diagnosis has caught up.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import numpy as np

from bench.harness import bench_database, serve
from bench.ingest import free_port
from bench.registry_import import AUTH, HEADER, KINDS, api_context
from telematics.api.app import create_app
from telematics.base.db import create_pool
from telematics.store import partitions

IMPORT_CHUNK = 100_000
SUSTAINED_SHARE = 0.97


# -- processes ---------------------------------------------------------------------------------


@dataclass
class Broker:
    url: str
    pid: int


@contextlib.contextmanager
def mosquitto() -> Iterator[Broker]:
    """A private Mosquitto: unlimited queues and in-flight window, no persistence."""
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as folder:
        conf = Path(folder) / "mosquitto.conf"
        conf.write_text(
            f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
            "max_queued_messages 0\nmax_queued_bytes 0\nmax_inflight_messages 0\n"
            "log_type error\nset_tcp_nodelay true\n"
        )
        proc = subprocess.Popen([binary, "-c", str(conf)])
        try:
            time.sleep(0.3)
            yield Broker(f"mqtt://127.0.0.1:{port}", proc.pid)
        finally:
            proc.terminate()
            proc.wait(10)


class Child:
    """A benchmark process printing one JSON object a line; lines are collected by a thread."""

    def __init__(self, args: list[str]) -> None:
        self.name = args[0]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        self.history: list[dict[str, Any]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with contextlib.suppress(ValueError):
                self.lines.put(json.loads(line))

    def poll(self) -> list[dict[str, Any]]:
        """Lines that arrived since the last call (also kept in `history`)."""
        got = []
        with contextlib.suppress(queue.Empty):
            while True:
                got.append(self.lines.get_nowait())
        self.history.extend(got)
        return got

    def wait_for(self, key: str, timeout_s: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for line in self.poll():
                if line.get(key):
                    return line
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}")
            time.sleep(0.1)
        raise RuntimeError(f"no {key!r} from {self.name} in {timeout_s:.0f} s")

    def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def last(self) -> dict[str, Any]:
        stats = [h for h in self.history if "stored" in h or "published" in h]
        return stats[-1] if stats else {}


def proc_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def box_busy_s() -> float:
    """CPU seconds the whole box has been busy (all processes, ours or not)."""
    parts = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = parts[3] + parts[4]
    return (sum(parts[:8]) - idle) / os.sysconf("SC_CLK_TCK")


# -- phases ------------------------------------------------------------------------------------


def fleet_csv(count: int, start: int) -> bytes:
    """Registry CSV of machines `FLEET-{start:07d}` on, as the publisher names them."""
    lines = [HEADER]
    for i in range(start, start + count):
        model, machine_class, tank = KINDS[i % len(KINDS)]
        lines.append(
            f"FLEET-{i:07d},{model},{machine_class},CUST-{i % 5000:05d},SANY,PIN{i:014d},"
            # No site: the publisher's machines roam the simulator's region, and a site they
            # left would raise an alarm for every machine, which is not a fleet's normal day.
            f"{tank},2024-{i % 12 + 1:02d}-{i % 28 + 1:02d},Machine {i},,,"
        )
    return ("\n".join(lines) + "\n").encode()


async def register(dsn: str, machines: int) -> float:
    """Import `machines` machines through the registry's bulk import; seconds it took."""
    pool = await create_pool(dsn, max_size=4)
    try:
        async with (
            serve(create_app(api_context(pool))) as url,
            httpx.AsyncClient(base_url=url, timeout=600.0) as http,
        ):
            started = time.monotonic()
            for lo in range(0, machines, IMPORT_CHUNK):
                body = fleet_csv(min(IMPORT_CHUNK, machines - lo), lo)
                answer = await http.post(
                    "/v1/import/machines",
                    content=body,
                    headers={**AUTH, "Content-Type": "text/csv"},
                )
                if answer.status_code != 200:
                    raise SystemExit(f"import refused: {answer.status_code} {answer.text[:300]}")
            return time.monotonic() - started
    finally:
        await pool.close()


async def store_active(dsn: str, per_machine: int) -> float:
    """Readings of the last minutes for every registered machine (6 s apart, ending 10 s ago),
    as a store holds them while the fleet reports; seconds it took."""
    started = time.monotonic()
    conn = await asyncpg.connect(dsn)
    try:
        await partitions.upkeep(
            conn, today=datetime.now(UTC).date(), retention_days=30, ahead_days=3
        )
        await conn.execute(
            """INSERT INTO readings (machine_id, ts, engine_speed_rpm, oil_pressure_kpa,
                   coolant_temp_c, fuel_level_pct, battery_v, engine_hours, lat, lon, load_pct)
               SELECT machine_id, date_trunc('second', now()) - interval '10 s'
                          - k * interval '6 s',
                      1800, 420, 86, 60, 27.6, 1000 - k * 0.0017, 31.2, 121.5, 55
               FROM machines, generate_series(0, $1 - 1) AS k""",
            per_machine,
        )
        await conn.execute("ANALYZE machines, readings")
    finally:
        await conn.close()
    return time.monotonic() - started


def startup(service: Child) -> dict[str, Any]:
    """Start-up figures of a service process, from its lines."""
    lines = [h for h in service.history if "backlog" in h]
    backlog = [h["backlog"] for h in lines]
    peak = int(np.argmax(backlog)) if backlog else 0
    caught_up = next((h["t"] for h in lines[peak:] if h["backlog"] == 0), None)
    first = next((h["first_commit_s"] for h in lines if h.get("first_commit_s")), None)
    return {
        "first_commit_s": first,
        "peak_backlog": max(backlog, default=0),
        "caught_up_s": caught_up if backlog and max(backlog) > 0 else None,
        "final_backlog": backlog[-1] if backlog else None,
    }


@dataclass
class Window:
    name: str
    t0: float
    t1: float
    offered_rps: float
    stored_rps: float = 0.0
    lags_ms: list[float] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)

    def line(self) -> str:
        p50, p99 = np.percentile(self.lags_ms, [50, 99]) if self.lags_ms else (np.nan, np.nan)
        cpu = ", ".join(f"{k} {v:.2f}" for k, v in self.cpu.items())
        return (
            f"  {self.name:5s} {self.t1 - self.t0:5.0f} s  offered {self.offered_rps:9,.0f} "
            f"readings/s  stored {self.stored_rps:9,.0f}  lag p50 {p50 / 1000:6.2f} s  "
            f"p99 {p99 / 1000:6.2f} s\n        CPU cores: {cpu}"
        )


@dataclass
class Sampler:
    """Counters of every process at one instant."""

    t: float
    stored: float
    published: int
    cpu: dict[str, float]


def sample(service: Child, publishers: list[Child], broker: Broker) -> Sampler:
    service.poll()
    for p in publishers:
        p.poll()
    s = service.last()
    return Sampler(
        t=time.monotonic(),
        stored=s.get("stored", 0.0),
        published=sum(p.last().get("published", 0) for p in publishers),
        cpu={
            "service": proc_cpu_s(service.proc.pid),
            "publisher": sum(proc_cpu_s(p.proc.pid) for p in publishers if p.proc.poll() is None),
            "broker": proc_cpu_s(broker.pid),
            "box": box_busy_s(),
        },
    )


def window(name: str, a: Sampler, b: Sampler, readings: int, service: Child) -> Window:
    dt = b.t - a.t
    w = Window(name, a.t, b.t, (b.published - a.published) * readings / dt)
    w.stored_rps = (b.stored - a.stored) / dt
    w.cpu = {k: (b.cpu[k] - a.cpu[k]) / dt for k in a.cpu}
    w.lags_ms = [
        lag
        for line in service.history
        if a.t <= line.get("wall", 0) <= b.t
        for lag in line.get("lags_ms", [])
    ]
    return w


def stamp(service: Child) -> None:
    """Stamp the service's lines with when they arrived here (monotonic)."""
    now = time.monotonic()
    for line in service.history:
        line.setdefault("wall", now)


def run_load(
    args: argparse.Namespace, broker: Broker, service: Child, duration_s: float
) -> tuple[list[Child], list[Sampler]]:
    """Publish for `duration_s`; sample every second. Returns the publishers and the samples."""
    publishers = [
        Child(
            [
                "bench.fleet_publisher",
                "--mqtt",
                broker.url,
                "--machines",
                str(args.machines),
                "--period",
                str(args.period),
                "--readings",
                str(args.readings),
                "--duration",
                str(duration_s),
                "--index",
                str(i),
                "--of",
                str(args.publishers),
            ]
        )
        for i in range(args.publishers)
    ]
    samples = []
    end = time.monotonic() + duration_s + 2
    while time.monotonic() < end:
        time.sleep(1.0)
        samples.append(sample(service, publishers, broker))
        stamp(service)
        s = service.last()
        print(
            f"    t={s.get('t', 0):6.0f}s published {samples[-1].published:>10,} msgs  "
            f"stored {samples[-1].stored:>12,.0f}  backlog {s.get('backlog', 0):>8,.0f}  "
            f"known {s.get('known', 0):>8,}  rss {s.get('rss_kb', 0) / 1024:7.0f} MiB  "
            f"publisher behind {sum(p.last().get('behind', 0) for p in publishers):>7,}",
            flush=True,
        )
    return publishers, samples


def _taken(line: dict[str, Any]) -> float:
    """Readings the service has taken: stored, or absorbed as repeats of stored ones (with
    `--active`, a published reading can fall on a seeded one's millisecond)."""
    return float(line.get("stored", 0)) + float(line.get("duplicates", 0))


def drain(service: Child, target: float, timeout_s: float) -> float | None:
    """Seconds until `target` readings are taken (None: not within `timeout_s`)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        service.poll()
        if _taken(service.last()) >= target:
            return time.monotonic() - started
        time.sleep(0.5)
    return None


def start_service(dsn: str, broker: Broker) -> tuple[Child, float]:
    service = Child(["bench.fleet_service", dsn, broker.url, str(time.time())])
    line = service.wait_for("connected", 900)
    return service, float(line["subscribed_s"])


def stop_service(service: Child) -> None:
    service.send("stop")
    try:
        service.proc.wait(120)
    except subprocess.TimeoutExpired:
        service.proc.kill()
        service.proc.wait()


async def main_async(args: argparse.Namespace) -> None:
    rate = args.machines / args.period
    print(
        f"{args.machines:,} machines, a message each {args.period:.0f} s of {args.readings} "
        f"readings: {rate:,.0f} messages/s, {rate * args.readings:,.0f} readings/s offered",
        flush=True,
    )
    with mosquitto() as broker:
        async with bench_database("bench_fleet") as dsn:
            import_s = await register(dsn, args.machines)
            print(f"registered {args.machines:,} machines in {import_s:.1f} s", flush=True)
            if args.active:
                seeded_s = await store_active(dsn, args.active)
                print(
                    f"stored {args.active} recent readings for every machine in {seeded_s:.0f} s",
                    flush=True,
                )
            service, subscribed_s = start_service(dsn, broker)
            print(f"service subscribed {subscribed_s:.1f} s after its start", flush=True)
            publishers, samples = run_load(args, broker, service, args.duration)
            sizes = await asyncio.to_thread(_sizes, service)
            published = sum(p.last().get("published", 0) for p in publishers)
            drained_s = drain(service, published * args.readings, args.drain_timeout)
            if drained_s is None:
                print(
                    f"not drained: {_taken(service.last()):,.0f} of "
                    f"{published * args.readings:,} published readings taken (stored or repeats)",
                    flush=True,
                )
            first = startup(service) | {"subscribed_s": subscribed_s}
            stop_service(service)
            restart = None
            if args.restart:
                restart = restart_phase(args, dsn, broker)
    report(args, import_s, first, samples, service, sizes, drained_s, restart)


def _sizes(service: Child) -> dict[str, Any]:
    service.send("sizes")
    return service.wait_for("sizes", 600)


def restart_phase(args: argparse.Namespace, dsn: str, broker: Broker) -> dict[str, Any]:
    """A new service process over a store in which every machine reported lately."""
    service, subscribed_s = start_service(dsn, broker)
    run_load(args, broker, service, args.restart_duration)
    stop_service(service)
    return startup(service) | {"subscribed_s": subscribed_s}


def _start_line(name: str, s: dict[str, Any]) -> str:
    first = "none" if s["first_commit_s"] is None else f"{s['first_commit_s']:.1f} s"
    caught = "-" if s["caught_up_s"] is None else f"{s['caught_up_s']:.0f} s"
    if s["peak_backlog"] and s["caught_up_s"] is None:
        caught = f"not in the run (backlog at the end {s['final_backlog']:,.0f})"
    return (
        f"{name} (from its spawn, imports included): subscribed at {s['subscribed_s']:.1f} s, "
        f"first commit at {first}; diagnosis backlog peak {s['peak_backlog']:,.0f} readings, "
        f"caught up at {caught}"
    )


def report(
    args: argparse.Namespace,
    import_s: float,
    first: dict[str, Any],
    samples: list[Sampler],
    service: Child,
    sizes: dict[str, Any],
    drained_s: float | None,
    restart: dict[str, Any] | None,
) -> None:
    n, readings = args.machines, args.readings
    offered = n / args.period * readings
    cold_end = next((i for i, s in enumerate(samples) if s.t - samples[0].t >= args.period), None)
    windows = []
    if cold_end is not None and cold_end + 3 < len(samples):
        windows.append(window("cold", samples[0], samples[cold_end], readings, service))
        windows.append(window("warm", samples[cold_end], samples[-3], readings, service))
    elif len(samples) > 3:
        windows.append(window("all", samples[0], samples[-3], readings, service))
    print(f"\n== fleet benchmark: {n:,} machines, {offered:,.0f} readings/s offered ==")
    print(f"registry import: {import_s:.1f} s ({n / import_s:,.0f} machines/s, in chunks)")
    active = f", {args.active} recent readings a machine in the store" if args.active else ""
    print(_start_line(f"service start{active}", first))
    for w in windows:
        print(w.line())
    final = windows[-1] if windows else None
    if final is not None:
        verdict = "SUSTAINED" if final.stored_rps >= SUSTAINED_SHARE * offered else "NOT sustained"
        print(
            f"  {verdict}: the box stores {final.stored_rps:,.0f} readings/s "
            f"({final.stored_rps / readings:,.0f} messages/s) of {offered:,.0f} offered"
        )
    drained = (
        f"{drained_s:.0f} s" if drained_s is not None else f"not in {args.drain_timeout:.0f} s"
    )
    print(f"  after the publishers stopped, the broker's backlog drained in {drained}")
    rss = sizes["rss_kb"] * 1024
    print(
        f"memory of the service: RSS {rss / 2**20:,.0f} MiB ({rss / n:,.0f} B a machine, "
        "everything included)"
    )
    for key, label in (
        ("directory", "directory cache"),
        ("engine", "diagnosis state"),
        ("rollup", "rollup tails"),
    ):
        count, size = sizes[f"{key}_machines"], sizes[f"{key}_bytes"]
        per = size / count if count else float("nan")
        print(f"  {label:16s} {count:>9,} machines {size / 2**20:8.1f} MiB  {per:6.0f} B a machine")
    if restart is not None:
        print(_start_line("restart, every machine active in the store", restart))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--machines", type=int, default=600_000)
    p.add_argument(
        "--period", type=float, default=60.0, help="seconds between a machine's messages"
    )
    p.add_argument("--readings", type=int, default=10, help="readings per message")
    p.add_argument("--duration", type=float, default=150.0, help="seconds of publishing")
    p.add_argument("--publishers", type=int, default=1, help="publisher processes")
    p.add_argument("--drain-timeout", type=float, default=60.0)
    p.add_argument(
        "--active",
        type=int,
        default=0,
        help="store this many recent readings per machine before the start (a restart's store)",
    )
    p.add_argument("--restart", action="store_true", help="also measure a restart")
    p.add_argument("--restart-duration", type=float, default=45.0)
    asyncio.run(main_async(p.parse_args()))


if __name__ == "__main__":
    main()
