"""An external Pulsar server (Pulsar's own WSGI app) configured for a cluster manager."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests


def free_port() -> int:
    """A TCP port on 127.0.0.1 nothing listens on right now."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ClusterPulsar:
    """``python -m tesp_core.backends.pulsar_server`` with ``manager`` as its ``_default_``.

    ``env`` reaches Pulsar and, through it, the scheduler's client commands (``SLURM_CONF``).
    """

    root: Path
    manager: dict[str, Any]
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def app_conf(self) -> dict[str, Any]:
        """The app.yml (JSON is YAML) this Pulsar runs with."""
        return {
            "staging_directory": str(self.root / "staging"),
            "persistence_directory": str(self.root / "persisted"),
            "managers": {"_default_": self.manager},
        }

    def start(self) -> ClusterPulsar:
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "app.yml").write_text(json.dumps(self.app_conf, indent=2))
        log = open(self.root / "pulsar.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tesp_core.backends.pulsar_server",
                "--app-conf",
                str(self.root / "app.yml"),
                "--port",
                str(self.port),
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
            cwd=self.root,
            env={**os.environ, **self.env},
        )
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Pulsar exited: {self.log_text()}")
            try:
                if requests.get(f"{self.url}/healthz", timeout=1).ok:
                    return self
            except requests.RequestException:
                time.sleep(0.1)
        raise RuntimeError(f"Pulsar did not start: {self.log_text()}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(15)
            self.proc = None

    def log_text(self) -> str:
        """The end of Pulsar's log, for failure messages."""
        return self.log_text_full()[-4000:]

    def log_text_full(self) -> str:
        """Pulsar's whole log (its stderr) so far."""
        path = self.root / "pulsar.log"
        return path.read_text(errors="replace") if path.exists() else ""
