"""The web dashboard: static HTML/CSS/JS served at ``/dashboard`` by ``tesp serve``.

The page is plain files shipped in this package (no build step, nothing fetched from
elsewhere at run time). Its script calls the TES REST API of the same origin, so it sees
exactly what the caller's credentials allow; the files themselves are public.

Every dashboard response carries a strict Content-Security-Policy: scripts and styles only
from this origin, no inline script, no frames. Task fields are user input, and the script
renders them as text only; the policy is the second wall should that ever slip.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["CONTENT_SECURITY_POLICY", "DASHBOARD_PATH", "mount_dashboard"]

DASHBOARD_PATH = "/dashboard"
STATIC_DIR = Path(__file__).parent / "static"

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)

_HEADERS: list[tuple[bytes, bytes]] = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    # Revalidate each load, so an upgraded server never runs with a stale script.
    (b"cache-control", b"no-cache"),
]


class _SecurityHeaders:
    """ASGI wrapper that adds the dashboard's security headers to every response."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name for name, _ in _HEADERS}
                kept = [(n, v) for n, v in message.get("headers", []) if n.lower() not in names]
                message["headers"] = [*kept, *_HEADERS]
            await send(message)

        await self._app(scope, receive, send_with_headers)


def mount_dashboard(app: FastAPI) -> None:
    """Serve the dashboard at ``/dashboard/`` (``/dashboard`` redirects there)."""

    @app.api_route(DASHBOARD_PATH, methods=["GET", "HEAD"], include_in_schema=False)
    async def dashboard_root() -> RedirectResponse:
        return RedirectResponse(f"{DASHBOARD_PATH}/", status_code=307)

    files = StaticFiles(directory=STATIC_DIR, html=True)
    app.mount(DASHBOARD_PATH, _SecurityHeaders(files), name="dashboard")
