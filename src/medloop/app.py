"""FastAPI application factory."""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import Engine, text
from starlette.exceptions import HTTPException as StarletteHTTPException

from medloop.errors import PayloadTooLarge, Problem, error_summary, field_errors
from medloop.logging import configure_logging
from medloop.settings import Settings, get_settings
from medloop.store.engine import make_engine, session_factory

log = logging.getLogger("medloop.app")

PROBLEM_JSON = "application/problem+json"
FHIR_JSON = "application/fhir+json"

_STATUS_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    406: "Not acceptable",
    409: "Conflict",
    413: "Payload too large",
    415: "Unsupported media type",
    422: "Unprocessable content",
    429: "Too many requests",
}
_FHIR_CODES = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    409: "conflict",
    412: "conflict",
    413: "too-costly",
    422: "processing",
}


def _is_fhir(request: Request) -> bool:
    return request.url.path == "/fhir" or request.url.path.startswith("/fhir/")


def operation_outcome(
    status: int, detail: str, code: str | None = None, errors: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    issues: list[dict[str, Any]] = [
        {"severity": "error", "code": code or _FHIR_CODES.get(status, "processing"), "diagnostics": detail}
    ]
    for err in errors or []:
        issues.append(
            {
                "severity": "error",
                "code": "invalid",
                "diagnostics": err.get("msg", str(err)),
                "expression": [err["loc"]] if err.get("loc") else [],
            }
        )
    return {"resourceType": "OperationOutcome", "issue": issues}


def error_response(
    request: Request,
    status: int,
    detail: str,
    *,
    code: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    extra: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    if _is_fhir(request):
        return JSONResponse(
            operation_outcome(status, detail, code, errors),
            status_code=status,
            media_type=FHIR_JSON,
            headers=headers,
        )
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": _STATUS_TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "instance": request.url.path,
    }
    if errors:
        body["errors"] = errors
    body.update(extra or {})
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


async def _problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Problem)
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return error_response(
        request, exc.status, exc.detail, code=exc.code, errors=exc.errors, extra=exc.extra, headers=headers
    )


async def _validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = field_errors(exc.errors(), drop="body")
    if any(e["type"] == "json_invalid" for e in errors):
        return error_response(request, 400, "request body is not valid JSON", code="structure", errors=errors)
    return error_response(
        request, 422, "request failed validation: " + error_summary(errors, whole="body"), errors=errors
    )


async def _http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else "request failed"
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"no such endpoint: {request.method} {request.url.path}"
    return error_response(request, exc.status_code, detail, headers=getattr(exc, "headers", None))


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    # Never a stack trace to the client, and no request data in the log: only the type and path.
    log.error("unhandled error", extra={"error_type": type(exc).__name__, "path": request.url.path})
    return error_response(request, 500, "internal error; it has been logged")


ASGIApp = Callable[
    [MutableMapping[str, Any], Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]],
    Awaitable[None],
]


class BodyLimit:
    """Refuses request bodies over the limit with 413, whether Content-Length says so or not."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(
        self,
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[Any]],
        send: Callable[[Any], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._reject(scope, receive, send)
            return
        seen = 0

        async def limited() -> Any:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise PayloadTooLarge(f"request body exceeds {self.max_bytes} bytes")
            return message

        await self.app(scope, limited, send)

    async def _reject(
        self,
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[Any]],
        send: Callable[[Any], Awaitable[None]],
    ) -> None:
        request = Request(scope, receive)
        response = error_response(request, 413, f"request body exceeds {self.max_bytes} bytes")
        await response(scope, receive, send)


class AccessLog:
    """One structured line per request: method, route template, status and duration. No query
    string, body or headers: those can carry names and identifiers."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.log = logging.getLogger("medloop.access")

    async def __call__(
        self,
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[Any]],
        send: Callable[[Any], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def capture(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            route = scope.get("route")
            self.log.info(
                "request",
                extra={
                    "method": scope["method"],
                    "route": getattr(route, "path", "unmatched"),
                    "status": status,
                    "ms": round((time.perf_counter() - started) * 1000, 1),
                },
            )


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Everything loaded by start-up (modules, the unit registry, the FHIR models, the routes)
    lives as long as the process: freeze it out of the garbage collector's way, so that a full
    collection walks only what requests create. Unfrozen, one full collection cost ~120 ms and set
    the p95 of the heavier pages (`bench/web.py`)."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def create_app(settings: Settings | None = None, engine: Engine | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_level, settings.log_json)
    app = FastAPI(
        title="medloop",
        version="0.1.0",
        description="Whole-course chronic-disease care: network, devices, screening, programmes, FHIR R4.",
        lifespan=_lifespan,
    )
    app.state.settings = settings
    app.state.engine = engine or make_engine(settings.database_url)
    app.state.sessions = session_factory(app.state.engine)
    if settings.secret_key.startswith("medloop-dev-secret"):
        log.warning("using the development signing key; set MEDLOOP_SECRET_KEY in production")

    app.add_exception_handler(Problem, _problem)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(Exception, _unexpected)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(AccessLog)

    @app.get("/health", tags=["ops"])
    def health() -> dict[str, str]:
        with app.state.engine.connect() as conn:
            conn.execute(text("select 1"))
        return {"status": "ok", "database": app.state.engine.dialect.name}

    _include_routers(app)
    return app


def _include_routers(app: FastAPI) -> None:
    from medloop.auth.api import router as auth_router
    from medloop.network.api import router as network_router
    from medloop.people.api import router as people_router

    app.include_router(auth_router)
    app.include_router(network_router)
    app.include_router(people_router)
    # Domain routers are included below (one import and one line each).
    from medloop.devices.api import router as devices_router

    app.include_router(devices_router)
    from medloop.screening.api import router as screening_router

    app.include_router(screening_router)
    from medloop.fhir.api import router as fhir_router

    app.include_router(fhir_router)
    from medloop.web.pages import root_router as web_root_router
    from medloop.web.pages import router as web_router

    app.include_router(web_router)
    app.include_router(web_root_router)
    from medloop.programs.api import router as programs_router

    app.include_router(programs_router)
