"""A throw-away PostgreSQL server on 127.0.0.1 for tests (Debian's postgresql package).

``start_postgres()`` runs ``initdb`` and ``postgres`` in a fresh directory, on a random port,
with trust authentication for one test role and ``fsync=off``; it stops the server with
``pg_ctl stop -m fast`` and removes the directory on exit. PostgreSQL refuses to run as
root, so under root both run as the ``postgres`` system user (via ``runuser``).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg

ROLE = "tesp"


@dataclass(frozen=True)
class Postgres:
    """A running test server: ``url()`` names one of its databases."""

    host: str
    port: int
    # Set by start_postgres: what pg_ctl needs to stop and start this server again.
    data_dir: Path | None = None
    options: str = ""

    def url(self, database: str = "postgres") -> str:
        """A ``postgresql://`` URL for the test role and ``database``."""
        return f"postgresql://{ROLE}@{self.host}:{self.port}/{database}"

    def create_database(self) -> str:
        """A new, empty database; returns its URL."""
        name = "t_" + uuid.uuid4().hex[:16]
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        """Stop the server (``pg_ctl stop -m fast``); :meth:`start` brings it back."""
        assert self.data_dir is not None
        _pg_ctl(self.data_dir, "-m", "fast", "stop")

    def start(self) -> None:
        """Start the server again on the same port and wait until it accepts connections."""
        assert self.data_dir is not None
        _pg_ctl(
            self.data_dir,
            "-l",
            str(self.data_dir.parent / "server.log"),
            "-o",
            self.options,
            "-w",
            "start",
        )
        _wait_ready(self)


def _pg_ctl(data: Path, *args: str) -> None:
    subprocess.run(
        _as_server_user([str(_bindir() / "pg_ctl"), "-D", str(data), *args]),
        check=True,
        capture_output=True,
    )


def _bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb is None:
        raise RuntimeError("PostgreSQL (initdb, pg_ctl, postgres) is not installed")
    return Path(initdb).parent


def _as_server_user(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def start_postgres() -> Iterator[Postgres]:
    """Start a PostgreSQL server for the duration of the ``with`` block."""
    bindir = _bindir()
    # Outside pytest's tmp tree: its parents are 0700 root, which the postgres user
    # cannot enter.
    root = Path(tempfile.mkdtemp(prefix="tesp-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    data = root / "data"
    port = _free_port()
    subprocess.run(
        _as_server_user(
            [
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                ROLE,
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ]
        ),
        check=True,
        capture_output=True,
    )
    options = (
        f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off"
        " -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
    )
    subprocess.run(
        _as_server_user(
            [
                str(bindir / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(root / "server.log"),
                "-o",
                options,
                "-w",
                "start",
            ]
        ),
        check=True,
        capture_output=True,
    )
    server = Postgres("127.0.0.1", port, data, options)
    try:
        _wait_ready(server)
        yield server
    finally:
        subprocess.run(
            _as_server_user([str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"]),
            check=False,
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)


def _wait_ready(server: Postgres, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            psycopg.connect(server.url(), connect_timeout=2).close()
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
