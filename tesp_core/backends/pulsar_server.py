"""Run Pulsar's own WSGI application on loopback: ``python -m tesp_core.backends.pulsar_server``.

This is the embedded Pulsar TESP starts when no external Pulsar URL is configured. It is the
real Pulsar (``pulsar.web.wsgi.init_webapp``, its managers and job directories), served by
the standard library's threaded WSGI server instead of gunicorn, so that one request does not
wait for another and no extra dependency is needed. The bound port is printed on stdout as
``PULSAR_PORT <n>`` once the server accepts connections.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from tesp_core.storage.redact import redact_text


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    # Pulsar requests are short; a deep backlog absorbs bursts of submissions.
    request_queue_size = 128


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        # The request line carries Pulsar's private_token: never print it.
        logging.getLogger("tesp.pulsar.access").debug(redact_text(format % args))


_WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def answer_http_exceptions(app: _WSGIApp) -> _WSGIApp:
    """Serve the HTTP errors Pulsar raises instead of letting them escape as tracebacks.

    Pulsar's file download route raises webob's ``HTTPNotFound`` for a file that does not
    exist yet (TESP polls for the worker's ``progress.json`` and ``result.json``), outside
    the controller's own ``try``; wsgiref would print a full traceback and answer 500. An
    ``HTTPException`` is itself a WSGI response: it is served as such (404 here), with one
    debug line. Any other exception still propagates and is logged with its traceback.
    """
    from webob.exc import HTTPException  # type: ignore[import-untyped]  # no stubs

    access = logging.getLogger("tesp.pulsar.access")

    def wrapped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        try:
            return app(environ, start_response)
        except HTTPException as exc:
            access.debug(
                "%s %s: %s",
                environ.get("REQUEST_METHOD"),
                environ.get("PATH_INFO"),
                redact_text(str(exc)),
            )
            response: Iterable[bytes] = exc(environ, start_response)
            return response

    return wrapped


def main(argv: list[str] | None = None) -> None:
    """Start Pulsar from an app.yml and serve it until killed."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--app-conf", required=True, help="Pulsar app.yml")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s [%(name)s] %(message)s"
    )
    from pulsar.web.wsgi import init_webapp

    app = init_webapp(app_conf_path=args.app_conf)
    server = make_server(
        args.host,
        args.port,
        answer_http_exceptions(app),
        server_class=_ThreadingWSGIServer,
        handler_class=_QuietHandler,
    )
    print(f"PULSAR_PORT {server.server_port}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        app.shutdown()


if __name__ == "__main__":
    main()
