"""The HTTP application with every capability's routes: part of the composition root.

`api.app.create_app` builds the core API (machines, alarms, orders, resources, ingestion). The
capabilities that sit above `api/` (customer summaries, maintenance, notifications, the
monitoring desk and service quality, AEMP, the console) bring routers of their own; this is the
one place that mounts them, for the service and for the tests alike.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

from telematics.aemp import admin as aemp_admin
from telematics.aemp import feed as aemp_feed
from telematics.aemp import oauth as aemp_oauth
from telematics.aemp import sources_admin as aemp_sources
from telematics.api import board, dispatch_advice
from telematics.api.app import create_app
from telematics.api.context import ApiContext
from telematics.console.routes import console_router
from telematics.maintenance.router import router as maintenance_router
from telematics.notices.api import router as notices_router
from telematics.quality import desk_api, kpi_api, regions_api, satisfaction_api
from telematics.summaries.router import router as summaries_router


def capability_routers() -> list[APIRouter]:
    """The routers of the capabilities above `api/`, in the order they are mounted."""
    return [
        summaries_router,
        maintenance_router,
        notices_router,
        desk_api.router,
        satisfaction_api.router,
        kpi_api.router,
        regions_api.router,
        aemp_admin.router,
        aemp_sources.router,
        dispatch_advice.router,
        board.router,
        console_router(),
    ]


def prefixed_routers() -> list[APIRouter]:
    """Routers mounted under a prefix the settings choose: the AEMP feed and its token
    endpoint, under `TELEMATICS_AEMP_PREFIX`.
    """
    return [aemp_oauth.router, aemp_feed.router]


def build_app(ctx: ApiContext) -> FastAPI:
    """The service's HTTP application: the core API and every capability's routes."""
    app = create_app(ctx)
    for router in capability_routers():
        app.include_router(router)
    for router in prefixed_routers():
        app.include_router(router, prefix=ctx.settings.aemp_prefix)
    return app
