"""The demo's first minutes, timed: what a newcomer sees, and when.

Runs `telematics demo` with its defaults in a fresh data folder (embedded database and broker on
free ports), plays the newcomer at the control centre (dispatches every new alarm as the expert,
as soon as the API lists it) and prints the demo's own story lines with the seconds since start,
then one line per fault: injected -> alarm -> dispatched -> completed. Not a speed benchmark (the
times are the demo's pacing plus the machine's load); it checks the claim that the whole chain
shows within ten minutes.

    .venv/bin/python -m bench.first_look --minutes 11
"""

from __future__ import annotations

import argparse
import json
import os
import re
import selectors
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Any


def _call(api: str, token: str, method: str, path: str) -> Any:
    request = urllib.request.Request(
        api + path, method=method, headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.load(answer)


class _Timeline:
    """The demo's story lines, the newcomer's dispatches, and when each happened."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.api = self.expert = ""
        self.events: dict[str, dict[str, float]] = {}  # machine -> what happened when
        self.dispatched: set[int] = set()
        self.orders: dict[str, str] = {}  # order id -> machine

    def at(self) -> float:
        return time.monotonic() - self.started

    def read(self, line: str) -> None:
        if found := re.search(r"^\s+API\s+(http://\S+)", line):
            self.api = found[1]
        if found := re.search(r"^\s+expert\s+(\S+)", line):
            self.expert = found[1]
        if not re.match(r"^\d\d:\d\d:\d\d ", line):
            return
        print(f"+{self.at():6.1f} s  {line.rstrip()}", flush=True)
        if found := re.search(r"fault injected: \S+ on (\S+)", line):
            self.events[found[1]] = {"injected": self.at()}
        elif found := re.search(r"alarm \d+ raised: .* on (\S+) \(", line):
            self.events.setdefault(found[1], {}).setdefault("alarm", self.at())
        elif (found := re.search(r"completed order (\d+)", line)) and found[1] in self.orders:
            self.events.setdefault(self.orders[found[1]], {})["completed"] = self.at()

    def dispatch_new_alarms(self) -> None:
        if not (self.api and self.expert):
            return
        alarms = _call(self.api, self.expert, "GET", "/v1/alarms?state=open&limit=50")["alarms"]
        for alarm in alarms:
            if alarm["alarm_id"] in self.dispatched:
                continue
            self.dispatched.add(alarm["alarm_id"])
            path = f"/v1/alarms/{alarm['alarm_id']}/dispatch"
            order = _call(self.api, self.expert, "POST", path)
            self.orders[str(order["order_id"])] = alarm["machine_id"]
            self.events.setdefault(alarm["machine_id"], {})["dispatched"] = self.at()
            print(f"+{self.at():6.1f} s  (newcomer) dispatched alarm {alarm['alarm_id']} "
                  f"to {order['engineer_id']}", flush=True)  # fmt: skip

    def summary(self) -> None:
        print("machine        injected  alarm after  completed after injection (s)")
        for machine, when in self.events.items():
            if "injected" in when:
                alarm = when.get("alarm", float("nan")) - when["injected"]
                done = when.get("completed", float("nan")) - when["injected"]
                print(f"{machine:<14} {when['injected']:8.1f}  {alarm:11.1f}  {done:15.1f}")


def main() -> int:
    """Run the demo for `--minutes`, print its timeline."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=11.0)
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELEMATICS_")}
    env.update(
        TELEMATICS_DATA_DIR=tempfile.mkdtemp(prefix="first-look-"),
        TELEMATICS_HTTP_PORT="0",
        TELEMATICS_EMBEDDED_DB_PORT="0",
        TELEMATICS_EMBEDDED_MQTT_PORT="0",
    )
    demo = subprocess.Popen(
        [sys.executable, "-m", "telematics", "demo"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert demo.stdout is not None
    timeline, next_poll = _Timeline(), 0.0
    with selectors.DefaultSelector() as sel:
        sel.register(demo.stdout, selectors.EVENT_READ)
        while timeline.at() < args.minutes * 60:
            for _ in sel.select(timeout=0.5):
                timeline.read(demo.stdout.readline())
            if timeline.at() >= next_poll:
                next_poll = timeline.at() + 2.0
                timeline.dispatch_new_alarms()
    demo.send_signal(signal.SIGINT)
    out, _ = demo.communicate(timeout=60)
    print(f"\ndemo exit {demo.returncode}, stopped cleanly: {'stopped cleanly' in out}")
    timeline.summary()
    return 0


if __name__ == "__main__":
    sys.exit(main())
