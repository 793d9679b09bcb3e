"""`telematics demo`: the service plus a simulated fleet, for a first look in one command.

The service runs as `telematics run` would (embedded database and broker unless configured);
once it is ready the fleet is registered over the HTTP API and publishes over MQTT, exactly as
real controllers would. Every few seconds the demo prints how many readings have been stored.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import urllib.request
from typing import Any, TextIO

from simulators import (
    MqttSettings,
    SimConfig,
    SimulatorError,
    arun,
    make_fleet,
    register_machines,
)
from simulators.link import MqttProtocol
from telematics.base.config import Settings
from telematics.base.errors import TelematicsError
from telematics.service import Endpoints, run_service

log = logging.getLogger(__name__)

STORED_METRIC = "telematics_readings_stored_total"


def _stored_readings(http_url: str) -> float:
    """Readings stored so far, read from the service's own /metrics."""
    with urllib.request.urlopen(f"{http_url}/metrics", timeout=5) as response:  # noqa: S310 - our own http:// URL
        text: str = response.read().decode()
    for line in text.splitlines():
        if line.startswith(STORED_METRIC + " "):
            return float(line.split()[1])
    return 0.0


def _banner(endpoints: Endpoints, machines: int, first_machine: str, out: TextIO) -> None:
    token = endpoints.admin_token
    print(
        f"""
telematics demo: {machines} simulated machines publish to {endpoints.mqtt_url} once a second.

  API       {endpoints.http_url}   (OpenAPI: {endpoints.http_url}/docs)
  console   {endpoints.http_url}/console   (sign in with the token)
  token     {token}
  try       curl -H 'Authorization: Bearer {token}' \\
              '{endpoints.http_url}/v1/machines/{first_machine}/readings'
  metrics   {endpoints.http_url}/metrics
  database  {endpoints.database_dsn}

Ctrl-C stops the fleet, then the service drains and stops.
""",
        file=out,
        flush=True,
    )


async def _report(http_url: str, every_s: float, out: TextIO) -> None:
    while True:
        await asyncio.sleep(every_s)
        try:
            stored = await asyncio.to_thread(_stored_readings, http_url)
        except OSError as exc:
            log.warning("could not read %s/metrics: %s", http_url, exc)
            continue
        print(f"readings stored: {stored:.0f}", file=out, flush=True)


async def run_demo(
    settings: Settings,
    stop: asyncio.Event,
    *,
    machines: int = 20,
    period_s: float = 1.0,
    report_every_s: float = 10.0,
    out: TextIO = sys.stdout,
) -> None:
    """Run the service and a simulated fleet until `stop` is set, then stop both cleanly.

    Raises:
        TelematicsError: The service could not start, the fleet could not be registered, or the
            fleet lost its broker.
    """
    ready: asyncio.Future[Endpoints] = asyncio.get_running_loop().create_future()
    service_stop = asyncio.Event()
    service = asyncio.create_task(run_service(settings, service_stop, ready.set_result))
    try:
        await _wait_any(ready, service, stop)
        if ready.done() and not stop.is_set():
            demo = _Fleet(ready.result(), machines, period_s)
            await demo.run(service, stop, report_every_s, out)
    finally:
        service_stop.set()
        await service  # drains the gateway; raises the service's own error, if it had one


class _Fleet:
    """The simulated fleet of the demo, registered and publishing against one service."""

    def __init__(self, endpoints: Endpoints, machines: int, period_s: float) -> None:
        self.endpoints = endpoints
        self.machines = make_fleet(machines, seed=0)
        protocol: MqttProtocol = "5" if endpoints.mqtt_protocol == "5" else "3.1.1"
        self.config = SimConfig(
            machines=self.machines,
            mqtt=MqttSettings.from_url(
                endpoints.mqtt_url, protocol=protocol, client_id_prefix="demo-fleet"
            ),
            duration_s=None,
            period_s=period_s,
            progress=False,
        )

    async def run(
        self, service: asyncio.Task[None], stop: asyncio.Event, report_every_s: float, out: TextIO
    ) -> None:
        ep = self.endpoints
        try:
            await asyncio.to_thread(register_machines, ep.http_url, ep.admin_token, self.machines)
        except (SimulatorError, OSError) as exc:
            raise TelematicsError(f"could not register the simulated fleet: {exc}") from exc
        _banner(ep, len(self.machines), self.machines[0].machine_id, out)
        simulation = asyncio.create_task(arun(self.config))
        reporter = asyncio.create_task(_report(ep.http_url, report_every_s, out))
        try:
            await _wait_any(simulation, service, stop)
            if simulation.done() and (error := simulation.exception()) is not None:
                raise TelematicsError(f"the simulated fleet stopped: {error}") from error
        finally:
            reporter.cancel()
            simulation.cancel()
            await asyncio.gather(reporter, simulation, return_exceptions=True)


async def _wait_any(*waitables: asyncio.Future[Any] | asyncio.Event) -> None:
    """Return as soon as one future is done or one event is set."""
    futures = [w for w in waitables if isinstance(w, asyncio.Future)]
    events = [asyncio.ensure_future(w.wait()) for w in waitables if isinstance(w, asyncio.Event)]
    try:
        await asyncio.wait([*futures, *events], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in events:
            waiter.cancel()
