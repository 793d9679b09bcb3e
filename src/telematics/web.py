"""The HTTP application with every capability's routes: part of the composition root.

`api.app.create_app` builds the core API (machines, alarms, orders, resources, ingestion). The
capabilities that sit above `api/` (customer summaries, maintenance, notifications, the
monitoring desk and service quality, AEMP, the console) bring routers of their own; this is the
one place that mounts them, for the service and for the tests alike.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

from telematics.api.app import create_app
from telematics.api.context import ApiContext
from telematics.summaries.router import router as summaries_router


def capability_routers() -> list[APIRouter]:
    """The routers of the capabilities above `api/`, in the order they are mounted."""
    return [summaries_router]


def build_app(ctx: ApiContext) -> FastAPI:
    """The service's HTTP application: the core API and every capability's routes."""
    app = create_app(ctx)
    for router in capability_routers():
        app.include_router(router)
    return app
