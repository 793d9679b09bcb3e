"""The demo's autopilot: it plays the field engineers, so an order goes through its whole life
without anyone holding the engineer's phone.

Each engineer acts with their own token over the HTTP API, exactly as the engineer's console
page does: an order assigned to them is accepted, travelled to, arrived at and completed (with
the parts that were reserved for it), one step every `step_s` seconds. On the way, the van's
position is published along the order's route (`positions`), so the map and the order's tracking
move, and the arrival is reported at the site. The autopilot only moves
an order that has stayed in a state for `step_s`, so a person who acts on an order in the console
first is never overruled: the autopilot carries on from whatever state it finds. It never
dispatches (the expert does that) and never answers the survey (the customer does).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

import httpx

from telematics.firstlook.positions import Point, PositionPublisher, along

log = logging.getLogger(__name__)

NEXT_ACTION: Final = {
    "dispatched": ("accept", "accepted"),
    "accepted": ("start-travel", "is on the way to"),
    "en_route": ("arrive", "arrived at"),
    "on_site": ("complete", "completed"),
}
"""An open state, the engineer's action that ends it, and how the demo's output says it."""


class Autopilot:
    """Engineers that work their orders by themselves, at the demo's pace."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        engineer_tokens: Mapping[str, str],
        *,
        step_s: float,
        poll_s: float = 2.0,
        say: Callable[[str], None] = lambda line: None,
        vans: PositionPublisher | None = None,
        homes: Mapping[str, Point] | None = None,
    ) -> None:
        """Args:
        http: A client on the API's base URL (no token of its own).
        engineer_tokens: Each engineer's id and bearer token.
        step_s: How long an order stays in a state before the engineer moves it on.
        poll_s: How often the engineers look at their orders.
        say: Where a line for the demo's output goes, one per action.
        vans: Where van positions go on the way; None publishes none.
        homes: Where each engineer's van starts from (else from the route's first stop).
        """
        self._http = http
        self._tokens = dict(engineer_tokens)
        self._step_s = step_s
        self._poll_s = poll_s
        self._say = say
        self._vans = vans
        self._homes = dict(homes or {})
        self._since: dict[tuple[int, str], float] = {}
        self._at_site: set[int] = set()

    async def run(self, stop: asyncio.Event) -> None:
        """Work the orders until `stop` is set; an unreachable API is retried at the next poll."""
        while not stop.is_set():
            try:
                await self.round()
            except httpx.HTTPError as exc:
                log.warning("autopilot: the API did not answer (%s); trying again", exc)
            except Exception:  # a supervisor: one odd answer must not end the autopilot
                log.exception("autopilot: a round failed; trying again")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._poll_s)

    async def round(self) -> int:
        """One look by every engineer at their orders; returns how many actions were taken."""
        acted = 0
        now = time.monotonic()
        for engineer_id, token in self._tokens.items():
            auth = {"Authorization": f"Bearer {token}"}
            answer = await self._http.get("/v1/orders", params={"limit": "100"}, headers=auth)
            if answer.status_code != 200:
                log.warning("autopilot: %s cannot list orders: %s", engineer_id, answer.text)
                continue
            for order in answer.json():
                step = NEXT_ACTION.get(order["state"])
                if step is None:
                    continue
                key = (int(order["order_id"]), str(order["state"]))
                waited_s = now - self._since.setdefault(key, now)
                if order["state"] == "en_route" and not await self._drive(order, waited_s):
                    continue
                if waited_s < self._step_s:
                    continue
                acted += await self._act(engineer_id, auth, order, *step)
        return acted

    async def _drive(self, order: dict[str, Any], waited_s: float) -> bool:
        """Move the van of an order on its way; True once it may report the arrival (at once
        without vans; with them, a poll after the van's position at the site was published).
        """
        if self._vans is None:
            return True
        order_id, engineer_id = int(order["order_id"]), str(order["engineer_id"])
        stops = (order.get("route") or {}).get("stops") or []
        path: list[Point] = [(float(s["lat"]), float(s["lon"])) for s in stops]
        if not path:
            path = [(float(order["site_lat"]), float(order["site_lon"]))]
        path.insert(0, self._homes.get(engineer_id, path[0]))
        fraction = waited_s / self._step_s if self._step_s > 0 else 1.0
        if order_id in self._at_site:
            return True
        if await self._vans.publish(engineer_id, along(path, fraction)) and fraction >= 1:
            self._at_site.add(order_id)
        return False

    async def _act(
        self, engineer_id: str, auth: dict[str, str], order: dict[str, Any], action: str, said: str
    ) -> int:
        order_id = order["order_id"]
        body: dict[str, object] | None = None
        if action == "complete":
            used = [{"part_no": p["part_no"], "quantity": p["quantity"]} for p in order["reserved"]]
            body = {"parts_used": used, "note": "demo autopilot"}
        answer = await self._http.post(f"/v1/orders/{order_id}/{action}", json=body, headers=auth)
        if answer.status_code != 200:
            # Someone else moved the order first (a person in the console, a transfer).
            log.info("autopilot: %s %s on order %s: %s", engineer_id, action, order_id, answer.text)
            return 0
        self._say(f"engineer {engineer_id} {said} order {order_id} ({order['machine_id']})")
        return 1
