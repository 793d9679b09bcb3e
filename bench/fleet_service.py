"""The fleet benchmark's service: gateway, diagnosis and rollups as `telematics run` wires them.

Run as a process of its own by `bench/fleet.py` (`python -m bench.fleet_service DSN MQTT_URL`),
so that its resident memory and CPU are the gateway's alone. It assembles the same parts as
`telematics.service.run_service` (the ingest and jobs pools, `gateway_config`, the diagnoser with
the summaries rollup as its after-batch consumer, backpressure from the diagnoser's backlog, the
catch-up before the gateway subscribes) without the HTTP API and background jobs, and adds one
hook: each committed batch's publish-to-commit lag (commit time minus each machine's newest
reading, which the publisher stamps just before it publishes).

Prints one JSON line a second on stdout (counters, RSS, CPU, the lags since the last line); on
`sizes` read from stdin it prints the sizes of what it holds per machine; on `stop` it drains and
exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import SecretStr

from bench.sizes import deep_size
from diagnosis.engine import Engine
from diagnosis.knowledge import KnowledgeBase
from diagnosis.rules import RuleBook
from telematics.base.config import Settings
from telematics.base.metrics import Metrics
from telematics.base.pools import open_pools
from telematics.ingest.gateway import Gateway
from telematics.service import gateway_config, prepare_database
from telematics.services.diagnose import Diagnoser, DiagnoserConfig
from telematics.store.registry import SourceDirectory
from telematics.summaries.rollup import Rollup
from telematics.wire.decode import DecodedBatch

LAG_SAMPLE_EVERY = 2  # batches; the lag of every other batch is plenty for percentiles


def rss_kb() -> int:
    """Resident set size of this process, in KiB."""
    with Path("/proc/self/status").open() as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _sample(metrics: Metrics, name: str) -> float:
    value: float | None = metrics.registry.get_sample_value(name)
    return value or 0.0


def emit(doc: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(doc) + "\n")
    sys.stdout.flush()


async def serve(  # noqa: C901 - one composition, as in telematics.service
    dsn: str, mqtt_url: str, client_id: str, spawned: float
) -> None:
    # Times count from the parent's spawn of this process (wall clock): imports included.
    started = time.monotonic() - (time.time() - spawned)
    settings = Settings(
        database_url=SecretStr(dsn),
        mqtt_url=mqtt_url,
        mqtt_client_id=client_id,
        diagnosis_enabled=True,
        summaries_enabled=True,
        alarm_notices=False,
    )
    stop = asyncio.Event()
    lags: list[float] = []
    first_commit: list[float] = []
    seen = [0]
    subscribed: list[float] = []

    async with open_pools(dsn, settings, stop) as pools:
        await prepare_database(pools.jobs, settings)
        metrics = Metrics()
        directory = SourceDirectory()
        rules = RuleBook.load(settings.rules_path)
        engine = Engine(rules)
        rollup = Rollup(pools.jobs, rules, settings.summary_max_gap_s)
        diagnoser = Diagnoser(
            pools.jobs,
            engine,
            KnowledgeBase.load(settings.knowledge_path),
            metrics,
            DiagnoserConfig(history_s=settings.diagnosis_history_s, source=client_id),
            consumers=[rollup],
        )

        def after_commit(batch: DecodedBatch, seq: int | None) -> None:
            if not first_commit:
                first_commit.append(time.monotonic() - started)
            seen[0] += 1
            if seen[0] % LAG_SAMPLE_EVERY == 0:
                now_ms = time.time() * 1000
                ids = np.asarray(batch.readings.machine_ids)
                ts = np.asarray(batch.readings.ts_ms, np.int64)
                order = np.lexsort((ts, ids))
                last = np.r_[ids[order][1:] != ids[order][:-1], True]
                lags.extend((now_ms - ts[order][last]).tolist())
            diagnoser.submit(batch.readings, seq)

        gateway = Gateway(
            gateway_config(settings, mqtt_url, settings.mqtt_protocol),
            pools.ingest,
            directory,
            metrics,
            after_commit=after_commit,
            backpressure=diagnoser.room,
        )
        diagnoser.heard_since = gateway.heard_since
        gateway_done = asyncio.Event()

        async def run_gateway() -> None:
            try:
                await diagnoser.caught_up.wait()
                await gateway.run(stop)
            finally:
                gateway_done.set()

        async def report() -> None:
            while True:
                await asyncio.sleep(1.0)
                if gateway.connected.is_set() and not subscribed:
                    subscribed.append(time.monotonic() - started)
                usage = resource.getrusage(resource.RUSAGE_SELF)
                taken, lags[:] = lags[:], []
                emit(
                    {
                        "t": time.monotonic() - started,
                        "stored": _sample(metrics, "telematics_readings_stored_total"),
                        "duplicates": _sample(metrics, "telematics_readings_duplicate_total"),
                        "messages": _sample(metrics, "telematics_mqtt_messages_received_total"),
                        "backlog": _sample(metrics, "telematics_diagnosis_backlog_readings"),
                        "rss_kb": rss_kb(),
                        "cpu_s": usage.ru_utime + usage.ru_stime,
                        "first_commit_s": first_commit[0] if first_commit else None,
                        "known": len(directory.machines),
                        "connected": gateway.connected.is_set(),
                        "subscribed_s": subscribed[0] if subscribed else None,
                        "lags_ms": [round(x) for x in taken],
                    }
                )

        async def commands() -> None:
            while True:
                line = (await asyncio.to_thread(sys.stdin.readline)).strip()
                if line == "sizes":
                    emit(sizes(directory, engine, rollup))
                elif line in ("stop", ""):
                    stop.set()
                    return

        async with asyncio.TaskGroup() as tg:
            tg.create_task(run_gateway())
            diagnosis = tg.create_task(diagnoser.run(gateway_done))
            reporter = tg.create_task(report())
            tg.create_task(commands())
            await stop.wait()
            await diagnosis
            reporter.cancel()
    emit({"done": True})


def sizes(directory: SourceDirectory, engine: Engine, rollup: Rollup) -> dict[str, Any]:
    """Deep sizes (bytes) of the per-machine structures, and how many machines each holds."""
    t0 = time.monotonic()
    engine_state = vars(engine)
    out: dict[str, Any] = {
        "sizes": True,
        "directory_machines": len(directory.machines),
        "directory_bytes": deep_size(directory.machines),
        "engine_machines": len(engine_state["_state"].slots),
        "engine_bytes": deep_size(engine),
        "rollup_machines": len(vars(rollup)["_tails"]),
        "rollup_bytes": deep_size(rollup),
        "rss_kb": rss_kb(),
    }
    out["measure_s"] = time.monotonic() - t0
    return out


def main() -> None:
    dsn, mqtt_url, spawned = sys.argv[1], sys.argv[2], float(sys.argv[3])
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(dsn, mqtt_url, "fleet-gateway", spawned))


if __name__ == "__main__":
    main()
