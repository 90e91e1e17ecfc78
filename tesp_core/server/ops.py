"""Operations endpoints: ``/healthz``, ``/readyz`` and ``/metrics``, and request metrics.

- ``/healthz`` (liveness): 200 while the process serves HTTP; it touches nothing else.
- ``/readyz`` (readiness): 200 when the store answers a query and the backend says it is
  healthy; otherwise 503 with a JSON body naming what is not ready (by name only: no URL,
  no exception text, which could hold a credential).
- ``/metrics``: Prometheus text format from the app's own :class:`~tesp_core.metrics.Metrics`.
  Public when ``auth_mode`` is ``none`` or ``metrics_public`` is true; otherwise only a
  principal with the admin role may read it.

No ``from __future__ import annotations`` here: FastAPI must see the real annotations.
"""

import logging
import time
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Header
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tesp_core.config import Settings
from tesp_core.metrics import Metrics
from tesp_core.server.auth import NotAllowedError, build_authenticator
from tesp_core.service import TaskService

log = logging.getLogger(__name__)

# TES routes are served under both base paths; their metrics share one route label.
_TES_BASES = ("/ga4gh/tes/v1", "/v1")


def install_ops(app: FastAPI, service: TaskService, settings: Settings) -> Metrics:
    """Add the ops routes and the request metrics to ``app``; report task events to them."""
    metrics = Metrics(service.store.count_by_state)
    service.hooks = metrics
    app.state.metrics = metrics
    app.include_router(ops_router(service, settings, metrics), include_in_schema=False)
    app.add_middleware(RequestMetrics, metrics=metrics)
    return metrics


def ops_router(service: TaskService, settings: Settings, metrics: Metrics) -> APIRouter:
    """The ``/healthz``, ``/readyz`` and ``/metrics`` routes."""
    router = APIRouter()
    public = settings.auth_mode == "none" or settings.metrics_public
    authenticator = None if public else build_authenticator(settings)

    @router.get("/healthz")
    async def healthz() -> JSONResponse:
        """Liveness: the process answers HTTP."""
        return JSONResponse({"status": "ok"})

    @router.get("/readyz")
    async def readyz() -> JSONResponse:
        """Readiness: the store answers and the backend is healthy."""
        checks, backends = await run_in_threadpool(_readiness, service)
        failing = [name for name, value in checks.items() if value != "ok"]
        body: dict[str, Any] = {"status": "not ready" if failing else "ready", "checks": checks}
        # Each backend's health; ready while at least one is up (tasks can run there).
        body["backends"] = backends
        if failing:
            body["not_ready"] = failing
        return JSONResponse(body, status_code=503 if failing else 200)

    @router.get("/metrics")
    async def get_metrics(
        authorization: Annotated[str | None, Header()] = None,
    ) -> Response:
        """Prometheus metrics (admin only unless public, see docs/operations.md)."""
        if authenticator is not None:
            caller = await run_in_threadpool(authenticator.authenticate, authorization)
            if not caller.is_admin:
                raise NotAllowedError("metrics need the admin role")
        body = await run_in_threadpool(metrics.render)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return router


def _readiness(service: TaskService) -> tuple[dict[str, str], dict[str, str]]:
    """The checks of :func:`readiness` and each backend's health (``ok``/``unreachable``)."""
    try:
        health = service.backend.health()
    except Exception as exc:
        log.warning("readiness: the backend health check raised %s", type(exc).__name__)
        health = dict.fromkeys(service.backend.names, False)
    backends = {name: "ok" if up else "unreachable" for name, up in health.items()}
    checks = readiness(service, any(health.values()))
    return checks, backends


def readiness(service: TaskService, healthy: bool | None = None) -> dict[str, str]:
    """``{"store": ..., "backend": ...}``, each ``"ok"`` or a short reason without details."""
    checks: dict[str, str] = {}
    try:
        service.store.count_by_state()
        checks["store"] = "ok"
    except Exception as exc:  # any failure means not ready; the reason stays generic
        log.warning("readiness: the store failed a query: %s", type(exc).__name__)
        checks["store"] = f"query failed ({type(exc).__name__})"
    if healthy is None:
        try:
            healthy = service.backend.healthy()
        except Exception as exc:
            log.warning("readiness: the backend health check raised %s", type(exc).__name__)
            healthy = False
    checks["backend"] = "ok" if healthy else "not healthy"
    return checks


def route_label(scope: Scope, root_path: str) -> str:
    """The route template that answered (``/tasks/{task_id}``), never the raw path.

    TES routes lose their base path; a mounted app is ``<mount>/*``; no match is
    ``unmatched``.
    """
    route = scope.get("route")
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    if isinstance(template, str):
        for base in _TES_BASES:
            if template.startswith(base + "/"):
                return template[len(base) :]
        return template
    mounted = str(scope.get("root_path", ""))
    if mounted != root_path and mounted.startswith(root_path):
        return mounted[len(root_path) :] + "/*"
    return "unmatched"


class RequestMetrics:
    """ASGI middleware: count each HTTP request and time it, by route template and status."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on, watching the status it is answered with."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        root_path = str(scope.get("root_path", ""))
        start = time.perf_counter()
        status = 500

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            self.metrics.observe_request(
                str(scope["method"]),
                route_label(scope, root_path),
                status,
                time.perf_counter() - start,
            )
