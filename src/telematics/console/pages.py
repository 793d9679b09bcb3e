"""The console's page, its scripts, styles and strings, with headers that keep it on this host.

Every answer carries a Content-Security-Policy that lets the page load and connect to its own
origin only, so a console page cannot make a request leave the host even if a library tried.
Files are served from a fixed list (no path from the URL ever reaches the file system).
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Cookie, Header, Query
from fastapi.responses import Response

from telematics.api.context import Context
from telematics.base.config import Settings
from telematics.base.errors import NotFoundError
from telematics.console import language

router = APIRouter(prefix="/console", include_in_schema=False)

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",
}

_JS, _CSS = "text/javascript; charset=utf-8", "text/css; charset=utf-8"
# Name in the URL -> (file under static/, media type).
ASSETS: dict[str, tuple[str, str]] = {
    "app.js": ("app.js", _JS),
    "api.js": ("api.js", _JS),
    "queue.js": ("queue.js", _JS),
    "alarm.js": ("alarm.js", _JS),
    "chart.js": ("chart.js", _JS),
    "orders.js": ("orders.js", _JS),
    "fleet.js": ("fleet.js", _JS),
    "centre.js": ("centre.js", _JS),
    "board.js": ("board.js", _JS),
    "desk.js": ("desk.js", _JS),
    "map.js": ("map.js", _JS),
    "kpi.js": ("kpi.js", _JS),
    "console.css": ("console.css", _CSS),
    "uplot.js": ("vendor/uplot.js", _JS),
    "uplot.css": ("vendor/uplot.css", _CSS),
    # The engineer's route sketch and the customer's pages (machine, service orders, survey).
    "route.js": ("route.js", _JS),
    "customer.js": ("customer.js", _JS),
    "machine.js": ("machine.js", _JS),
    "summary-charts.js": ("summary-charts.js", _JS),
    "service.js": ("service.js", _JS),
    "survey.js": ("survey.js", _JS),
}


def _static(name: str) -> bytes:
    path = resources.files(__package__).joinpath("static", *name.split("/"))
    if not path.is_file():
        # Only the vendored libraries can be missing: scripts/build-console was not run.
        raise NotFoundError("console asset (run scripts/build-console)", name)
    return path.read_bytes()


def page_headers(settings: Settings) -> dict[str, str]:
    """The page's headers: with a tile server configured, its origin may serve images too."""
    if settings.console_tile_url is None:
        return SECURITY_HEADERS
    parts = urlsplit(settings.console_tile_url)
    origin = f"{parts.scheme}://{parts.netloc}"
    return {**SECURITY_HEADERS, "Content-Security-Policy": CSP.replace(
        "img-src 'self' data:", f"img-src 'self' data: {origin}")}  # fmt: skip


@router.get("")
async def page(ctx: Context) -> Response:
    """The console: one page whose scripts draw every view."""
    return Response(_static("index.html"), media_type="text/html; charset=utf-8",
                    headers=page_headers(ctx.settings))  # fmt: skip


@router.get("/config")
async def config(ctx: Context) -> Response:
    """What the page's views need from the settings: the map's tile server, if any."""
    body = {"tile_url": ctx.settings.console_tile_url,
            "tile_attribution": ctx.settings.console_tile_attribution}  # fmt: skip
    return Response(json.dumps(body), media_type="application/json", headers=SECURITY_HEADERS)


@router.get("/assets/{name}")
async def asset(name: str) -> Response:
    """A script or style of the console, ours or a vendored library's.

    Raises:
        NotFoundError: Not one of the console's files.
    """
    if name not in ASSETS:
        raise NotFoundError("console asset", name[:100])
    file, media_type = ASSETS[name]
    return Response(_static(file), media_type=media_type, headers=SECURITY_HEADERS)


@router.get("/strings")
async def strings(
    lang: Annotated[str | None, Query(max_length=20)] = None,
    saved: Annotated[str | None, Cookie(alias=language.LANG_COOKIE)] = None,
    accept_language: Annotated[str | None, Header()] = None,
) -> Response:
    """The strings of the asked, saved or browser's language, and the languages there are."""
    chosen = language.choose(lang if lang in language.LANGUAGES else saved, accept_language)
    body = {"lang": chosen, "languages": list(language.LANGUAGES),
            "strings": language.strings(chosen)}  # fmt: skip
    return Response(json.dumps(body, ensure_ascii=False), media_type="application/json",
                    headers=SECURITY_HEADERS)  # fmt: skip
