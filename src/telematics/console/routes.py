"""The console's routes, as one router for the composition root to mount."""

from __future__ import annotations

from fastapi import APIRouter

from telematics.console import feed, pages, signin


def console_router() -> APIRouter:
    """Every console route: the page and its files, sign-in and out, the live alarm feed."""
    router = APIRouter()
    for part in (pages.router, signin.router, feed.router):
        router.include_router(part)
    return router
