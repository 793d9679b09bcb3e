"""Registering machines over HTTP, against a real local HTTP server."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from simulators import RegistrationError, make_fleet, register_machines


class FakeMachinesApi(BaseHTTPRequestHandler):
    """`POST /v1/machines`: 201 the first time, 409 after; 401 for a wrong token."""

    known: dict[str, dict[str, object]]
    requests: list[tuple[str, str | None, dict[str, object]]]

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.requests.append((self.path, self.headers["Authorization"], body))
        if self.headers["Authorization"] != "Bearer good-token":
            self._answer(401, {"title": "bad token"})
        elif body["machine_id"] in self.known:
            self._answer(409, {"title": "exists"})
        else:
            self.known[body["machine_id"]] = body
            self._answer(201, body)

    def _answer(self, status: int, doc: dict[str, object]) -> None:
        payload = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:
        pass


@dataclass
class Api:
    url: str
    requests: list[tuple[str, str | None, dict[str, object]]]


@pytest.fixture
def api() -> Iterator[Api]:
    requests: list[tuple[str, str | None, dict[str, object]]] = []
    handler = type("Handler", (FakeMachinesApi,), {"known": {}, "requests": requests})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Api(f"http://127.0.0.1:{server.server_address[1]}", requests)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_machines_are_registered_once_and_repeats_are_fine(api: Api) -> None:
    machines = make_fleet(3, id_prefix="REG")
    first = register_machines(api.url + "/", "good-token", machines)
    again = register_machines(api.url, "good-token", machines)
    assert (first.created, first.existing) == (3, 0)
    assert (again.created, again.existing) == (0, 3)


def test_each_request_carries_the_token_and_the_machine(api: Api) -> None:
    machines = make_fleet(2, id_prefix="REG")
    register_machines(api.url, "good-token", machines)
    requests = api.requests
    assert [path for path, _, _ in requests] == ["/v1/machines"] * 2
    assert {auth for _, auth, _ in requests} == {"Bearer good-token"}
    body = requests[0][2]
    assert body == {
        "machine_id": "REG-EX-0001",
        "model": "SY215C",
        "machine_class": "excavator",
        "customer_id": "CUST-001",
        "oem": "SANY",
        "fuel_tank_l": 400.0,
        "site": {
            "lat": machines[0].site.lat,
            "lon": machines[0].site.lon,
            "radius_m": machines[0].site.radius_m,
        },
    }


def test_a_refusal_names_the_machine_and_the_status(api: Api) -> None:
    with pytest.raises(RegistrationError) as caught:
        register_machines(api.url, "wrong-token", make_fleet(2, id_prefix="REG"))
    assert (caught.value.machine_id, caught.value.status) == ("REG-EX-0001", 401)
    assert "bad token" in caught.value.detail


def test_an_unreachable_api_is_a_registration_error() -> None:
    with pytest.raises(RegistrationError) as caught:
        register_machines("http://127.0.0.1:9", "t", make_fleet(1), timeout_s=2.0)
    assert caught.value.status is None
