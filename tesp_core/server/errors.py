"""One place that turns the core's error tree (and request validation) into HTTP answers."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from tesp_core.errors import (
    BackendError,
    ForbiddenError,
    InvalidTaskError,
    StoreUnavailableError,
    TaskNotFoundError,
    TespError,
)
from tesp_core.server.auth import AuthError, NotAllowedError

_STATUS: list[tuple[type[TespError], int]] = [
    (InvalidTaskError, 400),
    (TaskNotFoundError, 404),
    (ForbiddenError, 403),
    (BackendError, 503),
    (StoreUnavailableError, 503),
]


def error_body(status: int, message: str, field: str | None = None) -> JSONResponse:
    """The JSON error body every error response uses."""
    body: dict[str, object] = {"status_code": status, "msg": message}
    if field is not None:
        body["field"] = field
    return JSONResponse(body, status_code=status)


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers on ``app``."""

    @app.exception_handler(TespError)
    async def _tesp_error(_: Request, exc: TespError) -> JSONResponse:
        status = next((code for cls, code in _STATUS if isinstance(exc, cls)), 500)
        field = exc.field if isinstance(exc, InvalidTaskError) else None
        return error_body(status, str(exc), field)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        response = error_body(exc.status_code, str(exc.detail))
        if exc.status_code == 405:
            # Starlette names only the first route that matched the path; probe them all.
            methods = [
                method
                for method in ("GET", "POST", "PUT", "PATCH", "DELETE")
                if any(
                    route.matches({**request.scope, "method": method})[0] is Match.FULL
                    for route in app.routes
                )
            ]
            response.headers["Allow"] = ", ".join(methods)
        return response

    @app.exception_handler(AuthError)
    async def _unauthenticated(_: Request, exc: AuthError) -> JSONResponse:
        response = error_body(401, str(exc))
        response.headers["WWW-Authenticate"] = (
            'Basic realm="tes"' if exc.scheme == "basic" else 'Bearer realm="tes"'
        )
        return response

    @app.exception_handler(NotAllowedError)
    async def _forbidden(_: Request, exc: NotAllowedError) -> JSONResponse:
        return error_body(403, str(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        err = exc.errors()[0]
        loc = [str(p) for p in err.get("loc", ()) if p not in ("query", "path", "body")]
        field = ".".join(loc) or "request"
        return error_body(400, f"{field}: {err.get('msg', 'invalid')}", field)
