"""A fleet simulator that speaks only the wire contract: MQTT topics and JSON, and one HTTP call.

It could be a stranger's program: it imports nothing from `telematics`, `diagnosis` or
`dispatch`. Modules, from pure to I/O:

* `machines`: machine models and rosters (ids, customers, sites).
* `state`: the fleet state, the frames it yields, and the fault-injection hook's signature.
* `fleet`: the vectorised model that steps every machine at once.
* `wire`: frames to topics and JSON payloads.
* `link`: the MQTT session (paho-mqtt, QoS 1, bounded window).
* `publisher`: the run loop, time modes, pacing and the report (`run`, `arun`).
* `registry`: `POST /v1/machines` with the standard library.
* `cli`: `python -m simulators`.
"""

from simulators.errors import (
    BrokerRefusedError,
    BrokerUnavailableError,
    RegistrationError,
    SimulatorError,
)
from simulators.fleet import Fleet
from simulators.link import MqttSettings
from simulators.machines import MODELS, MachineSpec, Site, make_fleet
from simulators.publisher import SimConfig, SimReport, arun, run
from simulators.registry import RegistrationReport, register_machines
from simulators.state import Dtc, FleetState, Frame, StepModifier

__all__ = [
    "MODELS",
    "BrokerRefusedError",
    "BrokerUnavailableError",
    "Dtc",
    "Fleet",
    "FleetState",
    "Frame",
    "MachineSpec",
    "MqttSettings",
    "RegistrationError",
    "RegistrationReport",
    "SimConfig",
    "SimReport",
    "SimulatorError",
    "Site",
    "StepModifier",
    "arun",
    "make_fleet",
    "register_machines",
    "run",
]
