"""A throw-away RabbitMQ broker (Debian's ``rabbitmq-server``) on 127.0.0.1 for tests.

Everything the node writes lives under one temporary directory: its Mnesia database, logs,
config, the Erlang cookie (``HOME``) and an ``epmd`` of its own on a random port, so it
neither needs nor touches a system RabbitMQ. No plugin is enabled (no management UI).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil

# The Debian wrapper in /usr/sbin switches to the rabbitmq user; the real scripts are here.
RABBITMQ_BIN = Path("/usr/lib/rabbitmq/bin")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RabbitMQ:
    """A running broker: ``url`` is what Pulsar and TESP are given."""

    port: int
    root: Path
    env: dict[str, str]
    pids: tuple[int, ...] = ()

    @property
    def epmd_port(self) -> int:
        return int(self.env["ERL_EPMD_PORT"])

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    def ctl(self, *args: str) -> str:
        """Run ``rabbitmqctl`` against this node and return its output."""
        out = subprocess.run(
            [str(RABBITMQ_BIN / "rabbitmqctl"), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return out.stdout

    def stop_app(self) -> None:
        """Stop the broker's AMQP side (every connection drops; the node keeps running)."""
        self.ctl("stop_app")

    def start_app(self) -> None:
        """Start it again (durable queues and persistent messages are back)."""
        self.ctl("start_app")
        self.ctl("await_startup")

    def processes(self) -> list[psutil.Process]:
        """The node's processes (beam and its helpers) and its epmd."""
        procs: list[psutil.Process] = []
        for pid in self.pids:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc = psutil.Process(pid)
                procs += [proc, *proc.children(recursive=True)]
        return procs

    def listening(self) -> list[tuple[str, int]]:
        """(address, port) of every TCP socket the broker's processes listen on."""
        found = []
        for proc in self.processes():
            with contextlib.suppress(psutil.NoSuchProcess):
                for conn in proc.net_connections(kind="inet"):
                    if conn.status == psutil.CONN_LISTEN:
                        found.append((conn.laddr.ip, conn.laddr.port))
        return found

    def log_text(self) -> str:
        """The end of the node's log (for failure messages)."""
        logs = sorted((self.root / "log").glob("*.log"))
        return "".join(p.read_text(errors="replace")[-3000:] for p in logs)


def _environment(root: Path, port: int, epmd_port: int) -> dict[str, str]:
    (root / "home").mkdir(parents=True)
    conf = root / "rabbitmq.conf"
    conf.write_text(
        f"listeners.tcp.default = 127.0.0.1:{port}\n"
        "loopback_users.guest = true\n"
        # A test machine's disk may be nearly full; the broker must not block publishers.
        "disk_free_limit.absolute = 1MB\n"
        "log.console = false\n"
    )
    plugins = root / "enabled_plugins"
    plugins.write_text("[].\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))} | {
        "HOME": str(root / "home"),
        "RABBITMQ_NODENAME": f"tesp-test-{port}@localhost",
        "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
        "RABBITMQ_NODE_PORT": str(port),
        "RABBITMQ_DIST_PORT": str(_free_port()),
        "RABBITMQ_MNESIA_BASE": str(root / "mnesia"),
        "RABBITMQ_LOG_BASE": str(root / "log"),
        "RABBITMQ_CONFIG_FILE": str(conf),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(plugins),
        "RABBITMQ_PID_FILE": str(root / "rabbitmq.pid"),
        "RABBITMQ_ADVANCED_CONFIG_FILE": str(root / "advanced.config"),
        "RABBITMQ_CONF_ENV_FILE": str(root / "rabbitmq-env.conf"),
        "ERL_EPMD_ADDRESS": "127.0.0.1",
        "ERL_EPMD_PORT": str(epmd_port),
    }
    return env


def _wait_amqp(port: int, proc: subprocess.Popen[bytes], timeout: float) -> bool:
    """True once the broker completes an AMQP handshake on ``port``."""
    import kombu

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with kombu.Connection(f"amqp://guest:guest@127.0.0.1:{port}//") as conn:
                conn.connect()
                return True
        except Exception:  # refused or reset while the node boots
            time.sleep(0.2)
    return False


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


@contextlib.contextmanager
def start_rabbitmq(root: Path, timeout: float = 90.0) -> Iterator[RabbitMQ]:
    """Start a broker under ``root`` (must not exist yet) and stop it (and its epmd) after."""
    root.mkdir(parents=True)
    port, epmd_port = _free_port(), _free_port()
    env = _environment(root, port, epmd_port)
    # Erlang's distribution port (rabbitmqctl talks to the node through it) listens on
    # every interface unless told otherwise.
    (root / "advanced.config").write_text("[{kernel, [{inet_dist_use_interface, {127,0,0,1}}]}].\n")
    (root / "rabbitmq-env.conf").write_text("")
    epmd = subprocess.Popen(
        [shutil.which("epmd") or "epmd", "-port", str(epmd_port), "-address", "127.0.0.1"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    log = open(root / "server.out", "ab")  # noqa: SIM115 - owned by the child
    broker = subprocess.Popen(
        [str(RABBITMQ_BIN / "rabbitmq-server")],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    log.close()
    try:
        if not _wait_amqp(port, broker, timeout):
            out = (root / "server.out").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"RabbitMQ did not start on port {port}: {out}")
        yield RabbitMQ(port=port, root=root, env=env, pids=(broker.pid, epmd.pid))
    finally:
        _stop(broker)
        _stop(epmd)
