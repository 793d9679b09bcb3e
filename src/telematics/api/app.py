"""The FastAPI application: routers, health endpoints, and the one place errors become HTTP.

Errors are answered as RFC 9457 problem details (`application/problem+json`).
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from telematics.api import alarms, ingest, machines, models, orders, resources, tokens
from telematics.api.context import ApiContext, Context
from telematics.base.db import acquire
from telematics.base.errors import (
    AuthError,
    ConflictError,
    ForbiddenError,
    InvalidRequestError,
    NotFoundError,
    StoreUnavailableError,
    TelematicsError,
)

log = logging.getLogger(__name__)

_STATUS: list[tuple[type[TelematicsError], int, str]] = [
    (AuthError, 401, "Unauthorized"),
    (ForbiddenError, 403, "Forbidden"),
    (NotFoundError, 404, "Not Found"),
    (ConflictError, 409, "Conflict"),
    (InvalidRequestError, 422, "Unprocessable Content"),
    (StoreUnavailableError, 503, "Service Unavailable"),
]


def problem(status: int, title: str, detail: str, **extra: object) -> JSONResponse:
    """A problem+json response."""
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status, headers=headers, media_type="application/problem+json")


async def _telematics_error(request: Request, exc: Exception) -> JSONResponse:
    for kind, status, title in _STATUS:
        if isinstance(exc, kind):
            if status >= 500:
                log.warning("%s %s: %s", request.method, request.url.path, exc)
            errors = getattr(exc, "errors", None)
            extra = {"errors": errors} if isinstance(errors, list) else {}
            return problem(status, title, str(exc), **extra)
    log.error("unmapped error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem(500, "Internal Server Error", "unexpected error")


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
        for e in exc.errors()
    ]
    return problem(422, "Unprocessable Content", "request validation failed", errors=errors)


def create_app(ctx: ApiContext) -> FastAPI:
    """Build the HTTP application around the service's shared resources."""
    app = FastAPI(
        title="Telematics",
        version="1",
        description="Telemetry ingestion and remote diagnosis for construction machinery.",
    )
    app.state.ctx = ctx
    app.add_exception_handler(TelematicsError, _telematics_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.include_router(machines.router)
    app.include_router(ingest.router)
    app.include_router(alarms.router)
    app.include_router(models.router)
    app.include_router(tokens.router)
    app.include_router(resources.router)
    app.include_router(orders.router)

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"])
    async def readyz(ctx: Context) -> JSONResponse:
        """Readiness: the database answers and, if it runs here, the gateway holds its session."""
        checks: dict[str, bool] = {}
        try:
            async with acquire(ctx.pool, timeout_s=2.0) as conn:
                await conn.fetchval("SELECT 1", timeout=2.0)
            checks["database"] = True
        except StoreUnavailableError:
            checks["database"] = False
        if ctx.gateway_connected is not None:
            checks["broker"] = ctx.gateway_connected()
        ready = all(checks.values())
        return JSONResponse({"ready": ready, "checks": checks}, 200 if ready else 503)

    @app.get("/metrics", tags=["operations"])
    async def metrics(ctx: Context) -> Response:
        """Prometheus text exposition."""
        return Response(ctx.metrics.render(), media_type="text/plain; version=0.0.4")

    return app
