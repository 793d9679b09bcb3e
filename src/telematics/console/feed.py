"""The live alarm feed: server-sent events that tell an open console page the queue changed.

An event carries no alarm, only that the alarms the caller may see changed (and the newest
id): the page then reads `/v1/alarms` with its own filters, so the API's role views stay the
only source of what a person sees. A stream is bounded: per process (`console_streams_max`),
per session, and in time (`console_stream_s`; the browser's EventSource reconnects by itself).
Between polls it holds no database connection. It ends when its session is signed out or its
token revoked (checked every poll), with a `signed-out` event the page acts on.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from telematics.api.context import ApiContext, Caller, Context, session_principal
from telematics.api.session_cookie import ConsoleSession
from telematics.base.db import acquire
from telematics.base.errors import AuthError, ForbiddenError, RefusedError, StoreUnavailableError
from telematics.console.feed_queries import AlarmMark, alarm_mark
from telematics.console.pages import SECURITY_HEADERS
from telematics.store.tokens import Principal, Role

log = logging.getLogger(__name__)
router = APIRouter(prefix="/console", include_in_schema=False)

STREAMS_PER_SESSION = 4
HEARTBEAT_S = 15.0
RETRY_MS = 3000


@dataclass(slots=True)
class StreamSlots:
    """The event streams this process holds, by who holds them."""

    held: Counter[str] = field(default_factory=Counter)

    def take(self, holder: str, most: int) -> None:
        """Count one more stream for `holder`.

        Raises:
            RefusedError: The process or the holder already has as many as allowed.
        """
        if self.held.total() >= most:
            raise RefusedError("the service holds as many console event streams as it may")
        if self.held[holder] >= STREAMS_PER_SESSION:
            raise RefusedError(f"at most {STREAMS_PER_SESSION} event streams per session")
        self.held[holder] += 1

    def give_back(self, holder: str) -> None:
        """One stream of `holder` has ended."""
        self.held[holder] -= 1
        if self.held[holder] <= 0:
            del self.held[holder]


def _slots(request: Request) -> StreamSlots:
    state = request.app.state
    if not hasattr(state, "console_streams"):
        state.console_streams = StreamSlots()
    slots: StreamSlots = state.console_streams
    return slots


def _event(name: str, data: dict[str, object]) -> str:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n"


@dataclass(frozen=True, slots=True)
class _Stream:
    ctx: ApiContext
    caller: Principal
    session: ConsoleSession | None

    async def still_allowed(self) -> bool:
        if self.session is None:
            return True  # a bearer caller: the stream's own time bound applies
        try:
            return await session_principal(self.ctx, self.session) == self.caller
        except AuthError:
            return False

    async def mark(self) -> AlarmMark | None:
        customer = self.caller.subject_id if self.caller.role is Role.CUSTOMER else None
        try:
            async with acquire(self.ctx.pool, timeout_s=self.ctx.acquire_timeout_s) as conn:
                return await alarm_mark(conn, customer)
        except StoreUnavailableError as exc:
            log.warning("console feed: %s", exc)
            return None

    async def events(self) -> AsyncIterator[str]:
        settings = self.ctx.settings
        ends = time.monotonic() + settings.console_stream_s
        last: AlarmMark | None = None
        quiet_since = time.monotonic()
        yield f"retry: {RETRY_MS}\n\n"
        while time.monotonic() < ends:
            if not await self.still_allowed():
                yield _event("signed-out", {})
                return
            mark = await self.mark()
            if mark is not None and mark != last:
                last, quiet_since = mark, time.monotonic()
                yield _event("alarms", {"newest": mark.newest, "recent": mark.recent})
            elif time.monotonic() - quiet_since > HEARTBEAT_S:
                quiet_since = time.monotonic()
                yield ": still here\n\n"
            await asyncio.sleep(settings.console_poll_s)


@router.get("/events")
async def alarm_events(request: Request, ctx: Context, caller: Caller) -> StreamingResponse:
    """Server-sent events: `alarms` whenever the alarms the caller may see change (once at the
    start), `signed-out` when the session ends.

    Raises:
        ForbiddenError: An engineer (the alarm queue is the control centre's and customers').
        RefusedError: Too many streams open.
    """
    if caller.role is Role.ENGINEER:
        raise ForbiddenError("engineers follow their orders, not the alarm queue")
    session: ConsoleSession | None = getattr(request.state, "console_session", None)
    holder = session.session_id if session is not None else caller.actor
    slots = _slots(request)
    slots.take(holder, ctx.settings.console_streams_max)
    stream = _Stream(ctx, caller, session)

    async def body() -> AsyncIterator[str]:
        try:
            async for chunk in stream.events():
                yield chunk
        finally:
            slots.give_back(holder)

    headers = {**SECURITY_HEADERS, "Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return StreamingResponse(body(), media_type="text/event-stream", headers=headers)
