"""The FastAPI application: routes of TES 1.1 over a :class:`TaskService`.

No ``from __future__ import annotations`` here: FastAPI must see the real annotation
objects of the route functions, whose dependencies are local to :func:`_router`.
"""

import json
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from starlette.convertors import Convertor, register_url_convertor

from tesp_core import __version__
from tesp_core.config import Settings
from tesp_core.errors import InvalidTaskError, shorten
from tesp_core.models import ServiceInfo, State, View, render
from tesp_core.models.service_info import Organization
from tesp_core.models.views import render_document
from tesp_core.policy import backend_parameters
from tesp_core.runtime import storage_listing
from tesp_core.server.auth import ANONYMOUS_ADMIN, Principal, build_authenticator
from tesp_core.server.dashboard import mount_dashboard
from tesp_core.server.errors import install_error_handlers
from tesp_core.server.ops import install_ops
from tesp_core.service import TaskService
from tesp_core.storage.redact import redact_url
from tesp_core.store.base import ListQuery

BASE_PATHS = ("/ga4gh/tes/v1", "/v1")


class _TaskIdConvertor(Convertor[str]):
    """A task id: no '/' and no ':' (so ``/tasks/{id}:cancel`` is never a GET of a task)."""

    regex = "[^/:]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("task_id", _TaskIdConvertor())


def create_app(service: TaskService, settings: Settings) -> FastAPI:
    """A TES server over ``service``. The caller owns the service's lifecycle."""
    app = FastAPI(
        title="TESP",
        version=__version__,
        description="GA4GH Task Execution Service 1.1 on Pulsar",
        docs_url="/ga4gh/tes/v1/ui",
        openapi_url="/ga4gh/tes/v1/openapi.json",
    )
    app.state.service = service
    install_error_handlers(app)
    install_ops(app, service, settings)
    router = _router(service, settings)
    for base in BASE_PATHS:
        app.include_router(router, prefix=base, include_in_schema=base == BASE_PATHS[0])
    mount_dashboard(app)
    return app


def _service_info(settings: Settings) -> dict[str, Any]:
    info = ServiceInfo(
        id=settings.service_id,
        name=settings.service_name,
        description="TESP: GA4GH TES 1.1 on Galaxy's Pulsar",
        organization=Organization(name=settings.organization_name, url=settings.organization_url),
        documentationUrl=settings.documentation_url,
        createdAt=datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
        environment=settings.service_environment,
        version=__version__,
        storage=storage_listing(settings),
        tesResources_backend_parameters=list(backend_parameters(settings.has_scheduler())),
    )
    return info.model_dump(exclude_none=True)


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, refused as soon as it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise InvalidTaskError("body", f"larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise InvalidTaskError("body", f"larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _reject_constant(name: str) -> None:
    # NaN and Infinity are not JSON, though Python's parser accepts them.
    raise ValueError(f"{name} is not a JSON value")


def _view(value: str | None) -> View:
    try:
        return View(value or "MINIMAL")
    except ValueError as exc:
        raise InvalidTaskError("view", "must be one of MINIMAL, BASIC, FULL") from exc


def _state(value: str | None) -> State | None:
    if not value:
        return None
    try:
        return State(value)
    except ValueError as exc:
        raise InvalidTaskError("state", f"unknown state {shorten(value)!r}") from exc


def _router(service: TaskService, settings: Settings) -> APIRouter:
    router = APIRouter()
    info = _service_info(settings)
    authenticator = build_authenticator(settings)

    async def principal(
        authorization: Annotated[str | None, Header()] = None,
    ) -> Principal:
        if authenticator is None:
            return ANONYMOUS_ADMIN
        # Password hashing and JWKS fetches block: keep them off the event loop.
        return await run_in_threadpool(authenticator.authenticate, authorization)

    Caller = Annotated[Principal, Depends(principal)]

    @router.get("/service-info", tags=["TaskService"])
    async def get_service_info() -> JSONResponse:
        """GA4GH service-info of this TES."""
        return JSONResponse(info)

    @router.post("/tasks", tags=["TaskService"])
    async def create_task(request: Request, caller: Caller) -> JSONResponse:
        """Create a task; answers ``{"id": ...}``."""
        raw = await _read_body(request, settings.max_body_bytes)
        try:
            body = json.loads(raw, parse_constant=_reject_constant)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidTaskError("body", f"not valid JSON: {exc}") from exc
        except RecursionError as exc:
            raise InvalidTaskError("body", "nested too deeply") from exc
        if not isinstance(body, dict):
            raise InvalidTaskError("body", "must be a JSON object (a tesTask)")
        task_id = await run_in_threadpool(service.create_task, body, caller.name)
        return JSONResponse({"id": task_id})

    @router.get("/tasks", tags=["TaskService"])
    async def list_tasks(
        caller: Caller,
        name_prefix: str | None = None,
        state: str | None = None,
        tag_key: Annotated[list[str] | None, Query()] = None,
        tag_value: Annotated[list[str] | None, Query()] = None,
        page_size: int = 256,
        page_token: str | None = None,
        view: str | None = None,
    ) -> JSONResponse:
        """List tasks, newest first, filtered and paged."""
        keys, values = tag_key or [], tag_value or []
        if len(values) > len(keys):
            raise InvalidTaskError("tag_value", "more tag_value than tag_key parameters")
        chosen = _view(view)
        query = ListQuery(
            name_prefix=name_prefix,
            state=_state(state),
            tags=[(k, values[i] if i < len(values) else "") for i, k in enumerate(keys)],
            page_size=page_size,
            page_token=page_token or None,
            owner=caller.owner_filter,
            minimal=chosen is View.MINIMAL,
        )
        docs, token = await run_in_threadpool(service.list_documents, query)
        body: dict[str, Any] = {"tasks": [render_document(d, chosen, redact_url) for d in docs]}
        if token:
            body["next_page_token"] = token
        return JSONResponse(body)

    @router.get("/tasks/{task_id:task_id}", tags=["TaskService"])
    async def get_task(task_id: str, caller: Caller, view: str | None = None) -> JSONResponse:
        """One task in the requested view (default MINIMAL)."""
        chosen = _view(view)
        task = await run_in_threadpool(service.get_task, task_id, caller.owner_filter)
        return JSONResponse(render(task, chosen, redact_url=redact_url))

    @router.post("/tasks/{task_id:task_id}:cancel", tags=["TaskService"])
    async def cancel_task(task_id: str, caller: Caller) -> JSONResponse:
        """Cancel a task; a task that already ended is left as it is."""
        await run_in_threadpool(service.cancel_task, task_id, caller.owner_filter)
        return JSONResponse({})

    return router
