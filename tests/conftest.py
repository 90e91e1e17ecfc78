"""Fixtures that start the real things: ``tesp serve`` with its embedded Pulsar on loopback."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest
import requests

from tests.servers import start_moto


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class TespProcess:
    """A ``tesp serve`` child process and where it keeps things."""

    data_dir: Path
    storage: Path
    port: int = field(default_factory=free_port)
    extra_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api(self) -> str:
        return f"{self.url}/ga4gh/tes/v1"

    def start(self, timeout: float = 60) -> TespProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.storage.mkdir(parents=True, exist_ok=True)
        log = open(self.data_dir / "tesp-serve.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tesp_core.cli",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--data-dir",
                str(self.data_dir),
                "--file-root",
                str(self.storage),
                *self.extra_args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **self.env},
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"tesp serve exited: {self.log_text()}")
            try:
                if requests.get(f"{self.api}/service-info", timeout=2).ok:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"tesp serve did not answer: {self.log_text()}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def log_text_full(self) -> str:
        path = self.data_dir / "tesp-serve.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def log_text(self) -> str:
        path = self.data_dir / "tesp-serve.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    @property
    def log_files(self) -> list[Path]:
        """Every log this server writes: its own and the embedded Pulsar's."""
        return [self.data_dir / "tesp-serve.log", self.data_dir / "pulsar" / "pulsar.log"]


def remote_tesp(tmp_path: Path, pulsar_url: str, *args: str, **env: str) -> TespProcess:
    """A started ``tesp serve`` (runtime ``none``) that drives the Pulsar at ``pulsar_url``
    with this interpreter as the worker's Python; ``args`` and ``env`` are added."""
    return TespProcess(
        data_dir=tmp_path / "data",
        storage=tmp_path / "storage",
        extra_args=["--pulsar-url", pulsar_url, "--runtime", "none", *args],
        env={"TESP_WORKER_PYTHON": sys.executable, **env},
    ).start()


@pytest.fixture(scope="session")
def tesp_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TespProcess]:
    """One real ``tesp serve`` (embedded Pulsar, default runtime) for the whole session."""
    base = tmp_path_factory.mktemp("tesp")
    server = TespProcess(data_dir=base / "data", storage=base / "storage").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """One moto S3 server for the session (it is slow to start); tests use fresh buckets."""
    with start_moto() as endpoint:
        yield endpoint


def wait_for_state(api: str, task_id: str, states: set[str], timeout: float = 60) -> dict:
    """Poll a task's FULL view until its state is one of ``states``."""
    deadline = time.monotonic() + timeout
    task: dict = {}
    while time.monotonic() < deadline:
        task = requests.get(f"{api}/tasks/{task_id}", params={"view": "FULL"}, timeout=10).json()
        if task.get("state") in states:
            return task
        time.sleep(0.05)
    raise AssertionError(f"task {task_id} never reached {states}: {task}")


TERMINAL = {"COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR", "CANCELED", "PREEMPTED"}


def sleeping(marker: str) -> list[psutil.Process]:
    """The live ``sleep <marker>`` processes: a test's executor, found by a sleep length
    no other job uses."""
    return [
        p
        for p in psutil.process_iter(["cmdline"])
        if (p.info["cmdline"] or [])[:2] == ["sleep", marker]
    ]
