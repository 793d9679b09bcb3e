"""A fleet simulator that speaks only the wire contract: MQTT topics and JSON, and one HTTP call.

It could be a stranger's program: it imports nothing from `telematics`, `diagnosis` or
`dispatch`. Modules, from pure to I/O:

* `machines`: machine models and rosters (ids, customers, sites).
* `state`: the fleet state, the frames it yields, and the fault-injection hook's signature.
* `fleet`: the vectorised model that steps every machine at once.
* `wire`: frames to topics and JSON payloads.
* `link`: the MQTT session (paho-mqtt, QoS 1, bounded window).
* `faults`: fault injection (step modifiers) with ground truth, and fault plans.
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
from simulators.faults import (
    FAULT_KINDS,
    FaultInjector,
    FaultPlan,
    FaultSpec,
    GroundTruth,
    load_plan,
    plan_faults,
    read_ground_truth,
    save_plan,
    write_ground_truth,
)
from simulators.fleet import Fleet
from simulators.link import MqttSettings
from simulators.machines import MODELS, MachineSpec, Site, make_fleet
from simulators.publisher import SimConfig, SimReport, arun, run
from simulators.registry import RegistrationReport, register_machines
from simulators.state import Dtc, FleetState, Frame, StepModifier

__all__ = [
    "FAULT_KINDS",
    "MODELS",
    "BrokerRefusedError",
    "BrokerUnavailableError",
    "Dtc",
    "FaultInjector",
    "FaultPlan",
    "FaultSpec",
    "Fleet",
    "FleetState",
    "Frame",
    "GroundTruth",
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
    "load_plan",
    "make_fleet",
    "plan_faults",
    "read_ground_truth",
    "register_machines",
    "run",
    "save_plan",
    "write_ground_truth",
]
