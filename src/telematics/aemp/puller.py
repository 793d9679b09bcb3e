"""Pull other manufacturers' AEMP feeds into the registry and the readings store.

One poll of a source (`pull_source`):

1. authenticate: OAuth 2.0 client credentials at the source's token URL (HTTP Basic), HTTP
   Basic on every request, or nothing;
2. read `{base}/Fleet/1` (or `/Fleet/0` when page 1 is refused: zero-based feeds), then every
   page its `first` and `next` links lead to, each once, on the source's own host only (a feed
   cannot steer the puller elsewhere), at most `MAX_PAGES` pages of at most `MAX_PAGE_BYTES`;
3. read each page in whatever dialect it speaks (`dialects`); map each machine to the registry
   (`sources.machine_for`: registering new ones under the source's customer);
4. store its elements as readings through the ingest pipeline, as one telemetry message per
   machine: the wire decoder checks them like any device's (range, time, text), `(machine_id,
   ts)` absorbs what an earlier poll stored, and a refused reading is a dead letter.

A page that cannot be read at all, or a machine that cannot be identified, is a dead letter
(`ingest_rejects`, topic `aemp/{source_id}`, reason `aemp_unreadable`, the raw bytes). An HTTP
or network failure ends the poll with its reason in the result. Nothing here raises for what a
feed sends; `run_puller` is the background job that polls the sources as they fall due.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, urljoin, urlsplit

import asyncpg
import httpx
import orjson

from telematics.aemp import sources
from telematics.aemp.dialects import PulledPage, UnreadableFeedError, read_page
from telematics.aemp.sources import Source
from telematics.base.db import acquire
from telematics.base.errors import StoreUnavailableError
from telematics.ingest.pipeline import ingest
from telematics.store.registry import SourceDirectory
from telematics.wire.decode import Limits

log = logging.getLogger(__name__)

MAX_PAGES = 1000
MAX_PAGE_BYTES = 16 * 1024 * 1024
REASON = "aemp_unreadable"
ACCEPT = "application/xml, application/json;q=0.9"


@dataclass(slots=True)
class PullResult:
    """What one poll did."""

    source_id: str
    pages: int = 0
    machines: int = 0
    registered: int = 0
    readings_inserted: int = 0
    readings_duplicate: int = 0
    stale: int = 0
    dead_letters: int = 0
    error: str | None = None
    visited: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line for logs, the CLI and the source's `last_result`."""
        text = (
            f"{self.pages} pages, {self.machines} machines ({self.registered} new), "
            f"{self.readings_inserted} readings stored, {self.readings_duplicate} already "
            f"stored, {self.stale} past retention skipped, {self.dead_letters} dead letters"
        )
        return f"{text}; failed: {self.error}" if self.error else text


class _PullFailedError(Exception):
    """The poll cannot go on (HTTP, network, authentication); the reason is for the result."""


async def _headers(http: httpx.AsyncClient, source: Source) -> dict[str, str]:
    if source.auth in ("basic", "none"):
        return {}  # Basic rides on the client; none needs nothing
    if not source.token_url:
        raise _PullFailedError("oauth source without a token URL")
    answer = await http.post(
        source.token_url,
        data={"grant_type": "client_credentials"},
        auth=httpx.BasicAuth(
            quote(source.username or "", safe=""), quote(source.secret or "", safe="")
        ),
    )
    if answer.status_code != 200:
        raise _PullFailedError(f"token endpoint answered {answer.status_code}")
    try:
        token = orjson.loads(answer.content)["access_token"]
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise _PullFailedError("token endpoint answered no access_token") from exc
    if not isinstance(token, str) or not token or len(token) > 4096:
        raise _PullFailedError("token endpoint answered an unusable access_token")
    return {"Authorization": f"Bearer {token}"}


async def _get(
    http: httpx.AsyncClient, url: str, headers: dict[str, str]
) -> tuple[int, bytes, str]:
    body = bytearray()
    async with http.stream("GET", url, headers={**headers, "Accept": ACCEPT}) as answer:
        async for chunk in answer.aiter_bytes():
            body += chunk
            if len(body) > MAX_PAGE_BYTES:
                raise _PullFailedError(f"{url}: page larger than {MAX_PAGE_BYTES} bytes")
        return answer.status_code, bytes(body), answer.headers.get("content-type", "")


def _same_origin(url: str, base: str) -> bool:
    a, b = urlsplit(url), urlsplit(base)
    return (a.scheme, a.netloc) == (b.scheme, b.netloc)


async def _dead_letter(conn: asyncpg.Connection, source: Source, raw: bytes, detail: str) -> int:
    """Write a dead letter unless the same bytes of the source already wait as one: a feed
    serves the same unreadable machine on every poll, and one letter of it is enough.
    """
    status = await conn.execute(
        "INSERT INTO ingest_rejects (topic, source_id, payload, reason, detail) "
        "SELECT $1, $2, $3, $4, $5 WHERE NOT EXISTS (SELECT 1 FROM ingest_rejects "
        "WHERE reason = $4 AND source_id = $2 AND payload = $3 AND replayed_at IS NULL)",
        f"aemp/{source.source_id}",
        source.source_id,
        raw,
        REASON,
        detail[:1000],
    )
    return int(status.rsplit(" ", 1)[-1])


async def _store_page(
    pool: asyncpg.Pool, source: Source, page: PulledPage, limits: Limits, result: PullResult
) -> None:
    oldest = datetime.now(UTC) - timedelta(milliseconds=limits.retention_ms - 60_000)
    async with acquire(pool) as conn:
        for problem in page.problems:
            result.dead_letters += await _dead_letter(conn, source, problem.raw, problem.reason)
        messages: list[tuple[str, bytes]] = []
        async with conn.transaction():
            for equipment in page.equipment:
                machine_id, registered = await sources.machine_for(conn, source, equipment)
                result.machines += 1
                result.registered += registered
                # A machine idle for months keeps its old snapshot: past retention it is no
                # reading to store (the decoder would refuse it on every poll), only skipped.
                fresh = [(ts, s) for ts, s in equipment.readings.items() if ts >= oldest]
                result.stale += len(equipment.readings) - len(fresh)
                readings = [
                    {"ts": ts.astimezone(UTC).isoformat(), **signals}
                    for ts, signals in sorted(fresh)
                ]
                if readings:
                    payload = orjson.dumps({"readings": readings})
                    messages.append((f"machines/{machine_id}/telemetry", payload))
        if messages:
            batch, written = await ingest(conn, SourceDirectory(), messages, limits=limits)
            result.readings_inserted += written.readings_inserted
            result.readings_duplicate += written.readings_duplicate
            result.dead_letters += written.rejects
            del batch


async def _walk(
    pool: asyncpg.Pool,
    http: httpx.AsyncClient,
    source: Source,
    limits: Limits,
    result: PullResult,
) -> None:
    headers = await _headers(http, source)
    base = source.base_url.rstrip("/")
    first = f"{base}/Fleet/1"
    status, body, content_type = await _get(http, first, headers)
    if status != 200:
        first = f"{base}/Fleet/0"
        status, body, content_type = await _get(http, first, headers)
    queue, seen = [first], {first}
    fetched: tuple[int, bytes, str] | None = (status, body, content_type)
    while queue and result.pages < MAX_PAGES:
        url = queue.pop(0)
        status, body, content_type = fetched or await _get(http, url, headers)
        fetched = None
        if status != 200:
            raise _PullFailedError(f"{url} answered {status}")
        result.pages += 1
        result.visited.append(url)
        try:
            page = read_page(body, content_type)
        except UnreadableFeedError as exc:
            async with acquire(pool) as conn:
                result.dead_letters += await _dead_letter(
                    conn, source, body, f"{url}: {exc.reason}"
                )
            continue
        await _store_page(pool, source, page, limits, result)
        for rel in ("first", "next"):
            href = page.links.get(rel)
            if href is None or (rel == "next" and not page.equipment):
                continue
            target = urljoin(url, href)
            if target not in seen and _same_origin(target, base):
                seen.add(target)
                queue.append(target)


async def pull_source(
    pool: asyncpg.Pool,
    source: Source,
    limits: Limits,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    timeout_s: float = 30.0,
) -> PullResult:
    """Poll one source once and note the outcome on it; never raises for what the feed does.

    Raises:
        StoreUnavailableError: The database could not be reached (the poll is retried later).
    """
    result = PullResult(source.source_id)
    auth = None
    if source.auth == "basic":
        auth = httpx.BasicAuth(source.username or "", source.secret or "")
    try:
        async with httpx.AsyncClient(
            transport=transport, timeout=timeout_s, auth=auth, follow_redirects=False
        ) as http:
            await _walk(pool, http, source, limits, result)
    except _PullFailedError as exc:
        result.error = str(exc)
    except httpx.HTTPError as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    async with acquire(pool) as conn:
        await sources.record_result(conn, source.source_id, result.summary())
    log.info("aemp pull %s: %s", source.source_id, result.summary())
    return result


async def run_puller(
    pool: asyncpg.Pool, limits: Limits, stop: asyncio.Event, *, check_s: float = 30.0
) -> None:
    """Poll each enabled source when it falls due, until `stop` is set."""
    while not stop.is_set():
        try:
            async with acquire(pool) as conn:
                source = await sources.claim_due(conn)
            if source is not None:
                await pull_source(pool, source, limits)
                continue
        except StoreUnavailableError as exc:
            log.warning("aemp puller: %s", exc)
        except Exception:  # a supervisor: one bad poll must not end the job
            log.exception("aemp puller: unexpected error")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), check_s)
