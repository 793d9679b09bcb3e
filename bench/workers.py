"""Gateway workers on one shared subscription: throughput with 1 worker and with 2.

Run by hand (not in CI): `.venv/bin/python -m bench.workers` (see bench/README.md).

Each worker is a real `telematics run` process (gateway, diagnosis, rollups, API and jobs, the
product's defaults) with `TELEMATICS_MQTT_SHARED_GROUP` set, on a private Mosquitto with
unlimited queues and a fresh database per round. Drain mode, as bench/ingest.py: the workers
start once (creating their persistent sessions and the group's subscription) and stop, the
simulator publishes the whole workload while they are away (Mosquitto deals it out round-robin
into the members' queues), then they start again; once every worker is ready and after a
warm-up, the readings committed are sampled over a window. The figure that matters is the
ratio of 2 workers to 1 on the same box, not the absolute rate.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx

from bench.ingest import (
    discard_sessions,
    drop_database,
    free_port,
    prepare_database,
    private_mosquitto,
    publish,
)
from simulators import make_fleet


class Worker:
    """One `telematics run` process of a round."""

    def __init__(
        self, dsn: str, url: str, client_id: str, group: str | None, data_dir: Path
    ) -> None:
        """Settings of the worker; `start` runs it."""
        self.client_id = client_id
        self.port = free_port()
        self.env = {
            **os.environ,
            "TELEMATICS_DATABASE_URL": dsn,
            "TELEMATICS_MQTT_URL": url,
            "TELEMATICS_MQTT_CLIENT_ID": client_id,
            "TELEMATICS_MQTT_SESSION_EXPIRY_S": "3600",
            "TELEMATICS_HTTP_PORT": str(self.port),
            "TELEMATICS_ADMIN_TOKEN": "bench",
            "TELEMATICS_DATA_DIR": str(data_dir),
            "TELEMATICS_LOG_LEVEL": "WARNING",
        }
        if group is not None:
            self.env["TELEMATICS_MQTT_SHARED_GROUP"] = group
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the process."""
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "telematics", "run"], env=self.env, stdout=subprocess.DEVNULL
        )

    async def ready(self, timeout_s: float = 120.0) -> None:
        """Wait for `/readyz` (database answering, gateway subscribed)."""
        deadline = time.monotonic() + timeout_s
        async with httpx.AsyncClient(timeout=2.0) as http:
            while time.monotonic() < deadline:
                try:
                    answer = await http.get(f"http://127.0.0.1:{self.port}/readyz")
                    if answer.status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
        raise RuntimeError(f"worker {self.client_id} not ready in {timeout_s} s")

    def cpu_s(self) -> float:
        """CPU seconds (user + system) the process has used so far (Linux /proc)."""
        assert self.proc is not None
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        """SIGTERM and wait for the drain."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@dataclass(frozen=True, slots=True)
class Round:
    """What one round measured."""

    workers: int
    shared: bool
    readings_per_s: float
    cpu_us_per_reading: float
    window_s: float
    stored: int


async def count(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM readings"))
    finally:
        await conn.close()


async def one_round(url: str, n: int, args: argparse.Namespace, *, shared: bool = True) -> Round:
    fleet = make_fleet(args.machines, seed=0)
    machines = [(m.machine_id, m.model, m.customer_id) for m in fleet]
    name = f"bench_workers_{n}{'' if shared else 'u'}"
    dsn = await prepare_database(name, machines)
    folder = Path(tempfile.mkdtemp(prefix="bench-workers-"))
    workers = [
        Worker(dsn, url, f"{name}-{i}", f"bench{n}" if shared else None, folder / str(i))
        for i in range(n)
    ]
    total = args.machines * (args.readings // args.machines)
    try:
        for w in workers:  # sessions and the group's subscription, then away
            w.start()
        await asyncio.gather(*(w.ready() for w in workers))
        for w in workers:
            w.stop()
        print(f"  {n} worker(s): publishing {total:,} readings ...", flush=True)
        summary = await asyncio.to_thread(
            publish, url, args.machines, args.readings // args.machines, args.batch, []
        )
        print(f"  simulator: {summary}", flush=True)
        for w in workers:
            w.start()
        await asyncio.gather(*(w.ready() for w in workers))
        await asyncio.sleep(args.warmup)
        start_n, start_t = await count(dsn), time.monotonic()
        start_cpu = sum(w.cpu_s() for w in workers)
        end_n, end_t = start_n, start_t
        while time.monotonic() - start_t < args.window and end_n < total:
            await asyncio.sleep(0.25)
            end_n, end_t = await count(dsn), time.monotonic()
        if end_n >= total or start_n == 0:
            print(f"  warning: {start_n:,} stored at the start, {end_n:,} at the end of {total:,}")
        rate = (end_n - start_n) / (end_t - start_t)
        cpu_us = (sum(w.cpu_s() for w in workers) - start_cpu) * 1e6 / max(1, end_n - start_n)
        deadline = time.monotonic() + 300
        while (stored := await count(dsn)) < total and time.monotonic() < deadline:  # noqa: ASYNC110 - polls the database
            await asyncio.sleep(0.5)
        print(
            f"  {n} worker(s): {rate:,.0f} readings/s over {end_t - start_t:.1f} s, "
            f"{cpu_us:.1f} CPU us a reading in the workers",
            flush=True,
        )
        return Round(n, shared, rate, cpu_us, end_t - start_t, stored)
    finally:
        for w in workers:
            w.stop()
        await discard_sessions(url, [w.client_id for w in workers])
        await drop_database(name)


async def main_async(args: argparse.Namespace) -> None:
    rounds: list[Round] = []
    with private_mosquitto() as url:
        for _ in range(args.repeat):  # alternating, so that the box's noise hits every count
            rounds.extend([await one_round(url, n, args) for n in args.workers])
            if args.unshared:
                rounds.append(await one_round(url, 1, args, shared=False))
    one = [r.readings_per_s for r in rounds if r.workers == args.workers[0] and r.shared]
    base = sorted(one)[len(one) // 2]
    print(f"\n{os.cpu_count()} CPUs; {args.machines} machines, {args.batch} readings a message")
    print(
        f"| workers | readings/s | ratio to the median of {args.workers[0]} "
        "| workers' CPU µs a reading | stored / published |"
    )
    print("|---|---|---|---|---|")
    total = args.machines * (args.readings // args.machines)
    for r in rounds:
        label = f"{r.workers}" if r.shared else f"{r.workers}, no shared group"
        print(
            f"| {label} | {r.readings_per_s:,.0f} | {r.readings_per_s / base:.2f} "
            f"| {r.cpu_us_per_reading:.1f} | {r.stored:,} / {total:,} |"
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--machines", type=int, default=400)
    p.add_argument("--batch", type=int, default=20, help="readings per message")
    p.add_argument("--readings", type=int, default=1_200_000, help="workload per round")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds before the window")
    p.add_argument("--window", type=float, default=6.0, help="seconds measured per round")
    p.add_argument("--workers", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2])
    p.add_argument("--repeat", type=int, default=2, help="rounds of each worker count")
    p.add_argument(
        "--unshared",
        action="store_true",
        help="also one worker without a shared group (no diagnosis marks): their cost",
    )
    asyncio.run(main_async(p.parse_args()))


if __name__ == "__main__":
    main()
