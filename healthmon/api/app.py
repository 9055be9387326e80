"""The API's ASGI apps: ``/api/v1`` (REST), ``/cds-services`` (CDS Hooks) and the probes.

:func:`build_state` connects one process to its database; :func:`service_routes` gives the
routes that :mod:`healthmon.ui.server` mounts beside the dashboard and that
:func:`create_service_app` serves alone (tests, benchmarks, an API-only process).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.orm import Session, sessionmaker
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from healthmon.api import problems
from healthmon.api.middleware import ApiMiddleware
from healthmon.api.state import ApiState
from healthmon.config import Settings

log = logging.getLogger("healthmon.api")
API_PREFIX = "/api/v1"
CDS_PREFIX = "/cds-services"
VERSION = "1.0.0"


def build_state(settings: Settings | None = None, *, factory: sessionmaker[Session] | None = None) -> ApiState:
    """One process's API state; connects (and migrates) the database unless ``factory`` is given."""
    from healthmon.services.database import connect

    settings = settings or Settings()
    return ApiState(settings=settings, factory=factory if factory is not None else connect(settings))


def _fastapi(state: ApiState, *routers: Any, **options: Any) -> FastAPI:
    """A FastAPI app on this process's state: problem+json errors and the body-size limit. Only
    the REST API publishes an OpenAPI document (``options`` names it)."""
    app = FastAPI(**{"version": VERSION, "docs_url": None, "redoc_url": None, "openapi_url": None,
                     "max_body_size": state.max_body_bytes, **options})
    app.state.healthmon = state
    problems.install(app)
    for router in routers:
        app.include_router(router)
    return app


def create_v1(state: ApiState) -> FastAPI:
    """The REST API, to be mounted at ``/api/v1`` (its OpenAPI document is ``/api/v1/openapi.json``)."""
    from healthmon.api import routes_admin, routes_cases, routes_models, routes_patients

    return _fastapi(
        state, *(module.router for module in (routes_models, routes_cases, routes_patients, routes_admin)),
        title="healthmon API",
        summary="Calibrated risk from clinical notes, its explanations, vitals scores, case review and reports.",
        description="Every route needs `Authorization: Bearer <token>` (an API token of a healthmon account; "
                    "`python -m healthmon users token create NAME`). Errors are `application/problem+json` "
                    "with `expected`, `found` and `fix`.",
        docs_url="/docs", openapi_url="/openapi.json",
    )


def create_cds(state: ApiState) -> FastAPI:
    """The CDS Hooks service, to be mounted at ``/cds-services``."""
    from healthmon.api import cds

    return _fastapi(state, cds.router, title="healthmon CDS Hooks")


async def healthz(request: Request) -> Response:
    """The process is up (no token, database or model touched: a load balancer's liveness probe)."""
    return JSONResponse({"status": "ok"})


def create_probes(state: ApiState) -> FastAPI:
    """``/readyz`` and ``/metrics`` (bearer token like every route but ``/healthz``)."""
    from fastapi import Depends

    from healthmon.api.security import authenticated

    app = _fastapi(state)

    @app.get("/readyz", dependencies=[Depends(authenticated)])
    async def readyz() -> Response:
        """Database reachable, migrations current and the served model loaded: ready for traffic."""
        from healthmon.services.api_calls import resolve_version
        from healthmon.services.database import readiness

        checks: dict[str, Any] = await run_in_threadpool(readiness, state.factory)
        model: dict[str, Any] = {"loaded": False}
        if checks["database"]:
            try:
                folder = await run_in_threadpool(resolve_version, state.factory, state.settings, "active")
                served = await run_in_threadpool(state.model, folder)  # loads it on the first probe
                model = {"loaded": True, "version": served.classifier.name}
            except Exception as exc:  # not ready; say why without a traceback
                model = {"loaded": False, "error": str(exc)}
        checks["model"] = model
        ready = checks["database"] and checks["current"] and model["loaded"]
        return JSONResponse({"status": "ready" if ready else "not ready", **checks}, status_code=200 if ready else 503)

    @app.get("/metrics", dependencies=[Depends(authenticated)])
    async def metrics() -> Response:
        """Prometheus text: requests and latency by route and status, predictions by label, job queue depth."""
        from healthmon.services.jobs import queue_depth

        try:
            depth = await run_in_threadpool(queue_depth, state.factory)
            for name, value in depth.items():
                state.metrics.jobs.labels(name).set(value)
        except Exception:  # the scrape still answers with what this process knows
            log.exception("job queue depth unavailable for /metrics")
        try:
            from healthmon.services.api_calls import resolve_version

            folder = await run_in_threadpool(resolve_version, state.factory, state.settings, "active")
            state.metrics.served.clear()
            state.metrics.served.labels(folder.name).set(1)
        except Exception:  # no served model: the gauge stays empty, /readyz says why
            state.metrics.served.clear()
        return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


class _Discovery:
    """``GET /cds-services`` (no trailing slash, as the CDS Hooks spec writes it) answered by the
    CDS app's own ``/`` route, instead of the mount's redirect that some EHR clients do not follow."""

    def __init__(self, app: Any, prefix: str) -> None:
        self.app, self.prefix = app, prefix

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        root = scope.get("root_path", "") + self.prefix
        await self.app({**scope, "root_path": root, "path": root + "/"}, receive, send)


def service_routes(state: ApiState) -> list[BaseRoute]:
    """Every non-dashboard route of one server process."""
    probes = ApiMiddleware(create_probes(state), state)
    cds = ApiMiddleware(create_cds(state), state)
    return [
        Mount(API_PREFIX, app=ApiMiddleware(create_v1(state), state)),
        Route(CDS_PREFIX, _Discovery(cds, CDS_PREFIX), methods=["GET"]),
        Mount(CDS_PREFIX, app=cds),
        Route("/healthz", healthz, methods=["GET"]),
        # A Route whose endpoint is an ASGI app passes the full path on: the probes app routes it.
        Route("/readyz", probes, methods=["GET"]),
        Route("/metrics", probes, methods=["GET"]),
    ]


def create_service_app(state: ApiState | None = None) -> Starlette:
    """The API and CDS Hooks service without the dashboard."""
    state = state or build_state()
    app = Starlette(routes=service_routes(state))
    app.state.healthmon = state
    return app
