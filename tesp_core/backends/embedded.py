"""The embedded Pulsar: a real Pulsar server that TESP starts on loopback and stops itself."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests

log = logging.getLogger(__name__)


class EmbeddedPulsar:
    """A Pulsar server in a child process, with its staging area under ``root``.

    A random private token guards it, so other local users cannot submit jobs to it. Its
    pid, port and token are kept in ``root/embedded.json`` (mode 0600): a TESP that was
    killed without stopping it leaves it running its jobs, and the next TESP on the same
    data directory adopts it instead of starting a second Pulsar on the same staging area.
    """

    def __init__(self, root: Path, *, concurrent_jobs: int = 8, host: str = "127.0.0.1") -> None:
        self.root = root
        self.host = host
        self.concurrent_jobs = concurrent_jobs
        self.token = secrets.token_urlsafe(24)
        self.url: str | None = None
        self._proc: subprocess.Popen[str] | None = None
        self._adopted: int | None = None

    @property
    def _state_file(self) -> Path:
        return self.root / "embedded.json"

    def start(self, timeout: float = 60.0) -> str:
        """Start Pulsar (or adopt the one a crashed TESP left) and return its base URL."""
        self.root.mkdir(parents=True, exist_ok=True)
        if self._adopt():
            assert self.url is not None
            return self.url
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
            # A terminal's Ctrl-C is for TESP (or the workflow engine embedding it), which
            # then stops Pulsar itself; it must not kill Pulsar and its jobs directly.
            start_new_session=True,
        )
        log_file.close()
        port = self._read_port(timeout)
        self.url = f"http://{self.host}:{port}"
        self._wait_healthy(timeout)
        fd = os.open(self._state_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump({"pid": self._proc.pid, "url": self.url, "token": self.token}, fh)
        log.info(
            "embedded Pulsar %s running at %s (staging in %s)",
            self._proc.pid,
            self.url,
            self.root / "staging",
        )
        return self.url

    def _adopt(self) -> bool:
        try:
            state = json.loads(self._state_file.read_text())
            pid, url, token = int(state["pid"]), str(state["url"]), str(state["token"])
            os.kill(pid, 0)
            ok = requests.get(f"{url}/healthz", params={"private_token": token}, timeout=5).ok
        except (OSError, ValueError, KeyError, requests.RequestException):
            return False
        if not ok:
            return False
        self.url, self.token, self._adopted = url, token, pid
        log.info("adopted the embedded Pulsar %s left running at %s", pid, url)
        return True

    def stop(self) -> None:
        """Stop the Pulsar process (its running jobs are recovered on the next start)."""
        if self._adopted is not None:
            pid, self._adopted = self._adopted, None
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGTERM)
            self._forget_state()
            return
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
            self._forget_state()
        if proc.stdout is not None:
            proc.stdout.close()

    def _forget_state(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._state_file.unlink()

    def _write_app_conf(self) -> Path:
        conf = self.root / "app.yml"
        staging = self.root / "staging"
        persistence = self.root / "persisted"
        # JSON is YAML: no YAML writer needed.
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
