"""The fleet benchmark's publisher: many machines on one MQTT connection, payloads pre-encoded.

Run as a process of its own by `bench/fleet.py` (`python -m bench.fleet_publisher ...`), so its
CPU is counted apart from the gateway's. It speaks only the wire contract: each machine publishes
one message every `--period` seconds to `machines/{id}/telemetry`, holding `--readings` readings
spaced evenly over the period and ending now, QoS 1. Machines are spread evenly over the period,
so the broker sees a steady `machines / period` messages a second, not a burst each minute.

What is pre-encoded: the JSON of every message is built once per template (values drawn from the
simulator's fleet model) with the timestamps left out; sending a message only joins the template's
pieces with its timestamps, ~1 µs instead of ~15 µs for encoding ten readings. What is not: the
MQTT framing and QoS 1 bookkeeping in paho, ~20-40 µs a message, which is most of this process's
CPU and is paid on the same cores as the gateway.

Prints one JSON line a second on stdout: published, acknowledged, behind (messages due but not
yet sent: the publisher, not the gateway, is the limit when it grows) and CPU seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import threading
import time

import orjson
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from simulators import make_fleet
from simulators.fleet import Fleet
from simulators.wire import frame_rows

TEMPLATES = 256
_MARK = 1_111_111_111_000
MAX_OUTSTANDING = 30_000  # paho loses messages past 65,535 unacknowledged (packet ids wrap)


def templates(readings: int, count: int = TEMPLATES) -> list[list[bytes]]:
    """`count` payloads of `readings` readings each, split where each timestamp goes."""
    fleet_spec = make_fleet(count, seed=1)
    fleet = Fleet(fleet_spec, seed=1, start_ts_ms=_MARK - 60_000)
    steps = [frame_rows(fleet.step(_MARK + k)) for k in range(readings)]
    out = []
    for i in range(count):
        rows = [dict(step[i], ts=_MARK + k) for k, step in enumerate(steps)]
        rows = [{key: v for key, v in row.items() if key != "dtc"} for row in rows]
        body = orjson.dumps({"readings": rows})
        pieces, rest = [], body
        for k in range(readings):
            head, rest = rest.split(str(_MARK + k).encode(), 1)
            pieces.append(head)
        pieces.append(rest)
        out.append(pieces)
    return out


def payload(pieces: list[bytes], ts_ms: list[bytes]) -> bytes:
    """A template's pieces joined with its timestamps."""
    parts = [pieces[0]]
    for ts, piece in zip(ts_ms, pieces[1:], strict=True):
        parts.append(ts)
        parts.append(piece)
    return b"".join(parts)


def run(args: argparse.Namespace) -> None:
    host, port = args.mqtt.rsplit("://", 1)[-1].rsplit(":", 1)
    acked = [0]
    lock = threading.Lock()

    def on_publish(*_: object) -> None:
        with lock:
            acked[0] += 1

    client = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"fleet-pub-{args.index}-{os.getpid()}",
        protocol=paho.MQTTv311,
    )
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.on_publish = on_publish
    client.connect(host, int(port))
    client.loop_start()
    ids = [f"{args.id_prefix}-{i:07d}" for i in range(args.index, args.machines, args.of)]
    topics = [f"machines/{m}/telemetry" for m in ids]
    shapes = templates(args.readings)
    step_ms = args.period * 1000 / args.readings
    offsets = [round((args.readings - 1 - k) * step_ms) for k in range(args.readings)]
    rate = len(ids) / args.period
    started = time.monotonic()
    sent = 0
    next_report = started + 1.0
    end = started + args.duration
    while True:
        now = time.monotonic()
        if now >= end:
            break
        due = min(int((now - started) * rate), round(args.duration * rate))
        while sent < due and sent - acked[0] < MAX_OUTSTANDING:
            i = sent % len(ids)
            wall_ms = time.time_ns() // 1_000_000
            stamps = [str(wall_ms - off).encode() for off in offsets]
            client.publish(topics[i], payload(shapes[i % TEMPLATES], stamps), qos=1)
            sent += 1
            if sent % 256 == 0 and time.monotonic() >= next_report:
                break
        now = time.monotonic()
        if now >= next_report:
            next_report = now + 1.0
            _report(sent, acked[0], due - sent)
        if sent >= due:
            time.sleep(0.002)
    deadline = time.monotonic() + 30
    while acked[0] < sent and time.monotonic() < deadline:
        time.sleep(0.05)
    _report(sent, acked[0], 0, final=True)
    client.loop_stop()
    client.disconnect()


def _report(sent: int, acked: int, behind: int, *, final: bool = False) -> None:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    line = {
        "published": sent,
        "acked": acked,
        "behind": behind,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "final": final,
    }
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--mqtt", required=True, help="mqtt://host:port")
    p.add_argument("--machines", type=int, required=True)
    p.add_argument("--id-prefix", default="FLEET")
    p.add_argument(
        "--period", type=float, default=60.0, help="seconds between a machine's messages"
    )
    p.add_argument("--readings", type=int, default=10, help="readings per message")
    p.add_argument("--duration", type=float, required=True)
    p.add_argument("--index", type=int, default=0, help="this publisher's share: machine i % of")
    p.add_argument("--of", type=int, default=1, help="number of publishers")
    run(p.parse_args())


if __name__ == "__main__":
    main()
