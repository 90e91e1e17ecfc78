"""The embedded Pulsar: a real Pulsar server that TESP starts on loopback and stops itself."""

from __future__ import annotations

import logging
import os
import secrets
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests

log = logging.getLogger(__name__)


class EmbeddedPulsar:
    """A Pulsar server in a child process, with its staging area under ``root``.

    A random private token guards it, so other local users cannot submit jobs to it.
    """

    def __init__(self, root: Path, *, concurrent_jobs: int = 8, host: str = "127.0.0.1") -> None:
        self.root = root
        self.host = host
        self.concurrent_jobs = concurrent_jobs
        self.token = secrets.token_urlsafe(24)
        self.url: str | None = None
        self._proc: subprocess.Popen[str] | None = None

    def start(self, timeout: float = 60.0) -> str:
        """Start Pulsar and wait until it answers; return its base URL."""
        self.root.mkdir(parents=True, exist_ok=True)
        app_conf = self._write_app_conf()
        log_file = open(self.root / "pulsar.log", "a")  # noqa: SIM115 - owned by the child
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self._proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tesp_core.backends.pulsar_server",
                "--app-conf",
                str(app_conf),
                "--host",
                self.host,
                "--port",
                "0",
            ],
            stdout=subprocess.PIPE,
            stderr=log_file,
            text=True,
            cwd=self.root,
            env=env,
        )
        log_file.close()
        port = self._read_port(timeout)
        self.url = f"http://{self.host}:{port}"
        self._wait_healthy(timeout)
        log.info(
            "embedded Pulsar %s running at %s (staging in %s)",
            self._proc.pid,
            self.url,
            self.root / "staging",
        )
        return self.url

    def stop(self) -> None:
        """Stop the Pulsar process (its running jobs are recovered on the next start)."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def _write_app_conf(self) -> Path:
        conf = self.root / "app.yml"
        staging = self.root / "staging"
        persistence = self.root / "persisted"
        # JSON is YAML: no YAML writer needed.
        import json

        conf.write_text(
            json.dumps(
                {
                    "staging_directory": str(staging),
                    "persistence_directory": str(persistence),
                    "private_token": self.token,
                    "managers": {
                        "_default_": {
                            "type": "queued_python",
                            "num_concurrent_jobs": self.concurrent_jobs,
                        }
                    },
                    "conda_auto_init": False,
                    "conda_auto_install": False,
                }
            )
        )
        os.chmod(conf, 0o600)
        return conf

    def _read_port(self, timeout: float) -> int:
        assert self._proc is not None and self._proc.stdout is not None
        result: list[int] = []

        def reader() -> None:
            assert self._proc is not None and self._proc.stdout is not None
            for line in self._proc.stdout:
                if line.startswith("PULSAR_PORT "):
                    result.append(int(line.split()[1]))
                    return

        thread = threading.Thread(target=reader, daemon=True)
        thread.start()
        thread.join(timeout)
        if not result:
            self.stop()
            raise RuntimeError(f"embedded Pulsar did not start; see {self.root / 'pulsar.log'}")
        return result[0]

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if requests.get(
                    f"{self.url}/healthz", params={"private_token": self.token}, timeout=2
                ).ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"embedded Pulsar at {self.url} is not healthy")
