"""The simulator's exception tree. Library errors are translated into these at the boundary.

SimulatorError
├── BrokerUnavailableError   the MQTT broker cannot be reached, or the connection was lost
│                            and could not be re-established in time
├── BrokerRefusedError       the broker answered CONNACK with a failure (credentials, ...)
└── RegistrationError        the HTTP API refused to register a machine
"""

from __future__ import annotations


class SimulatorError(Exception):
    """Base of every error this package raises on purpose."""


class BrokerUnavailableError(SimulatorError):
    """The broker cannot be reached, or the connection broke and did not come back in time."""

    def __init__(self, host: str, port: int, reason: str) -> None:
        super().__init__(f"MQTT broker {host}:{port} unavailable: {reason}")
        self.host = host
        self.port = port
        self.reason = reason


class BrokerRefusedError(SimulatorError):
    """The broker answered the connection with a failure reason code."""

    def __init__(self, host: str, port: int, reason: str) -> None:
        super().__init__(f"MQTT broker {host}:{port} refused the connection: {reason}")
        self.host = host
        self.port = port
        self.reason = reason


class RegistrationError(SimulatorError):
    """The API did not register a machine (any answer but 201 Created or 409 Conflict).

    Attributes:
        machine_id: The machine being registered.
        status: HTTP status, or None when no answer came (connection refused, timeout).
        detail: Body of the answer, or the transport error.
    """

    def __init__(self, machine_id: str, status: int | None, detail: str) -> None:
        super().__init__(f"registering {machine_id}: HTTP {status or '-'}: {detail}")
        self.machine_id = machine_id
        self.status = status
        self.detail = detail
