"""Registering simulated machines with the backend's HTTP API (`POST /v1/machines`).

This module owns the one HTTP call the simulator makes. It uses only the standard library
(`urllib.request`), like a stranger's script would, and never imports the backend.
"""

from __future__ import annotations

import contextlib
import json
import logging
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass

from simulators.errors import RegistrationError
from simulators.machines import MachineSpec

_log = logging.getLogger(__name__)

_CREATED = 201
_CONFLICT = 409


@dataclass(frozen=True, slots=True)
class RegistrationReport:
    """What `register_machines` did.

    Attributes:
        created: Machines the API created (HTTP 201).
        existing: Machines the API already knew (HTTP 409).
    """

    created: int
    existing: int


def register_machines(
    api_url: str,
    token: str,
    machines: Iterable[MachineSpec],
    *,
    timeout_s: float = 10.0,
) -> RegistrationReport:
    """Register each machine with `POST {api_url}/v1/machines`.

    201 Created and 409 Conflict (already registered) both count as success, so registering
    the same fleet twice is harmless.

    Args:
        api_url: Base URL of the API, such as `http://127.0.0.1:8000`.
        token: Bearer token of a user allowed to create machines.
        machines: The machines to register.
        timeout_s: Timeout of each request.

    Returns:
        How many machines were created and how many already existed.

    Raises:
        RegistrationError: Any other answer, or no answer at all; carries the machine id.
    """
    url = api_url.rstrip("/") + "/v1/machines"
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"api_url must be an http(s) URL, not {api_url!r}")
    created = existing = 0
    for machine in machines:
        status = _post(url, token, machine, timeout_s)
        if status == _CREATED:
            created += 1
        else:
            existing += 1
    _log.info("registered %d machines (%d already known)", created, existing)
    return RegistrationReport(created=created, existing=existing)


def _post(url: str, token: str, machine: MachineSpec, timeout_s: float) -> int:
    body = json.dumps(machine.registration_body()).encode()
    request = urllib.request.Request(  # noqa: S310 - the scheme is checked by the caller
        url,
        data=body,
        method="POST",
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "Accept": "application/json",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310
            status: int = response.status
    except urllib.error.HTTPError as exc:
        with contextlib.closing(exc):  # it holds the response; unclosed, it leaks a socket
            if exc.code == _CONFLICT:
                return _CONFLICT
            detail = exc.read().decode(errors="replace")[:500]
        raise RegistrationError(machine.machine_id, exc.code, detail) from exc
    except (urllib.error.URLError, OSError) as exc:
        raise RegistrationError(machine.machine_id, None, str(exc)) from exc
    if status != _CREATED:
        raise RegistrationError(machine.machine_id, status, "expected 201 Created or 409 Conflict")
    return status
