"""Command line of the simulator: `python -m simulators` (also `telematics simulate`).

This module owns argument parsing, the optional registration step and the printed report. It is
the only module of the package that prints.

Examples:
    python -m simulators --machines 50 --duration 60            # demo: 50 machines, 1 Hz, 1 min
    python -m simulators --machines 1000 --readings-per-machine 100 --batch 20 --rate 0
    python -m simulators --machines 40 --readings-per-machine 2880 --period 10 \
        --faults all --ground-truth truth.jsonl                 # 8 h with one fault of each kind
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import cast, get_args

from simulators.errors import BrokerRefusedError, BrokerUnavailableError, SimulatorError
from simulators.faults import (
    FAULT_DESCRIPTIONS,
    FAULT_KINDS,
    FaultKind,
    FaultPlan,
    load_plan,
    write_ground_truth,
)
from simulators.link import MqttProtocol, MqttSettings
from simulators.machines import MODELS, ModelName, make_fleet
from simulators.probe import explain
from simulators.publisher import SimConfig, SimReport, run
from simulators.registry import register_machines
from simulators.wire import TsFormat

_EXIT_INCOMPLETE = 1
_EXIT_ERROR = 3


def _models(text: str) -> tuple[ModelName, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in MODELS]
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"models are a comma list of {', '.join(MODELS)}")
    return cast("tuple[ModelName, ...]", names)


def _fault_kinds(text: str) -> tuple[FaultKind, ...]:
    if text.strip() == "all":
        return FAULT_KINDS
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in FAULT_KINDS]
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"faults are 'all' or a comma list of {', '.join(FAULT_KINDS)}"
        )
    return cast("tuple[FaultKind, ...]", names)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, exposed so that a wrapping CLI can show its help."""
    width = max(len(kind) for kind in FAULT_KINDS)
    kinds = "\n".join(f"  {kind:<{width}}  {FAULT_DESCRIPTIONS[kind]}" for kind in FAULT_KINDS)
    p = argparse.ArgumentParser(
        prog="simulators",
        description="Simulate a fleet of construction machines publishing telemetry over MQTT.",
        epilog=f"fault kinds (--faults; equal to the backend's fault codes):\n{kinds}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    fleet = p.add_argument_group("fleet")
    fleet.add_argument("--machines", type=int, default=10, help="fleet size (default 10)")
    fleet.add_argument(
        "--models", type=_models, default=MODELS, help="comma list of models, round-robin"
    )
    fleet.add_argument("--id-prefix", default="SIM", help="machine id prefix (default SIM)")
    fleet.add_argument("--customer-prefix", default="CUST", help="customer id prefix")
    fleet.add_argument("--centre-lat", type=float, default=31.2, help="latitude of the region")
    fleet.add_argument("--centre-lon", type=float, default=121.5, help="longitude of the region")
    fleet.add_argument("--spread-km", type=float, default=30.0, help="radius of the region")
    fleet.add_argument("--seed", type=int, default=0, help="random seed (default 0)")

    timing = p.add_argument_group("time and rate")
    mode = timing.add_mutually_exclusive_group()
    mode.add_argument(
        "--readings-per-machine", type=int, help="backfill mode: this many readings per machine"
    )
    mode.add_argument(
        "--duration", type=float, help="real-time mode: seconds to run (default: until Ctrl-C)"
    )
    timing.add_argument("--period", type=float, default=1.0, help="seconds between readings")
    timing.add_argument(
        "--rate", type=float, default=0.0, help="readings/s cap; 0 = as fast as possible"
    )
    timing.add_argument("--batch", type=int, default=1, help="readings per message (1-1000)")
    timing.add_argument(
        "--ts-format", choices=get_args(TsFormat), default="ms", help="epoch ms or RFC 3339"
    )

    mqtt = p.add_argument_group("MQTT")
    mqtt.add_argument(
        "--mqtt-url", default="mqtt://127.0.0.1:1883", help="mqtt://[user:pw@]host:port"
    )
    mqtt.add_argument("--protocol", choices=get_args(MqttProtocol), default="5")
    mqtt.add_argument("--client-id-prefix", default="sim", help="MQTT client id prefix")
    mqtt.add_argument("--max-inflight", type=int, default=1000, help="unacknowledged messages cap")
    mqtt.add_argument(
        "--ignore-receive-maximum",
        action="store_true",
        help="do not limit in-flight messages to the broker's MQTT 5 Receive Maximum",
    )

    faults = p.add_argument_group("faults (ground truth for the diagnosis)")
    faults.add_argument(
        "--faults",
        type=_fault_kinds,
        default=(),
        help="'all' or a comma list of fault kinds to inject at random times and machines",
    )
    faults.add_argument(
        "--faults-per-kind", type=int, default=1, help="faulty machines per kind (default 1)"
    )
    faults.add_argument(
        "--fault-plan", type=Path, help="JSON plan of faults to inject (see simulators.faults)"
    )
    faults.add_argument(
        "--fault-horizon",
        type=float,
        help="seconds over which --faults are spread (default: the run; 3600 if open-ended)",
    )
    faults.add_argument(
        "--ground-truth", type=Path, help="write one JSON line per injected fault to this file"
    )

    other = p.add_argument_group("registration and output")
    other.add_argument("--register-url", help="API base URL: register machines before publishing")
    other.add_argument("--token", help="bearer token for --register-url")
    other.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress line on stderr (default: when stderr is a terminal)",
    )
    other.add_argument("--log-level", default="WARNING", help="logging level (default WARNING)")
    return p


def _fault_plan(args: argparse.Namespace) -> FaultPlan | None:
    """The plan the fault options ask for, or None (raises ValueError or OSError on a bad file)."""
    if args.faults_per_kind < 0:
        raise ValueError("--faults-per-kind must be >= 0")
    if not args.faults and args.fault_plan is None:
        return None
    plan = load_plan(args.fault_plan) if args.fault_plan is not None else FaultPlan()
    return FaultPlan(
        specs=plan.specs,
        from_run_start=plan.from_run_start,
        kinds=args.faults,
        per_kind=args.faults_per_kind,
        seed=args.seed,
        horizon_s=args.fault_horizon,
    )


def _config(args: argparse.Namespace) -> SimConfig:
    machines = make_fleet(
        args.machines,
        models=args.models,
        id_prefix=args.id_prefix,
        customer_prefix=args.customer_prefix,
        centre_lat=args.centre_lat,
        centre_lon=args.centre_lon,
        spread_km=args.spread_km,
        seed=args.seed,
    )
    mqtt = MqttSettings.from_url(
        args.mqtt_url, protocol=args.protocol, client_id_prefix=args.client_id_prefix
    )
    return SimConfig(
        machines=machines,
        mqtt=mqtt,
        readings_per_machine=args.readings_per_machine,
        duration_s=args.duration,
        period_s=args.period,
        rate_readings_per_s=args.rate,
        batch_size=args.batch,
        seed=args.seed,
        ts_format=args.ts_format,
        max_inflight=args.max_inflight,
        honour_receive_maximum=not args.ignore_receive_maximum,
        progress=args.progress,
        faults=_fault_plan(args),
    )


def _run_interruptibly(config: SimConfig) -> SimReport:
    """Run in a worker thread so that Ctrl-C or SIGTERM stop the run cleanly, with a report."""
    stop, done = threading.Event(), threading.Event()
    outcome: list[SimReport | BaseException] = []

    def target() -> None:
        try:
            outcome.append(run(config, stop=stop))
        except BaseException as exc:  # noqa: BLE001 - handed over to the main thread
            outcome.append(exc)
        finally:
            done.set()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    # Handlers can only be installed from the main thread (not when main() is called elsewhere).
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, on_signal) if in_main_thread else None
    worker = threading.Thread(target=target, name="simulator")
    worker.start()
    try:
        # Wait on an event, not on join(): an interrupted join can leave the thread's state wrong.
        while not done.is_set():
            try:
                done.wait(0.2)
            except KeyboardInterrupt:
                stop.set()
        worker.join()
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)
    result = outcome[0]
    if isinstance(result, BaseException):
        raise result
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """Run the simulator from the command line.

    Args:
        argv: Arguments without the program name; `sys.argv[1:]` when None.

    Returns:
        0 when every message was acknowledged, 1 when some were not, 3 on a broker or API error
        (argparse exits with 2 on bad arguments).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    if args.register_url and not args.token:
        parser.error("--register-url needs --token")
    try:
        config = _config(args)
    except (ValueError, OSError) as exc:
        parser.error(str(exc))
    try:
        if args.register_url:
            registered = register_machines(args.register_url, args.token, config.machines)
            print(
                f"registered {registered.created} machines, {registered.existing} already known",
                file=sys.stderr,
            )
        report = _run_interruptibly(config)
    except (BrokerUnavailableError, BrokerRefusedError) as exc:
        # The library's words ("connection lost before CONNACK") do not say what to change.
        why = explain(exc.host, exc.port, config.mqtt.protocol)
        print(f"error: {why or exc}", file=sys.stderr)
        return _EXIT_ERROR
    except SimulatorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return _EXIT_ERROR
    print(report.summary())
    if args.ground_truth is not None:
        write_ground_truth(args.ground_truth, report.ground_truth)
        visible = sum(record.visible_ts_ms is not None for record in report.ground_truth)
        print(
            f"{len(report.ground_truth)} faults injected, {visible} became visible; "
            f"ground truth in {args.ground_truth}",
            file=sys.stderr,
        )
    return 0 if report.is_complete else _EXIT_INCOMPLETE
