"""Real servers on 127.0.0.1 for tests: HTTP, FTP, S3 (moto), Pulsar and an OIDC issuer.

Each ``start_*`` context manager starts one server and stops it on exit; nothing is mocked.
The fixtures in ``tests/conftest.py`` and ``tests/integration/storage/conftest.py`` are thin
wrappers, so a module may also start its own (e.g. module-scoped, to configure ``tesp serve``
with the server's address). :class:`PulsarServer` and :class:`OidcIssuer` are started and
stopped by hand instead, because tests stop, kill and restart them mid-test.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psutil
import requests

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


# -- Pulsar ----------------------------------------------------------------------------


def _free_port() -> int:
    from tests.conftest import free_port  # here, not at the top: tests.conftest imports us

    return free_port()


def _queued_python() -> dict[str, Any]:
    return {"type": "queued_python", "num_concurrent_jobs": 4}


@dataclass
class PulsarServer:
    """A real Pulsar server (``python -m tesp_core.backends.pulsar_server``, Pulsar's WSGI
    app) on a fixed loopback port, with ``manager`` as its ``_default_`` job manager.

    Its staging and persistence directories, ``app.yml`` and ``pulsar.log`` live in
    ``root``. ``token`` is Pulsar's ``private_token``; ``env`` reaches Pulsar and, through
    it, a cluster manager's client commands (``SLURM_CONF``). The port stays the same over
    a stop and a start, so a TESP configured with :attr:`url` finds it again.
    """

    root: Path
    manager: dict[str, Any] = field(default_factory=_queued_python)
    token: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=_free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL of Pulsar's API."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def app_conf(self) -> dict[str, Any]:
        """The app.yml (JSON is YAML) this Pulsar runs with."""
        conf: dict[str, Any] = {
            "staging_directory": str(self.root / "staging"),
            "persistence_directory": str(self.root / "persisted"),
            "managers": {"_default_": self.manager},
        }
        if self.token:
            conf["private_token"] = self.token
        return conf

    @property
    def jobs(self) -> int:
        """Job directories on this Pulsar right now (TESP deletes each when it ends)."""
        staging = self.root / "staging"
        return len(list(staging.iterdir())) if staging.exists() else 0

    @property
    def workers(self) -> int:
        """TESP workers running in this Pulsar's jobs right now (zombies not counted)."""
        staging = str(self.root / "staging")
        count = 0
        for proc in psutil.process_iter(["cmdline", "status"]):
            argv = proc.info["cmdline"] or []
            if proc.info["status"] == psutil.STATUS_ZOMBIE or len(argv) < 4:
                continue
            # python -S -c BOOT ARCHIVE SPEC JOB_DIR (tesp_core.worker.package.worker_command)
            if "tesp_core.worker" in " ".join(argv[:4]) and argv[-1].startswith(staging):
                count += 1
        return count

    def start(self, timeout: float = 30) -> PulsarServer:
        """Start Pulsar (again) and wait until it answers ``/healthz``."""
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "app.yml").write_text(json.dumps(self.app_conf, indent=2))
        command = [sys.executable, "-m", "tesp_core.backends.pulsar_server"]
        command += ["--app-conf", str(self.root / "app.yml"), "--port", str(self.port)]
        with open(self.root / "pulsar.log", "ab") as log:
            self.proc = subprocess.Popen(
                command,
                stdout=subprocess.DEVNULL,
                stderr=log,
                cwd=self.root,
                env={**os.environ, **self.env},
            )
        params = {"private_token": self.token} if self.token else None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Pulsar exited: {self.log_text()}")
            try:
                if requests.get(f"{self.url}/healthz", params=params, timeout=1).ok:
                    return self
            except requests.RequestException:
                time.sleep(0.1)
        raise RuntimeError(f"Pulsar did not start: {self.log_text()}")

    def stop(self) -> None:
        """Terminate Pulsar (its queued_python jobs die with it); a no-op when stopped."""
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(15)
            self.proc = None

    def kill(self) -> None:
        """SIGKILL Pulsar, as a node crash would: it gets no chance to clean up."""
        assert self.proc is not None, "Pulsar is not running"
        self.proc.kill()
        self.proc.wait(10)
        self.proc = None

    def log_text(self) -> str:
        """The end of Pulsar's log, for failure messages."""
        return self.log_text_full()[-4000:]

    def log_text_full(self) -> str:
        """Pulsar's whole log (its stderr) so far."""
        path = self.root / "pulsar.log"
        return path.read_text(errors="replace") if path.exists() else ""


# -- OIDC ------------------------------------------------------------------------------


class OidcIssuer:
    """A minimal OIDC issuer on loopback (discovery document and JWKS) that signs RS256
    tokens with its own key. It serves from construction until :meth:`stop`.
    """

    def __init__(self) -> None:
        import jwt
        from cryptography.hazmat.primitives.asymmetric import rsa

        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        jwk.update({"kid": "k1", "use": "sig", "alg": "RS256"})
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body: dict[str, Any]
                if self.path == "/.well-known/openid-configuration":
                    body = {"issuer": issuer.url, "jwks_uri": f"{issuer.url}/jwks"}
                elif self.path == "/jwks":
                    body = {"keys": [jwk]}
                else:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def token(
        self,
        sub: str,
        *,
        aud: str = "tesp",
        exp: float | None = None,
        roles: list[str] | None = None,
        iss: str | None = None,
    ) -> str:
        """A signed token for ``sub``: valid for 5 minutes, issued by this issuer, unless
        the arguments say otherwise."""
        import jwt

        claims = {
            "sub": sub,
            "aud": aud,
            "iss": iss or self.url,
            "exp": int(exp if exp is not None else time.time() + 300),
            "roles": roles or [],
        }
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": "k1"})

    def stop(self) -> None:
        """Stop serving and close the listening socket."""
        self.server.shutdown()
        self.server.server_close()
