"""Starting the servers a benchmark compares, each in its own process on 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import requests

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """A child process serving HTTP on ``port``; ``ready_path`` answers 200 once it is up."""

    def __init__(
        self, argv: list[str], port: int, ready_path: str, env: dict[str, str], log: Path
    ) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.embedded_state: Path | None = None
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **env},
                cwd=REPO,
                start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{argv} exited; see {log}")
            try:
                if requests.get(self.url + ready_path, timeout=2).ok:
                    return
            except requests.RequestException:
                time.sleep(0.1)
        raise RuntimeError(f"{argv} did not start; see {log}")

    def rss_mb(self) -> float:
        """Resident memory of the server process itself (not its children), in MB."""
        return float(psutil.Process(self.proc.pid).memory_info().rss) / 1e6

    def stop(self) -> None:
        """Stop the whole process group (and an embedded Pulsar it left running)."""
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(self.proc.pid, signal.SIGKILL)
        if self.embedded_state is not None:
            # A tesp serve killed mid-shutdown leaves its Pulsar (its own session) behind.
            try:
                pid = int(json.loads(self.embedded_state.read_text())["pid"])
                os.kill(pid, signal.SIGTERM)
            except (OSError, ValueError, KeyError):
                pass


def tesp(
    data_dir: Path, *, env: dict[str, str] | None = None, args: list[str] | None = None
) -> Server:
    """A real ``tesp serve`` on a free port."""
    port = free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        sys.executable,
        "-m",
        "tesp_core.cli",
        "serve",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
        *(args or []),
    ]
    server = Server(argv, port, "/ga4gh/tes/v1/service-info", env or {}, data_dir / "serve.log")
    server.embedded_state = data_dir / "pulsar" / "embedded.json"
    return server
