"""The production deployment's files hold: the compose file parses, the Mosquitto ACL confines.

The ACL is the one in `deploy/mosquitto/acl`, loaded by a real Mosquitto of the test's own on a
free port with a password file made by `mosquitto_passwd`: a device publishes to its own topic
and not to another machine's, reads its own alarm notices and not another's, and the service's
user reads every machine's telemetry through a shared subscription, as the gateway subscribes.
The compose file is checked by `docker compose config` where that tool exists, skipped otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiomqtt
import pytest

from telematics.base.embedded import find_mosquitto
from telematics.ingest.gateway import POSITION_TOPIC, TELEMETRY_TOPIC

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
PASSWORDS = {"EX-0001": "pw-one", "EX-0002": "pw-two", "ENG-07": "pw-van", "telematics": "pw-svc"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def acl_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A Mosquitto with the deployment's ACL and a password file; yields its port."""
    binary, passwd = find_mosquitto(), shutil.which("mosquitto_passwd")
    if binary is None or passwd is None:
        pytest.skip("mosquitto and mosquitto_passwd are needed to check the ACL")
    folder = tmp_path_factory.mktemp("acl-broker")
    password_file = folder / "passwd"
    password_file.touch(mode=0o600)
    for user, password in PASSWORDS.items():
        subprocess.run([passwd, "-b", str(password_file), user, password], check=True)
    port = _free_port()
    conf = folder / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous false\npersistence false\n"
        f"password_file {password_file}\nacl_file {DEPLOY / 'mosquitto' / 'acl'}\n"
        "log_type error\n"
        # As root Mosquitto would switch to user 'mosquitto', who cannot read the test's files.
        f"user {pwd.getpwuid(os.getuid()).pw_name}\n"
    )
    proc = subprocess.Popen([binary, "-c", str(conf)], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)):
                break
            if time.monotonic() > deadline or proc.poll() is not None:
                err = proc.stderr.read().decode() if proc.poll() is not None and proc.stderr else ""
                pytest.fail(f"mosquitto did not start with the deployment's ACL: {err}")
            time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stderr is not None:
            proc.stderr.close()


def _client(port: int, user: str, password: str | None = None) -> aiomqtt.Client:
    return aiomqtt.Client(
        "127.0.0.1",
        port,
        username=user,
        password=PASSWORDS[user] if password is None else password,
        identifier=f"{user}-{uuid.uuid4().hex[:8]}",
        protocol=aiomqtt.ProtocolVersion.V5,
        timeout=10,
    )


class Inbox(list[str]):
    """The topics of the messages a client received, in arrival order."""

    def __init__(self) -> None:
        super().__init__()
        self.changed = asyncio.Condition()

    async def until(self, topic: str) -> None:
        """Wait until `topic` arrived (the broker keeps one publisher's order, so whatever that
        publisher sent before it has arrived too, or never will)."""
        async with asyncio.timeout(10), self.changed:
            await self.changed.wait_for(lambda: topic in self)


@contextlib.asynccontextmanager
async def _listening(client: aiomqtt.Client, *topics: str) -> AsyncIterator[Inbox]:
    """Subscribe `client` to `topics`; yields what it receives."""
    got = Inbox()
    await client.subscribe([(t, 1) for t in topics])

    async def collect() -> None:
        async for message in client.messages:
            async with got.changed:
                got.append(message.topic.value)
                got.changed.notify_all()

    task = asyncio.create_task(collect())
    try:
        yield got
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_device_publishes_only_to_its_own_telemetry(acl_broker: int) -> None:
    # exactly as the gateway subscribes with TELEMATICS_MQTT_SHARED_GROUP set
    shared = [f"$share/ingest/{TELEMETRY_TOPIC}", f"$share/ingest/{POSITION_TOPIC}"]
    async with (
        _client(acl_broker, "telematics") as service,
        _client(acl_broker, "EX-0001") as dev,
        _listening(service, *shared) as got,
    ):
        await dev.publish("machines/EX-0002/telemetry", b'{"ts": 1}', qos=1)
        await dev.publish("engineers/EX-0002/position", b'{"ts": 1}', qos=1)
        await dev.publish("machines/EX-0001/telemetry", b'{"ts": 1}', qos=1)
        await got.until("machines/EX-0001/telemetry")
    assert got == ["machines/EX-0001/telemetry"]


async def test_service_van_publishes_only_its_own_position(acl_broker: int) -> None:
    async with (
        _client(acl_broker, "telematics") as service,
        _client(acl_broker, "ENG-07") as van,
        _listening(service, TELEMETRY_TOPIC, POSITION_TOPIC) as got,
    ):
        await van.publish("engineers/ENG-08/position", b"{}", qos=1)
        await van.publish("machines/EX-0001/telemetry", b"{}", qos=1)
        await van.publish("engineers/ENG-07/position", b"{}", qos=1)
        await got.until("engineers/ENG-07/position")
    assert got == ["engineers/ENG-07/position"]


async def test_device_reads_only_its_own_alarm_notices(acl_broker: int) -> None:
    async with (
        _client(acl_broker, "telematics") as service,
        _client(acl_broker, "EX-0001") as one,
        _client(acl_broker, "EX-0002") as two,
        _listening(one, "machines/EX-0001/alarms", "machines/EX-0002/alarms") as one_got,
        _listening(two, "machines/EX-0002/alarms") as two_got,
    ):
        await service.publish("machines/EX-0002/alarms", b"{}", qos=1)
        await service.publish("machines/EX-0001/alarms", b"{}", qos=1)
        await one_got.until("machines/EX-0001/alarms")
        await two_got.until("machines/EX-0002/alarms")
    assert one_got == ["machines/EX-0001/alarms"]
    assert two_got == ["machines/EX-0002/alarms"]


async def test_device_cannot_read_the_fleet_stream(acl_broker: int) -> None:
    async with (
        _client(acl_broker, "EX-0001") as dev,
        _client(acl_broker, "EX-0002") as other,
        _client(acl_broker, "telematics") as service,
        _listening(dev, TELEMETRY_TOPIC, f"$share/ingest/{TELEMETRY_TOPIC}") as got,
        _listening(service, TELEMETRY_TOPIC) as barrier,
    ):
        await other.publish("machines/EX-0002/telemetry", b"{}", qos=1)
        await dev.publish("machines/EX-0001/telemetry", b"{}", qos=1)  # its own: readable?
        await barrier.until("machines/EX-0001/telemetry")
        await asyncio.sleep(0.2)  # the device's copy, if any, left the broker with the service's
    assert got == []  # not even its own: devices write telemetry, they do not read it


async def test_wrong_password_is_refused(acl_broker: int) -> None:
    with pytest.raises(aiomqtt.MqttError):
        async with _client(acl_broker, "EX-0001", password="not-it"):
            pass


def _compose() -> list[str] | None:
    """The compose command available here: `docker compose`, else `docker-compose`."""
    docker = shutil.which("docker")
    if docker is not None:
        done = subprocess.run([docker, "compose", "version"], capture_output=True, check=False)
        if done.returncode == 0:
            return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy is not None else None


def test_compose_file_is_valid(tmp_path: Path) -> None:
    command = _compose()
    if command is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed here")
    # The env files hold secrets and are not in the repository: check with the examples.
    shutil.copy(ROOT / "compose.yaml", tmp_path / "compose.yaml")
    shutil.copytree(DEPLOY, tmp_path / "deploy")
    for example in (tmp_path / "deploy" / "env").glob("*.env.example"):
        shutil.copy(example, example.with_suffix(""))
    done = subprocess.run(
        [*command, "-f", str(tmp_path / "compose.yaml"), "config", "-q"],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr


def test_every_file_the_compose_file_mounts_exists() -> None:
    text = (ROOT / "compose.yaml").read_text()
    mounted = [
        line.split("- ./", 1)[1].split(":", 1)[0] for line in text.splitlines() if "- ./" in line
    ]
    env_files = [
        line.split("env_file:", 1)[1].split("#", 1)[0].strip()
        for line in text.splitlines()
        if "env_file:" in line and "&" not in line
    ]
    assert mounted
    assert env_files
    missing = [m for m in mounted if not (ROOT / m).exists()]
    missing += [e for e in env_files if not (ROOT / (e + ".example")).exists()]
    assert missing == []
