"""The composition root: picks concrete adapters and runs gateway, API and upkeep together.

This is the one module that knows every part. It resolves the database and broker (embedded
defaults when none is configured), migrates, and runs the tasks under one TaskGroup until `stop`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import secrets
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import asyncpg
import uvicorn

from diagnosis.engine import Engine
from diagnosis.knowledge import KnowledgeBase
from diagnosis.rules import RuleBook
from telematics.aemp.puller import run_puller
from telematics.api.context import ApiContext
from telematics.api.request_guard import BodyLimits
from telematics.api.session_cookie import SessionKeeper
from telematics.base import embedded
from telematics.base.config import Settings
from telematics.base.db import acquire, with_retry
from telematics.base.errors import StoreUnavailableError, TelematicsError
from telematics.base.metrics import Metrics
from telematics.base.migrate import migrate
from telematics.base.pools import Pools, open_pools, read_route, watch_replica
from telematics.ingest.gateway import Gateway, GatewayConfig
from telematics.ingest.mqtt import broker_payload_limit, parse_mqtt_url
from telematics.maintenance import job as maintenance_job
from telematics.notices import worker as notices
from telematics.notices.broker import NoticeBroker
from telematics.notices.mail import SmtpConfig
from telematics.notices.retry import RetryPolicy
from telematics.notices.webhook import WebhookSender
from telematics.services import sla_worker
from telematics.services.diagnose import Diagnoser, DiagnoserConfig
from telematics.services.notify import AlarmPublisher
from telematics.store import partitions
from telematics.store.registry import SourceDirectory
from telematics.store.tokens import TokenCache
from telematics.summaries.rollup import Rollup
from telematics.web import build_app

log = logging.getLogger(__name__)
_READY_WAIT_S = 30.0

UPKEEP_INTERVAL_S = 3600.0


@dataclass(frozen=True, slots=True)
class Endpoints:
    """Where the running service's parts are, once started."""

    database_dsn: str
    mqtt_url: str
    mqtt_protocol: str
    http_url: str
    admin_token: str
    database_tcp: str | None = None
    """The embedded database's address for other clients (`psql`); None for a configured one."""


def admin_token(settings: Settings) -> str:
    """The configured admin token, or one generated once and kept in the data folder (0600)."""
    if settings.admin_token is not None:
        return settings.admin_token.get_secret_value()
    path = settings.data_dir / "admin-token"
    if path.exists():
        return path.read_text().strip()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    log.warning("no TELEMATICS_ADMIN_TOKEN set; generated one into %s", path)
    return token


async def prepare_database(pool: asyncpg.Pool, settings: Settings) -> None:
    """Migrate, then create the partitions the next days need."""
    async with acquire(pool) as conn:
        await migrate(conn)
        await upkeep(conn, settings)


async def upkeep(conn: asyncpg.Connection, settings: Settings) -> None:
    """Partition upkeep or, with TimescaleDB, its retention policy."""
    if await partitions.uses_timescale(conn):
        await partitions.set_timescale_retention(conn, settings.retention_days)
        return
    await partitions.upkeep(
        conn,
        today=datetime.now(UTC).date(),
        retention_days=settings.retention_days,
        ahead_days=settings.partitions_ahead_days,
    )


async def _upkeep_loop(pool: asyncpg.Pool, settings: Settings, stop: asyncio.Event) -> None:
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=UPKEEP_INTERVAL_S)
        if stop.is_set():
            return

        async def once() -> None:
            async with acquire(pool) as conn:
                await upkeep(conn, settings)

        try:
            await with_retry(once, what="partition upkeep", stop=stop)
        except StoreUnavailableError:
            return  # stopping with the database away
        except Exception:  # a supervisor: upkeep failing once must not stop the service
            log.exception("partition upkeep failed; trying again in %.0f s", UPKEEP_INTERVAL_S)


def api_context(
    settings: Settings, pools: Pools, directory: SourceDirectory, metrics: Metrics, token: str
) -> ApiContext:
    """The API's share of the service: its own pool, and the limits the settings give it."""
    return ApiContext(
        reads=read_route(settings, pools, metrics),
        pool=pools.api,
        directory=directory,
        metrics=metrics,
        admin_token=token,
        limits=settings.limits(),
        sla_policy=settings.sla_policy(),
        tokens=TokenCache(settings.token_cache_s),
        body_limits=BodyLimits(
            default_bytes=settings.http_max_body_bytes,
            large_bytes=settings.http_max_import_bytes,
        ),
        settings=settings,
        sessions=SessionKeeper(
            None
            if settings.console_secret is None
            else hashlib.sha256(settings.console_secret.get_secret_value().encode()).digest(),
            settings.console_session_s,
        ),
    )


class _Server(uvicorn.Server):
    """uvicorn without its own signal handlers: the CLI owns SIGINT/SIGTERM and sets `stop`."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@asynccontextmanager
async def _http_socket(settings: Settings) -> AsyncIterator[socket.socket]:
    """The API's socket, bound before the database and broker start: a taken port (8080 is a
    popular one) is then one line at once, not uvicorn's traceback once all else came up.

    Raises:
        TelematicsError: The address cannot be bound.
    """
    host, port = settings.http_host, settings.http_port
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    with sock:  # uvicorn's own bind does the same
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise TelematicsError(
                f"the HTTP API cannot listen on {host}:{port} ({exc.strerror or exc}); set "
                "TELEMATICS_HTTP_PORT to a free port, or 0 for any"
            ) from exc
        yield sock


@asynccontextmanager
async def _resources(settings: Settings) -> AsyncIterator[tuple[str, str, str, str | None]]:
    """The database DSN, broker URL and protocol, and the embedded database's TCP address."""
    async with AsyncExitStack() as stack:
        database_tcp = None
        if settings.database_url is not None:
            dsn = settings.database_url.get_secret_value()
        else:
            dsn, tcp_port = await embedded.start_postgres(
                settings.data_dir, settings.embedded_db_port
            )
            if tcp_port is not None:
                database_tcp = (
                    f"postgresql://postgres@127.0.0.1:{tcp_port}/{embedded.EMBEDDED_DB_NAME}"
                )
        protocol = settings.mqtt_protocol
        if settings.mqtt_url is not None:
            mqtt_url = settings.mqtt_url
        else:
            broker = embedded.EmbeddedBroker(
                settings.data_dir,
                embedded.find_mosquitto(),
                embedded.stable_port(settings.embedded_mqtt_port, "MQTT broker"),
                broker_payload_limit(settings.max_payload_bytes),
            )
            await broker.start()
            stack.push_async_callback(broker.stop)
            mqtt_url, protocol = broker.url, broker.protocol
        yield dsn, mqtt_url, protocol, database_tcp


def gateway_config(settings: Settings, mqtt_url: str, protocol: str) -> GatewayConfig:
    """The gateway's configuration from the settings, for the broker actually in use."""
    return GatewayConfig(
        endpoint=parse_mqtt_url(mqtt_url),
        client_id=settings.mqtt_client_id,
        protocol=protocol,
        shared_group=settings.mqtt_shared_group,
        receive_maximum=settings.mqtt_receive_maximum,
        broker_inflight_311=settings.mqtt_broker_inflight_311,
        session_expiry_s=settings.mqtt_session_expiry_s,
        batch_max_messages=settings.batch_max_messages,
        batch_max_bytes=settings.batch_max_bytes,
        batch_max_readings=settings.batch_max_readings,
        batch_max_delay_s=settings.batch_max_delay_ms / 1000,
        writers=settings.batches_in_flight,
        limits=settings.limits(),
        diagnosis_source=settings.mqtt_client_id if settings.diagnosis_enabled else None,
    )


def _diagnosis_data(settings: Settings) -> tuple[RuleBook, KnowledgeBase] | None:
    """The rule book and knowledge base, loaded (and checked) before anything else starts."""
    if not settings.diagnosis_enabled:
        return None
    return RuleBook.load(settings.rules_path), KnowledgeBase.load(settings.knowledge_path)


def _diagnosis(
    settings: Settings,
    data: tuple[RuleBook, KnowledgeBase] | None,
    pool: asyncpg.Pool,
    metrics: Metrics,
    mqtt_url: str,
    protocol: str,
) -> tuple[Diagnoser | None, AlarmPublisher | None, KnowledgeBase | None]:
    """The diagnoser, its alarm-notice publisher and the knowledge base, when enabled."""
    if data is None:
        return None, None, None
    rules, knowledge = data
    engine = Engine(rules)
    publisher = None
    if settings.alarm_notices:
        publisher = AlarmPublisher(
            parse_mqtt_url(mqtt_url),
            f"{settings.mqtt_client_id}-alarms",
            metrics,
            protocol=protocol,
        )
    diagnoser = Diagnoser(
        pool,
        engine,
        knowledge,
        metrics,
        DiagnoserConfig(
            history_s=settings.diagnosis_history_s,
            source=settings.mqtt_client_id,
            shared=settings.mqtt_shared_group is not None,
        ),
        notify=publisher.publish if publisher is not None else None,
        consumers=[
            Rollup(
                pool,
                rules,
                settings.summary_max_gap_s,
                settings.summary_flush_s,
                settings.summary_flush_readings,
            )
        ]
        if settings.summaries_enabled
        else [],
    )
    return diagnoser, publisher, knowledge


def notice_job(
    settings: Settings, mqtt_url: str, protocol: str
) -> tuple[notices.Channels, notices.NoticeConfig]:
    """The notifications job's senders and configuration, from the settings."""
    smtp = None
    if settings.smtp_host is not None:
        smtp = SmtpConfig(
            host=settings.smtp_host,
            port=settings.smtp_port,
            sender=settings.smtp_sender,
            username=settings.smtp_username,
            password=None
            if settings.smtp_password is None
            else settings.smtp_password.get_secret_value(),
            starttls=settings.smtp_starttls,
            timeout_s=settings.smtp_timeout_s,
        )
    channels = notices.Channels(
        webhook=WebhookSender(
            timeout_s=settings.webhook_timeout_s,
            max_response_bytes=settings.webhook_max_response_bytes,
            allow_private=settings.webhook_allow_private,
        ),
        broker=NoticeBroker(
            parse_mqtt_url(mqtt_url), f"{settings.mqtt_client_id}-notices", protocol=protocol
        ),
        smtp=smtp,
    )
    config = notices.NoticeConfig(
        worker_id=settings.mqtt_client_id,
        interval_s=settings.notice_interval_s,
        lease_s=settings.notice_lease_s,
        retry=RetryPolicy(
            base_s=settings.notice_retry_base_s,
            cap_s=settings.notice_retry_max_s,
            max_attempts=settings.notice_max_attempts,
        ),
    )
    return channels, config


def _start_jobs(
    tg: asyncio.TaskGroup,
    pool: asyncpg.Pool,
    settings: Settings,
    metrics: Metrics,
    broker: tuple[str, str],
    stop: asyncio.Event,
) -> None:
    """Start the background jobs on the jobs pool: partition upkeep, SLA timers, maintenance
    status, notifications and the AEMP puller (each safe to run in several copies).
    """
    tg.create_task(_upkeep_loop(pool, settings, stop))
    if settings.aemp_pull_enabled:
        tg.create_task(
            run_puller(pool, settings.limits(), stop, check_s=settings.aemp_pull_check_s)
        )
    tg.create_task(
        sla_worker.run(
            pool,
            metrics,
            stop,
            worker_id=settings.mqtt_client_id,
            interval_s=settings.sla_check_interval_s,
            notify_line=settings.desk_escalate_to_line or None,
        )
    )
    tg.create_task(maintenance_job.run(pool, settings, stop))
    if settings.notices_enabled:
        channels, notice_config = notice_job(settings, *broker)
        tg.create_task(notices.run(pool, channels, notice_config, stop))


async def _subscribed(gateway: Gateway, enabled: bool) -> None:
    """Wait (bounded) until the gateway, if it runs, holds its subscription; warn if it does not."""
    if not enabled:
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(gateway.connected.wait(), _READY_WAIT_S)
    if not gateway.connected.is_set():
        log.warning("ready without the broker: the gateway is not subscribed yet")


async def run_service(
    settings: Settings,
    stop: asyncio.Event,
    on_ready: Callable[[Endpoints], None] | None = None,
) -> None:
    """Run gateway, HTTP API and upkeep until `stop` is set, then drain and return."""
    # A broken rules or knowledge file stops the start here, before any database or broker work.
    data = _diagnosis_data(settings)
    async with (
        _http_socket(settings) as listener,
        _resources(settings) as (dsn, mqtt_url, protocol, database_tcp),
        open_pools(dsn, settings, stop) as pools,
    ):
        await prepare_database(pools.jobs, settings)
        metrics = Metrics()
        directory = SourceDirectory()
        diagnoser, publisher, knowledge = _diagnosis(
            settings, data, pools.jobs, metrics, mqtt_url, protocol
        )
        gateway = Gateway(
            gateway_config(settings, mqtt_url, protocol),
            pools.ingest,
            directory,
            metrics,
            after_commit=(lambda d, seq: diagnoser.submit(d.readings, seq)) if diagnoser else None,
            backpressure=diagnoser.room if diagnoser else None,
        )
        if diagnoser is not None:
            diagnoser.heard_since = gateway.heard_since
        token = admin_token(settings)
        context = api_context(settings, pools, directory, metrics, token)
        app = build_app(
            replace(
                context,
                gateway_connected=gateway.connected.is_set if settings.gateway_enabled else None,
                knowledge=knowledge,
                rules=diagnoser.engine.rules if diagnoser else None,
                models_changed=diagnoser.refresh_models if diagnoser else None,
            )
        )
        server = _Server(
            uvicorn.Config(
                app,
                host=settings.http_host,
                port=settings.http_port,
                log_level=settings.log_level.lower(),
                access_log=False,
                lifespan="off",
            )
        )
        # Stop in the order data flows: the gateway drains first, then diagnosis of what it
        # committed, then the notices of those alarms.
        gateway_done, diagnosis_done = asyncio.Event(), asyncio.Event()
        live_diagnoser = diagnoser if settings.gateway_enabled else None

        async def run_gateway() -> None:
            try:
                if not settings.gateway_enabled:
                    return  # an API copy: the workers of the shared group take the stream
                if diagnoser is not None:
                    # Batches an earlier run left undiagnosed go first, in their order.
                    await diagnoser.caught_up.wait()
                await gateway.run(stop)
            finally:
                gateway_done.set()

        async def run_diagnosis() -> None:
            try:
                # An API copy diagnoses nothing: replayed batches go to the workers' diagnosers.
                if live_diagnoser is not None:
                    await live_diagnoser.run(gateway_done)
            finally:
                diagnosis_done.set()

        async with asyncio.TaskGroup() as tg:
            tg.create_task(run_gateway())
            tg.create_task(run_diagnosis())
            if publisher is not None:
                tg.create_task(publisher.run(diagnosis_done))
            _start_jobs(tg, pools.jobs, settings, metrics, (mqtt_url, protocol), stop)
            tg.create_task(watch_replica(context.reads, stop))
            api = tg.create_task(server.serve(sockets=[listener]))
            # uvicorn offers no "started" event to wait on.
            while not server.started and not api.done():  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            port = server.servers[0].sockets[0].getsockname()[1] if server.servers else 0
            # Ready means taking messages: a controller (or the demo's fleet) that publishes on
            # the word would otherwise lose what it sends before the gateway's first session
            # subscribes (the broker keeps nothing for a subscription that does not exist yet).
            # A broker that stays away does not keep the endpoints from being told.
            await _subscribed(gateway, settings.gateway_enabled)
            if on_ready is not None:
                on_ready(
                    Endpoints(
                        database_dsn=dsn,
                        mqtt_url=mqtt_url,
                        mqtt_protocol=protocol,
                        http_url=f"http://{settings.http_host}:{port}",
                        admin_token=token,
                        database_tcp=database_tcp,
                    )
                )
            await stop.wait()
            server.should_exit = True
