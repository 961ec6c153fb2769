"""The FastAPI application: routers, the one error handler, health.

The composition root of the web front-ends (the API and the console); how a server process runs
it (workers, garbage collector) is :mod:`sae.process`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from sae import __version__
from sae.config import Settings, get_settings
from sae.errors import SAEError
from sae.logs import RequestIdMiddleware
from sae.runtime import Runtime

log = logging.getLogger("sae.app")
PROBLEM = "application/problem+json"


def problem_response(doc: dict[str, Any], status: int) -> JSONResponse:
    return JSONResponse(doc, status_code=status, media_type=PROBLEM)


async def _sae_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, SAEError)
    doc = exc.problem()
    doc["instance"] = request.url.path
    if exc.status >= 500:
        log.error("%s on %s: %s", exc.code, request.url.path, exc.detail)
    response = problem_response(doc, exc.status)
    retry_after = exc.extra.get("retry_after")
    if isinstance(retry_after, int):  # a 429 (or 503) that knows when to come back
        response.headers["Retry-After"] = str(retry_after)
    return response


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"where": ".".join(str(p) for p in e.get("loc", ())), "message": str(e.get("msg"))}
        for e in exc.errors()
    ]
    return problem_response(
        {
            "type": "urn:sae:error:request.invalid_parameters",
            "title": "Invalid request parameters",
            "status": 422,
            "detail": "; ".join(f"{e['where']}: {e['message']}" for e in errors),
            "code": "request.invalid_parameters",
            "errors": errors,
            "instance": request.url.path,
        },
        422,
    )


async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    # The database refused or dropped the connection, or stayed locked past the timeout: an
    # outage to wait out, not a bug of the request. What the request had begun in the database
    # was rolled back with its session (a deposit's copies are discarded by the ingest itself).
    log.error("database unavailable on %s %s: %s", request.method, request.url.path, exc)
    response = problem_response(
        {
            "type": "urn:sae:error:service.database_unavailable",
            "title": "Database unavailable",
            "status": 503,
            "detail": "the database cannot be reached or stayed busy; retry later",
            "code": "service.database_unavailable",
            "instance": request.url.path,
        },
        503,
    )
    response.headers["Retry-After"] = "30"
    return response


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return problem_response(
        {
            "type": f"urn:sae:error:{code}",
            "title": str(exc.detail),
            "status": exc.status_code,
            "detail": str(exc.detail),
            "code": code,
            "instance": request.url.path,
        },
        exc.status_code,
    )


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    # A bug: log it with its traceback, answer a problem document without internals.
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return problem_response(
        {
            "type": "urn:sae:error:internal",
            "title": "Internal error",
            "status": 500,
            "detail": "an unexpected error occurred; it has been logged",
            "code": "internal",
            "instance": request.url.path,
        },
        500,
    )


def api_router() -> APIRouter:
    """Every ``/api/v1`` route."""
    from sae.access.api import router as access_router
    from sae.auth.api import router as auth_router
    from sae.catalog.api import router as catalog_router
    from sae.contracts.api import router as contracts_router
    from sae.ingest.api import router as ingest_router
    from sae.journal.api import router as journal_router
    from sae.retention.api import disposal_router
    from sae.retention.api import router as rules_router
    from sae.storage.api import router as storage_router

    router = APIRouter(prefix="/api/v1")
    subs = (
        ingest_router,
        catalog_router,
        access_router,
        rules_router,
        contracts_router,
        disposal_router,
        storage_router,
        journal_router,
        auth_router,
    )
    for sub in subs:
        router.include_router(sub)
    return router


def _witnessing(rt: Runtime) -> dict[str, Any]:
    """``/health``'s witnessing: the latest witnessed size and its age; failing when the latest
    head has waited too long for its quorum (``sae.journal.witnessing.witness_status``)."""
    from sae.journal.witnessing import witness_status

    assert rt.witnesses is not None
    try:
        with rt.sessions() as session:
            status = witness_status(session, rt.witnesses, rt.settings)
    except Exception as exc:  # health must report, not raise
        return {"ok": False, "detail": type(exc).__name__}
    age = status.age_seconds()
    return {
        "ok": status.ok,
        "detail": status.detail(),
        "quorum": status.quorum,
        "witnesses": status.witnesses,
        "witnessed_size": status.witnessed_size,
        "witnessed_age_seconds": round(age, 1) if age is not None else None,
        "latest_size": status.latest_size,
    }


class SaeApp(FastAPI):
    """FastAPI with the request id outermost: every line logged while a request is served,
    and its answer (a 500 of the error middleware included), carry it (``sae.logs``)."""

    def build_middleware_stack(self) -> Any:
        from sae.http_security import SecurityHeadersMiddleware

        inner = SecurityHeadersMiddleware(super().build_middleware_stack(), self)
        return RequestIdMiddleware(inner)


def _load_identifier() -> None:
    from sae.ingest.identify import identifier

    try:
        identifier()
    except Exception:  # the first deposit tries again and refuses with the cause
        log.exception("identify.load_failed")


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> FastAPI:
    """The SAE application; opens its runtime (database, offers) at startup."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from sae.background import start_background
        from sae.journal.keys import tsa_health

        own = app.state.runtime is None
        if own:
            app.state.runtime = Runtime.open(settings or get_settings())
        runtime: Runtime = app.state.runtime
        runtime.health_checks["tsa"] = lambda: tsa_health(runtime.settings)
        # Heads are sealed after each transfer, and at least every SAE_SEAL_INTERVAL_MINUTES
        # while events arrive (reads, audits…): the database makes one instance seal at a time.
        background = start_background(runtime)
        # PRONOM's signatures (0.3 s of CPU, more under load) read beside the start rather than
        # by the first deposit, which waited for them (with every deposit that came meanwhile).
        threading.Thread(target=_load_identifier, name="sae-identify-load", daemon=True).start()
        try:
            yield
        finally:
            background.stop()
            if own:
                runtime.close()

    app = SaeApp(
        title="SAE — système d'archivage électronique",
        version=__version__,
        summary="SEDA 2.x ingest, write-once storage on French territory, provable journal.",
        lifespan=lifespan,
        # Served by sae.http_security without inline script (the CSP allows none).
        docs_url=None,
        redoc_url=None,
    )
    app.state.runtime = runtime
    app.add_exception_handler(SAEError, _sae_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(OperationalError, _database_unavailable)
    app.add_exception_handler(Exception, _unexpected)
    app.include_router(api_router())
    from sae.pastell.api import CollapseSlashes
    from sae.pastell.api import router as pastell_router

    # Pastell's as@lae connector (docs/pastell.md), where its URL points (/restservices).
    pastell_prefix = (runtime.settings if runtime else settings or get_settings()).pastell_prefix
    app.include_router(pastell_router, prefix=pastell_prefix)
    app.add_middleware(CollapseSlashes, prefix=pastell_prefix)
    from sae.console import console_router  # the web console: /console, and / redirects there

    app.include_router(console_router)
    from sae.http_security import docs_init, docs_page

    app.add_api_route("/docs", docs_page, methods=["GET"], include_in_schema=False)
    app.add_api_route("/docs/swagger-init.js", docs_init, methods=["GET"], include_in_schema=False)

    @app.get("/health", tags=["health"])
    def health(request: Request) -> JSONResponse:
        """200 when the database, every offer and the TSA answer; 503 naming what does not."""
        rt: Runtime = request.app.state.runtime
        db_ok, db_detail = rt.database_ok()
        from sae.storage.offers import offers_health

        offers = offers_health(list(rt.offer_set.offers.values()))
        failing = [] if db_ok else ["database"]
        failing += [f"offer:{o.name}" for o in offers if not o.ok]
        extra: dict[str, Any] = {}
        for name, check in rt.health_checks.items():
            ok, detail = check()
            extra[name] = {"ok": ok, "detail": detail}
            if not ok:
                failing.append(name)
        if rt.witnesses is not None:
            witnessing = _witnessing(rt)
            extra["witnesses"] = witnessing
            if not witnessing["ok"]:
                failing.append("witnesses")
        body = {
            "status": "ok" if not failing else "unavailable",
            "version": __version__,
            "database": {"ok": db_ok, "detail": db_detail},
            "offers": [
                {
                    "name": o.name,
                    "kind": o.kind,
                    "jurisdiction": o.jurisdiction,
                    "site": o.site,
                    "ok": o.ok,
                    "detail": o.detail,
                }
                for o in offers
            ],
            **extra,
            "failing": failing,
        }
        return JSONResponse(body, status_code=200 if not failing else 503)

    @app.get("/metrics", tags=["health"], response_class=Response)
    def metrics(request: Request) -> Response:
        """Prometheus metrics (text exposition format); ``Authorization: Bearer`` with
        ``SAE_METRICS_TOKEN`` or an admin token. Names and labels: docs/operations.md."""
        from sae.metrics import CONTENT_TYPE, authorize_scrape, render

        rt: Runtime = request.app.state.runtime
        authorize_scrape(rt, request.headers.get("authorization", ""))
        return Response(render(rt), media_type=CONTENT_TYPE)

    return app
