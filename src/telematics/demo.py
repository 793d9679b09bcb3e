"""`telematics demo`: the service, a service network and a simulated fleet with faults, for a
first look in one command that tells the whole story.

The service runs as `telematics run` would (embedded database and broker unless configured).
Once it is ready, the demo works only through the service's public doors, as an operator, a
field team and real controllers would: it registers the fleet and seeds the service network
(`telematics.firstlook.network`) over the HTTP API, makes a token for each role
(`firstlook.roles`), and the fleet publishes over MQTT with a fault injected soon after the start
and then every few minutes (`firstlook.faults`). The autopilot (`firstlook.autopilot`, on unless
`--no-autopilot`) plays the engineers. The output says which fault was injected where, each
alarm as it is raised, each engineer step, and how many readings are stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TextIO

import httpx

from diagnosis.knowledge import KnowledgeBase
from simulators import (
    MqttSettings,
    SimConfig,
    SimulatorError,
    arun,
    make_fleet,
    register_machines,
)
from simulators.faults import FaultPlan, FaultSpec
from simulators.link import MqttProtocol
from simulators.machines import MachineSpec
from telematics.base.config import Settings
from telematics.base.errors import TelematicsError
from telematics.firstlook.autopilot import Autopilot
from telematics.firstlook.faults import DemoTiming, schedule
from telematics.firstlook.network import plan_network, seed_network
from telematics.firstlook.positions import PositionPublisher
from telematics.firstlook.roles import TOKENS_FILE, SeatToken, ensure_tokens, seats
from telematics.ingest.mqtt import parse_mqtt_url
from telematics.service import Endpoints, run_service

log = logging.getLogger(__name__)

STORED_METRIC = "telematics_readings_stored_total"
MACHINES_PER_CUSTOMER = 7
"""A few customers for the default 20 machines (three), so the customer view shows its own."""
FLEET_SEED = 0


@dataclass(frozen=True, slots=True)
class DemoOptions:
    """What the demo runs besides the service.

    Attributes:
        machines: Fleet size.
        period_s: Seconds between two readings of a machine.
        report_every_s: How often the stored readings are counted in the output.
        timing: When faults are injected.
        autopilot: Whether the demo plays the engineers.
        autopilot_step_s: How long an order stays in each state under the autopilot.
        poll_s: How often the output looks for new alarms (and the autopilot for orders).
    """

    machines: int = 20
    period_s: float = 1.0
    report_every_s: float = 60.0
    timing: DemoTiming = field(default_factory=DemoTiming)
    autopilot: bool = True
    autopilot_step_s: float = 30.0
    poll_s: float = 2.0


def _stored_readings(text: str) -> float:
    """Readings stored so far, from the service's own /metrics text."""
    for line in text.splitlines():
        if line.startswith(STORED_METRIC + " "):
            return float(line.split()[1])
    return 0.0


def _clock(at: float | None = None) -> str:
    return datetime.fromtimestamp(time.time() if at is None else at, UTC).strftime("%H:%M:%S")


async def run_demo(
    settings: Settings,
    stop: asyncio.Event,
    options: DemoOptions | None = None,
    out: TextIO = sys.stdout,
) -> None:
    """Run the service, the network and a simulated fleet until `stop` is set, then stop all.

    Raises:
        TelematicsError: The service could not start, the fleet or network could not be set up
            over the API, or the fleet lost its broker.
    """
    options = options or DemoOptions()
    ready: asyncio.Future[Endpoints] = asyncio.get_running_loop().create_future()
    service_stop = asyncio.Event()
    service = asyncio.create_task(run_service(settings, service_stop, ready.set_result))
    try:
        await _wait_any(ready, service, stop)
        if ready.done() and not stop.is_set():
            demo = _Demo(settings, ready.result(), options, out)
            await demo.run(service, stop)
    finally:
        service_stop.set()
        await service  # drains the gateway; raises the service's own error, if it had one


class _Demo:
    """The demo's world around one running service."""

    def __init__(
        self, settings: Settings, endpoints: Endpoints, options: DemoOptions, out: TextIO
    ) -> None:
        self.settings = settings
        self.endpoints = endpoints
        self.options = options
        self.out = out
        self.machines = make_fleet(
            options.machines, machines_per_customer=MACHINES_PER_CUSTOMER, seed=FLEET_SEED
        )
        self.knowledge = KnowledgeBase.load(settings.knowledge_path)
        self.network = plan_network(self.machines, self.knowledge)

    def say(self, line: str) -> None:
        """One line of the demo's story, stamped with the time (UTC)."""
        print(f"{_clock()} {line}", file=self.out, flush=True)

    async def run(self, service: asyncio.Task[None], stop: asyncio.Event) -> None:
        ep = self.endpoints
        auth = {"Authorization": f"Bearer {ep.admin_token}"}
        async with (
            httpx.AsyncClient(base_url=ep.http_url, headers=auth, timeout=30) as admin,
            httpx.AsyncClient(base_url=ep.http_url, timeout=30) as anyone,
        ):
            # The fault schedule replays the fleet's duty cycle (a few seconds): meanwhile, the
            # fleet is registered and the network seeded.
            planned = asyncio.create_task(
                asyncio.to_thread(
                    schedule,
                    self.machines,
                    self.options.timing,
                    seed=FLEET_SEED,
                    first_customer=self.network.customers[0],
                    alarmed=await _alarmed_machines(admin),
                )
            )
            try:
                await asyncio.to_thread(
                    register_machines, ep.http_url, ep.admin_token, self.machines
                )
            except (SimulatorError, OSError) as exc:
                raise TelematicsError(f"could not register the simulated fleet: {exc}") from exc
            try:
                seeded = await seed_network(admin, self.network)
                wanted = seats([e.engineer_id for e in self.network.engineers],
                               self.network.customers)  # fmt: skip
                tokens, _ = await ensure_tokens(admin, self.settings.data_dir, wanted)
            except httpx.HTTPError as exc:
                raise TelematicsError(f"could not seed the service network: {exc}") from exc
            faults = await planned
            self._banner(tokens, faults, seeded.summary())
            await self._play(service, stop, admin, anyone, tokens, faults)

    async def _play(
        self,
        service: asyncio.Task[None],
        stop: asyncio.Event,
        admin: httpx.AsyncClient,
        anyone: httpx.AsyncClient,
        tokens: Sequence[SeatToken],
        faults: Sequence[FaultSpec],
    ) -> None:
        o, ep = self.options, self.endpoints
        protocol: MqttProtocol = "5" if ep.mqtt_protocol == "5" else "3.1.1"
        config = SimConfig(
            machines=self.machines,
            mqtt=MqttSettings.from_url(ep.mqtt_url, protocol=protocol, client_id_prefix="demo"),
            duration_s=None,
            period_s=o.period_s,
            progress=False,
            seed=FLEET_SEED,
            faults=FaultPlan(from_run_start=tuple(faults)),
        )
        started = time.time()
        quiet = asyncio.Event()  # the helpers' stop: set once the demo ends, however it ends
        helpers = [
            asyncio.create_task(self._announce(faults, started, quiet)),
            asyncio.create_task(self._watch(admin, quiet)),
        ]
        vans = None
        if o.autopilot:
            engineers = {t.subject_id: t.token for t in tokens if t.role == "engineer"}
            vans = PositionPublisher(
                parse_mqtt_url(ep.mqtt_url), f"demo-vans-{uuid.uuid4().hex[:8]}",
                protocol=ep.mqtt_protocol,
            )  # fmt: skip
            homes = {e.engineer_id: (e.home_lat, e.home_lon) for e in self.network.engineers}
            pilot = Autopilot(
                anyone, engineers, step_s=o.autopilot_step_s, poll_s=o.poll_s, say=self.say,
                vans=vans, homes=homes,
            )  # fmt: skip
            helpers.append(asyncio.create_task(pilot.run(quiet)))
        simulation = asyncio.create_task(arun(config))
        try:
            await _wait_any(simulation, service, stop)
            if simulation.done() and (error := simulation.exception()) is not None:
                raise TelematicsError(f"the simulated fleet stopped: {error}") from error
        finally:
            quiet.set()
            simulation.cancel()
            await asyncio.gather(simulation, *helpers, return_exceptions=True)
            if vans is not None:
                await vans.close()

    async def _announce(
        self, faults: Sequence[FaultSpec], started: float, quiet: asyncio.Event
    ) -> None:
        """Say each fault as its window opens (it shows once the machine is in its state)."""
        owner = {m.machine_id: m.customer_id for m in self.machines}
        for spec in faults:
            at = started + spec.start_ts_ms / 1000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(quiet.wait(), max(0.0, at - time.time()))
            if quiet.is_set():
                return
            self.say(
                f"fault injected: {spec.fault_code} on {spec.machine_id} "
                f"({owner[spec.machine_id]}) for {spec.duration_s / 60:.0f} min"
            )

    async def _watch(self, admin: httpx.AsyncClient, quiet: asyncio.Event) -> None:
        """Say each new alarm, and count the stored readings now and then."""
        seen: int | None = None
        next_count = time.monotonic() + self.options.report_every_s
        while not quiet.is_set():
            try:
                seen = await self._new_alarms(admin, seen)
                if time.monotonic() >= next_count:
                    next_count += self.options.report_every_s
                    metrics = await admin.get("/metrics")
                    self.say(f"readings stored: {_stored_readings(metrics.text):.0f}")
            except httpx.HTTPError as exc:
                log.warning("could not read the service's alarms or metrics: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(quiet.wait(), self.options.poll_s)

    async def _new_alarms(self, admin: httpx.AsyncClient, seen: int | None) -> int:
        answer = await admin.get("/v1/alarms", params={"limit": "50"})
        answer.raise_for_status()
        alarms: list[dict[str, Any]] = answer.json()["alarms"]
        newest = max((int(a["alarm_id"]) for a in alarms), default=0)
        if seen is None:
            return newest  # alarms of an earlier run are not news
        for alarm in sorted(alarms, key=lambda a: int(a["alarm_id"])):
            if int(alarm["alarm_id"]) > seen:
                self.say(
                    f"alarm {alarm['alarm_id']} raised: {alarm['title']} on "
                    f"{alarm['machine_id']} ({alarm['severity']}); open it in the console"
                )
        return max(newest, seen)

    def _banner(
        self, tokens: Sequence[SeatToken], faults: Sequence[FaultSpec], seeded: str
    ) -> None:
        ep, o, t = self.endpoints, self.options, self.options.timing
        by_role: dict[str, SeatToken] = {}
        for token in tokens:
            by_role.setdefault(token.role, token)
        first = faults[0] if faults else None
        engineer = self._likely_engineer(first, tokens) or by_role["engineer"]
        customer = next(
            (x for x in tokens if first and x.role == "customer"
             and x.subject_id == self._owner(first.machine_id)),
            by_role["customer"],
        )  # fmt: skip
        tokens_file = self.settings.data_dir / TOKENS_FILE
        pilot = (
            f"The autopilot plays the engineers: an order moves on every {o.autopilot_step_s:g}"
            " s (accept, travel, arrive, complete);\nstart with --no-autopilot to play them "
            "yourself."
            if o.autopilot
            else "No autopilot: sign in as the engineer to accept, travel, arrive and complete."
        )
        admin_from = (
            "from TELEMATICS_ADMIN_TOKEN"
            if self.settings.admin_token is not None
            else f"kept in {self.settings.data_dir / 'admin-token'}"
        )
        db = ep.database_tcp or (
            "as TELEMATICS_DATABASE_URL says"
            if self.settings.database_url is not None
            else "embedded, on its Unix socket only (a server started without a TCP port)"
        )
        print(
            f"""
telematics demo: {len(self.machines)} simulated machines of {len(self.network.customers)} \
customers publish to {ep.mqtt_url} every {o.period_s:g} s.
A fault is injected {t.first_after_s:.0f} s after the start, then every \
{t.every_s / 60:g} min, rotating over machines and fault kinds.
Watch its alarm and diagnosis appear in the console, dispatch it as the expert, and follow the
order to its arrival; then answer the survey as the customer.
{pilot}

  console   {ep.http_url}/console   sign in with a token:
    expert    {by_role["expert"].token}   control centre: alarms, diagnosis, dispatch
    monitor   {by_role["monitor"].token}   monitoring desk
    engineer  {engineer.token}   {engineer.subject_id}, likely sent to the first fault
    customer  {customer.token}   {customer.subject_id}, owner of the first faulty machine
              (every engineer's and customer's token: {tokens_file})
  API       {ep.http_url}   (OpenAPI: {ep.http_url}/docs)
  admin     {ep.admin_token}   the admin's API token (every route; {admin_from})
  try       curl -H 'Authorization: Bearer {ep.admin_token}' \\
              '{ep.http_url}/v1/machines/{self.machines[0].machine_id}/readings'
  metrics   {ep.http_url}/metrics
  broker    {ep.mqtt_url}   (MQTT {ep.mqtt_protocol})
  database  {db}
  network   {seeded}

Ctrl-C stops the fleet, then the service drains and stops.
""",
            file=self.out,
            flush=True,
        )

    def _owner(self, machine_id: str) -> str:
        return next(m.customer_id for m in self.machines if m.machine_id == machine_id)

    def _likely_engineer(
        self, fault: FaultSpec | None, tokens: Sequence[SeatToken]
    ) -> SeatToken | None:
        """The engineer dispatch will most likely suggest for `fault`: the nearest with its
        skills (matching also weighs parts and shifts, so this is a guess, said as one).
        """
        if fault is None:
            return None
        needs = set(self.knowledge.diagnose(fault.fault_code).skills)
        site = _machine(self.machines, fault.machine_id).site
        able = [e for e in self.network.engineers if needs <= set(e.skills)]
        if not able:
            return None
        nearest = min(able, key=lambda e: _km(e.home_lat, e.home_lon, site.lat, site.lon))
        return next((t for t in tokens if t.subject_id == nearest.engineer_id), None)


async def _alarmed_machines(admin: httpx.AsyncClient) -> frozenset[str]:
    """Machines with an open alarm: left by an earlier run on this data folder, if any.

    Raises:
        TelematicsError: The service did not answer.
    """
    try:
        answer = await admin.get("/v1/alarms", params={"state": "open", "limit": "1000"})
        answer.raise_for_status()
    except httpx.HTTPError as exc:
        raise TelematicsError(f"could not read the service's open alarms: {exc}") from exc
    return frozenset(str(a["machine_id"]) for a in answer.json()["alarms"])


def _machine(machines: Sequence[MachineSpec], machine_id: str) -> MachineSpec:
    return next(m for m in machines if m.machine_id == machine_id)


def _km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    dy = (lat2 - lat1) * 111.32
    dx = (lon2 - lon1) * 111.32 * math.cos(math.radians((lat1 + lat2) / 2))
    return math.hypot(dx, dy)


async def _wait_any(*waitables: asyncio.Future[Any] | asyncio.Event) -> None:
    """Return as soon as one future is done or one event is set."""
    futures = [w for w in waitables if isinstance(w, asyncio.Future)]
    events = [asyncio.ensure_future(w.wait()) for w in waitables if isinstance(w, asyncio.Event)]
    try:
        await asyncio.wait([*futures, *events], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in events:
            waiter.cancel()
