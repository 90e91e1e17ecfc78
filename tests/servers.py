"""Real servers on 127.0.0.1 for storage tests: HTTP, FTP and S3 (moto).

Each ``start_*`` context manager starts one server and stops it on exit; nothing is mocked.
The fixtures in ``tests/conftest.py`` and ``tests/integration/storage/conftest.py`` are thin
wrappers, so a module may also start its own (e.g. module-scoped, to configure ``tesp serve``
with the server's address).
"""

from __future__ import annotations

import base64
import logging
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

# -- HTTP ------------------------------------------------------------------------------


@dataclass
class HttpServer:
    """A stdlib HTTP server on loopback serving ``root``: GET (with directory listings),
    PUT (writes files, creating parents), optional Basic/bearer auth, scripted redirects
    and scripted failures. ``requests`` records (method, raw request target, headers).
    """

    root: Path
    base_url: str = ""
    auth: tuple[str, str] | None = None
    bearer: str | None = None
    failures: dict[str, list[int]] = field(default_factory=dict)
    redirects: dict[str, tuple[int, str]] = field(default_factory=dict)
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str = "/") -> str:
        """Absolute URL of ``path`` (which starts with ``/``) on this server."""
        return self.base_url + path

    def fail(self, path: str, times: int, status: int = 500) -> None:
        """Answer the next ``times`` requests for ``path`` with ``status``."""
        self.failures[path] = [status] * times

    def redirect(self, path: str, location: str, status: int = 302) -> None:
        """Answer requests for ``path`` with a redirect to ``location``."""
        self.redirects[path] = (status, location)


class _Handler(SimpleHTTPRequestHandler):
    state: HttpServer  # set on the per-server subclass

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output (and URLs with secrets) out of stderr

    def _authorized(self) -> bool:
        expected = []
        if self.state.auth:
            pair = f"{self.state.auth[0]}:{self.state.auth[1]}".encode()
            expected.append("Basic " + base64.b64encode(pair).decode())
        if self.state.bearer:
            expected.append("Bearer " + self.state.bearer)
        return not expected or self.headers.get("Authorization") in expected

    def _scripted(self) -> bool:
        """Record the request and answer it if a rule says so; True when answered."""
        state = self.state
        with state.lock:
            state.requests.append((self.command, self.path, dict(self.headers.items())))
            pending = state.failures.get(self.path)
            status = pending.pop(0) if pending else None
        if status is not None:
            self.send_error(status)
            return True
        if self.path in state.redirects:
            code, location = state.redirects[self.path]
            self.send_response(code)
            self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return True
        if not self._authorized():
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="tesp"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return True
        return False

    def do_GET(self) -> None:
        if not self._scripted():
            super().do_GET()

    def do_HEAD(self) -> None:
        if not self._scripted():
            super().do_HEAD()

    def do_PUT(self) -> None:
        if self._scripted():
            return
        target = Path(self.translate_path(self.path))
        target.parent.mkdir(parents=True, exist_ok=True)
        remaining = int(self.headers.get("Content-Length", "0"))
        with open(target, "wb") as fh:
            while remaining > 0:
                chunk = self.rfile.read(min(remaining, 1024 * 1024))
                if not chunk:
                    break
                fh.write(chunk)
                remaining -= len(chunk)
        self.send_response(201)
        self.send_header("Content-Length", "0")
        self.end_headers()


@contextmanager
def start_http(root: Path, **options: Any) -> Iterator[HttpServer]:
    """An :class:`HttpServer` serving ``root`` (``options``: its auth/bearer fields)."""
    root.mkdir(parents=True, exist_ok=True)
    state = HttpServer(root=root, **options)
    handler = type("Handler", (_Handler,), {"state": state})

    def factory(*args: Any, **kwargs: Any) -> _Handler:
        return handler(*args, directory=str(root), **kwargs)  # type: ignore[no-any-return]

    server = ThreadingHTTPServer(("127.0.0.1", 0), factory)
    server.daemon_threads = True
    state.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


# -- FTP -------------------------------------------------------------------------------

FTP_USER = "alice"
FTP_PASSWORD = "s3cr3t-ftp-pw"


@dataclass
class FtpServer:
    """A pyftpdlib server on loopback: ``alice`` (read/write) and anonymous (read-only)
    share ``root``. With ``mlsd=False`` the server refuses MLSD, as old servers do.
    """

    root: Path
    host: str
    port: int

    def url(self, path: str = "/", user: str | None = None, password: str | None = None) -> str:
        """``ftp://`` URL of ``path``, with userinfo when ``user`` is given."""
        auth = f"{user}:{password}@" if user and password is not None else ""
        return f"ftp://{auth}{self.host}:{self.port}{path}"


@contextmanager
def start_ftp(root: Path, *, mlsd: bool = True) -> Iterator[FtpServer]:
    """An :class:`FtpServer` on ``root``; ``mlsd=False`` refuses MLSD as old servers do."""
    with warnings.catch_warnings():
        # pyftpdlib 2.x still imports asyncore/asynchat on Python 3.11.
        warnings.filterwarnings(
            "ignore", r"The (asyncore|asynchat) module is deprecated", DeprecationWarning
        )
        from pyftpdlib.authorizers import DummyAuthorizer
        from pyftpdlib.handlers import FTPHandler
        from pyftpdlib.servers import FTPServer

    logging.getLogger("pyftpdlib").setLevel(logging.WARNING)
    root.mkdir(parents=True, exist_ok=True)
    authorizer = DummyAuthorizer()
    authorizer.add_user(FTP_USER, FTP_PASSWORD, str(root), perm="elradfmwMT")
    authorizer.add_anonymous(str(root), perm="elr")
    attrs: dict[str, Any] = {"authorizer": authorizer, "passive_ports": None}
    if not mlsd:
        attrs["ftp_MLSD"] = lambda self, path: self.respond("502 Command not implemented.")
    handler = type("Handler", (FTPHandler,), attrs)
    server = FTPServer(("127.0.0.1", 0), handler)
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            server.serve_forever(timeout=0.05, blocking=False, handle_exit=False)
        server.close_all()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    host, port = server.address[:2]
    try:
        yield FtpServer(root, host, port)
    finally:
        stop.set()
        thread.join(5)


# -- S3 (moto) -------------------------------------------------------------------------

S3_KEY_ID = "AKIDTESPTESTING"
S3_SECRET = "tesp-secret-key-do-not-print"


@dataclass
class S3Server:
    """moto's S3 on loopback, a fresh bucket per test, and a boto3 client for setup."""

    endpoint_url: str
    bucket: str
    client: Any

    @property
    def config(self) -> dict[str, Any]:
        """The worker spec's ``storage.s3`` section that reaches this server."""
        return {
            "endpoint_url": self.endpoint_url,
            "region": "us-east-1",
            "aws_access_key_id": S3_KEY_ID,
            "aws_secret_access_key": S3_SECRET,
        }


@contextmanager
def start_moto() -> Iterator[str]:
    """moto's S3 (ThreadedMotoServer) on loopback; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()
