"""A real Pulsar in message-queue mode (``pulsar.main``, no web server at all) for tests."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import kombu
import psutil

from tesp_core.backends.pulsar_amqp_link import key_prefix

MANAGERS = ("_default_", "second")


@dataclass
class PulsarMQ:
    """A running webless Pulsar: its process, staging directory and log."""

    proc: subprocess.Popen[bytes]
    root: Path
    managers: tuple[str, ...] = MANAGERS

    @property
    def staging(self) -> Path:
        return self.root / "staging"

    def listening_ports(self) -> list[int]:
        """TCP ports the Pulsar process (or a child) listens on: none in MQ mode."""
        procs = [psutil.Process(self.proc.pid)]
        procs += procs[0].children(recursive=True)
        ports = []
        for proc in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                for conn in proc.net_connections(kind="tcp"):
                    if conn.status == psutil.CONN_LISTEN:
                        ports.append(conn.laddr.port)
        return ports

    def unacknowledged(self, manager: str = "_default_") -> list[str]:
        """Status updates Pulsar still waits for TESP to acknowledge."""
        store = self.root / "persisted" / f"amqp_ack-{manager}" / "publish"
        return sorted(p.name for p in store.iterdir()) if store.exists() else []

    def log_text(self) -> str:
        return (self.root / "pulsar.log").read_text(errors="replace")[-4000:]


def app_config(
    root: Path, amqp_url: str, managers: tuple[str, ...] = MANAGERS
) -> dict[str, object]:
    """The app.yml of the test Pulsar (also shown in docs/deployment-amqp.md)."""
    return {
        "staging_directory": str(root / "staging"),
        "persistence_directory": str(root / "persisted"),
        "message_queue_url": amqp_url,
        # One TESP per manager: each manager has its own queues, and a status_update queue
        # shared by two TESPs would hand each of them the other's updates.
        "managers": {
            name: {"type": "queued_python", "num_concurrent_jobs": 4} for name in managers
        },
        # Pulsar retries a publish while the broker is down. amqp_acknowledge is on only to
        # check TESP answers it: Pulsar 0.16's republishing thread dies at start
        # (docs/deployment-amqp.md), so it is not recommended.
        "amqp_publish_retry": True,
        "amqp_acknowledge": True,
        "conda_auto_init": False,
        "conda_auto_install": False,
    }


def _consumers(amqp_url: str, queue: str) -> int:
    with kombu.Connection(amqp_url) as conn:
        try:
            return int(conn.default_channel.queue_declare(queue=queue, passive=True)[2])
        except Exception:  # the queue does not exist yet
            return 0


@contextlib.contextmanager
def start_pulsar_mq(
    root: Path, amqp_url: str, timeout: float = 60.0, managers: tuple[str, ...] = MANAGERS
) -> Iterator[PulsarMQ]:
    """Start Pulsar under ``root`` consuming from ``amqp_url``; stop it afterwards (its
    whole process group, jobs included)."""
    root.mkdir(parents=True, exist_ok=True)
    conf = root / "app.yml"
    conf.write_text(json.dumps(app_config(root, amqp_url, managers)))
    conf.chmod(0o600)
    log = open(root / "pulsar.log", "ab")  # noqa: SIM115 - owned by the child
    proc = subprocess.Popen(
        [sys.executable, "-m", "pulsar.main", "--app_conf_path", str(conf)],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=root,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        start_new_session=True,
    )
    log.close()
    pulsar = PulsarMQ(proc=proc, root=root, managers=managers)
    try:
        deadline = time.monotonic() + timeout
        # Ready once it consumes every queue TESP publishes to.
        queues = [f"{key_prefix(m)}_{q}" for m in managers for q in ("setup", "kill", "status")]
        while any(_consumers(amqp_url, q) == 0 for q in queues):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Pulsar (MQ mode) did not start: {pulsar.log_text()}")
            time.sleep(0.2)
        yield pulsar
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
