"""The FastAPI application: routers, health endpoints, and the one place errors become HTTP.

Errors are answered as RFC 9457 problem details (`application/problem+json`), Starlette's own
404 and 405 included, and every operation documents them in the OpenAPI. A client's fault is a
4xx; a 500 means a bug here.
"""

from __future__ import annotations

import logging
import math
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from telematics.api import alarms, ingest, machines, models, orders, resources, tokens
from telematics.api.context import ApiContext, Context
from telematics.api.docs import mount_docs
from telematics.api.request_guard import RequestGuard
from telematics.api.schemas import ProblemOut
from telematics.base.db import acquire
from telematics.base.errors import (
    AuthError,
    ConflictError,
    ForbiddenError,
    InvalidRequestError,
    NotFoundError,
    RateLimitedError,
    RefusedError,
    StoreUnavailableError,
    TelematicsError,
)

log = logging.getLogger(__name__)

_STATUS: list[tuple[type[TelematicsError], int, str]] = [
    (AuthError, 401, "Unauthorized"),
    (ForbiddenError, 403, "Forbidden"),
    (NotFoundError, 404, "Not Found"),
    (ConflictError, 409, "Conflict"),
    (RefusedError, 409, "Conflict"),
    (InvalidRequestError, 422, "Unprocessable Content"),
    (RateLimitedError, 429, "Too Many Requests"),
    (StoreUnavailableError, 503, "Service Unavailable"),
]


# What any operation may answer besides its success: documented on each, as problem+json.
_PROBLEMS = (400, 401, 403, 404, 409, 413, 422, 503)


def problem(
    status: int,
    title: str,
    detail: str,
    *,
    headers: dict[str, str] | None = None,
    errors: list[Any] | None = None,
) -> JSONResponse:
    """A problem+json response."""
    body: dict[str, object] = {"type": "about:blank", "title": title, "status": status}
    body["detail"] = detail
    if errors is not None:
        body["errors"] = errors
    if status == 401:
        headers = {**(headers or {}), "WWW-Authenticate": "Bearer"}
    return JSONResponse(body, status, headers=headers, media_type="application/problem+json")


async def _telematics_error(request: Request, exc: Exception) -> JSONResponse:
    for kind, status, title in _STATUS:
        if isinstance(exc, kind):
            if status >= 500:
                log.warning("%s %s: %s", request.method, request.url.path, exc)
            errors = getattr(exc, "errors", None)
            assert isinstance(exc, TelematicsError)
            headers = None
            if isinstance(exc, RateLimitedError):
                headers = {"Retry-After": str(max(1, math.ceil(exc.retry_after_s)))}
            return problem(
                status,
                title,
                str(exc),
                headers=headers,
                errors=errors if isinstance(errors, list) else None,
            )
    log.error("unmapped error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem(500, "Internal Server Error", "unexpected error")


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    """Starlette's own answers (no such route, method not allowed) in the same shape."""
    assert isinstance(exc, StarletteHTTPException)
    title = HTTPStatus(exc.status_code).phrase
    detail = exc.detail if isinstance(exc.detail, str) else title
    return problem(exc.status_code, title, detail, headers=dict(exc.headers or {}))


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem(500, "Internal Server Error", "unexpected error")


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
        for e in exc.errors()
    ]
    return problem(422, "Unprocessable Content", "request validation failed", errors=errors)


def _document_problems(schema: dict[str, Any]) -> None:
    """Every operation's error answers, as they are sent: problem+json, one schema."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["Problem"] = ProblemOut.model_json_schema(
        ref_template="#/components/schemas/{model}"
    )
    ref = {"$ref": "#/components/schemas/Problem"}
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            responses = operation.setdefault("responses", {})
            for status in _PROBLEMS:
                responses[str(status)] = {
                    "description": HTTPStatus(status).phrase,
                    "content": {"application/problem+json": {"schema": ref}},
                }
    # FastAPI's own 422 shape is never sent.
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)


def _install_openapi(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            _document_problems(FastAPI.openapi(app))
        assert app.openapi_schema is not None
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def create_app(ctx: ApiContext) -> FastAPI:
    """Build the HTTP application around the service's shared resources."""
    app = FastAPI(
        title="Telematics",
        version="1",
        description="Telemetry ingestion and remote diagnosis for construction machinery.",
        docs_url=None,
        redoc_url=None,
    )
    app.state.ctx = ctx
    # Outermost of the app's own layers: bodies are bounded before anything reads them.
    app.add_middleware(RequestGuard, limits=ctx.body_limits)
    app.add_exception_handler(TelematicsError, _telematics_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
    _install_openapi(app)
    mount_docs(app)
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

    @app.get("/readyz", tags=["operations"], responses={503: {"description": "Not ready"}})
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

    @app.get("/metrics", tags=["operations"], response_class=PlainTextResponse)
    async def metrics(ctx: Context) -> Response:
        """Prometheus text exposition."""
        return PlainTextResponse(ctx.metrics.render(), media_type="text/plain; version=0.0.4")

    return app
