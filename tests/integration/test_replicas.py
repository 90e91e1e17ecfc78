"""Two ``tesp serve`` replicas on one PostgreSQL database and one external Pulsar.

Any replica answers any request; each task runs exactly once, on the replica that holds it;
a cancel sent to the other replica reaches the holder; and when a replica is killed with
``kill -9`` the other adopts its tasks (queued and running) and finishes them.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from tests.conftest import TERMINAL, TespProcess, free_port, wait_for_state
from tests.pg import start_postgres

TASKS = 500
LEASE_SECONDS = 3


@contextmanager
def _pulsar(root: Path, token: str) -> Iterator[str]:
    """A Pulsar server of its own, outside both replicas; yields its URL."""
    root.mkdir(parents=True)
    conf = {
        "staging_directory": str(root / "staging"),
        "persistence_directory": str(root / "persisted"),
        "private_token": token,
        "managers": {"_default_": {"type": "queued_python", "num_concurrent_jobs": 48}},
    }
    (root / "app.yml").write_text(json.dumps(conf))
    port = free_port()
    with open(root / "pulsar.log", "ab") as log:
        proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "tesp_core.backends.pulsar_server"),
                *("--app-conf", str(root / "app.yml"), "--port", str(port)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
            cwd=root,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while not _healthy(url, token):
            assert proc.poll() is None and time.monotonic() < deadline, "Pulsar did not start"
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(20)


def _healthy(url: str, token: str) -> bool:
    try:
        return requests.get(f"{url}/healthz", params={"private_token": token}, timeout=2).ok
    except requests.RequestException:
        return False


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The settings both replicas share: a database, a Pulsar, a lease, a file root."""
    base = tmp_path_factory.mktemp("replicas")
    token = secrets.token_urlsafe(16)
    with _pulsar(base / "pulsar", token) as url, start_postgres() as postgres:
        yield {
            "TESP_DATABASE_URL": postgres.create_database(),
            "TESP_PULSAR_URL": url,
            "TESP_PULSAR_TOKEN": token,
            "TESP_WORKER_PYTHON": sys.executable,
            "TESP_LEASE_SECONDS": str(LEASE_SECONDS),
            "TESP_MAX_IN_FLIGHT": "40",
            "TESP_RUNTIME": "none",
            "base": str(base),
        }


def _replica(shared: dict[str, str], name: str) -> TespProcess:
    base = Path(shared["base"])
    env = {k: v for k, v in shared.items() if k.startswith("TESP_")}
    return TespProcess(data_dir=base / name, storage=base / "storage", env=env)


def _marking(runs: Path, n: int, seconds: float = 0) -> dict:
    """A task that appends one line to ``runs/n`` (after sleeping ``seconds``)."""
    sleep = f"sleep {seconds}; " if seconds else ""
    return {
        "name": f"mark-{n}",
        "executors": [
            {"image": "a", "command": ["sh", "-c", f'{sleep}echo run >> "{runs / str(n)}"']}
        ],
    }


def _states(api: str) -> dict[str, str]:
    """Every task's state, paging through ``GET /tasks`` (MINIMAL view)."""
    states: dict[str, str] = {}
    token = None
    while True:
        params: dict[str, str | int] = {"page_size": 2000}
        if token:
            params["page_token"] = token
        page = requests.get(f"{api}/tasks", params=params, timeout=30).json()
        states.update({t["id"]: t["state"] for t in page.get("tasks", [])})
        token = page.get("next_page_token")
        if not token:
            return states


def _wait_all(api: str, ids: list[str], timeout: float) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while True:
        states = _states(api)
        mine = {t: states.get(t, "") for t in ids}
        if all(s in TERMINAL for s in mine.values()) or time.monotonic() > deadline:
            return mine
        time.sleep(0.5)


def _system_logs(api: str, task_id: str) -> list[str]:
    """What a task that did not complete says about it (shown when an assertion fails)."""
    task = requests.get(f"{api}/tasks/{task_id}", params={"view": "FULL"}, timeout=10).json()
    return [line for log in task.get("logs") or [] for line in log.get("system_logs") or []]


def _create(apis: list[str], bodies: list[dict]) -> list[str]:
    """Create the tasks alternately through the replicas, 16 requests at a time."""

    def post(n: int) -> str:
        reply = requests.post(f"{apis[n % len(apis)]}/tasks", json=bodies[n], timeout=30)
        reply.raise_for_status()
        return str(reply.json()["id"])

    with ThreadPoolExecutor(16) as pool:
        return list(pool.map(post, range(len(bodies))))


def test_two_replicas_share_tasks_and_survive_kill_9(shared: dict[str, str]) -> None:
    a = _replica(shared, "a").start()
    b = _replica(shared, "b").start()
    try:
        runs = a.storage / "runs"
        runs.mkdir(parents=True, exist_ok=True)
        ids = _create([a.api, b.api], [_marking(runs, n) for n in range(TASKS)])
        # Any replica answers for any task, whoever created it.
        assert requests.get(f"{b.api}/tasks/{ids[0]}", timeout=10).json()["id"] == ids[0]
        assert requests.get(f"{a.api}/tasks/{ids[1]}", timeout=10).json()["id"] == ids[1]
        finals = _wait_all(b.api, ids, timeout=150)
        failed = {t: _system_logs(b.api, t) for t, s in finals.items() if s != "COMPLETE"}
        assert Counter(finals.values()) == {"COMPLETE": TASKS}, failed
        counts = Counter((runs / str(n)).read_text() for n in range(TASKS))
        assert counts == {"run\n": TASKS}, "some task ran more or less than once"
        # Both replicas did their share of the work.
        for replica in (a, b):
            assert " -> COMPLETE" in (replica.data_dir / "tesp-serve.log").read_text()

        # A cancel sent to the replica that does not hold the task reaches the holder.
        long_id = _create([a.api], [_marking(runs, 10_000, seconds=120)])[0]
        wait_for_state(a.api, long_id, {"RUNNING"}, timeout=60)
        assert requests.post(f"{b.api}/tasks/{long_id}:cancel", timeout=10).ok
        canceled = wait_for_state(b.api, long_id, TERMINAL, timeout=60)
        assert canceled["state"] == "CANCELED"
        assert not (runs / "10000").exists()

        # kill -9 of replica A with running and queued tasks it holds: B finishes them.
        sleepers = _create([a.api], [_marking(runs, 20_000 + n, seconds=10) for n in range(50)])
        for task_id in sleepers[:40]:  # A runs 40 at once; the last 10 wait in its queue
            wait_for_state(a.api, task_id, {"RUNNING", *TERMINAL}, timeout=60)
        assert a.proc is not None
        os.kill(a.proc.pid, signal.SIGKILL)
        a.proc.wait(10)
        a.proc = None
        finals = _wait_all(b.api, sleepers, timeout=90)
        assert Counter(finals.values()) == {"COMPLETE": 50}, finals
        for n in range(50):
            assert (runs / str(20_000 + n)).read_text() == "run\n", f"sleeper {n}"
        assert re.search(
            r"adopted \d+ tasks of a replica", (b.data_dir / "tesp-serve.log").read_text()
        )

        # A replica that stops cleanly hands its tasks over; a new replica joins and runs them.
        a = _replica(shared, "a2").start()
        handed = _create([b.api], [_marking(runs, 30_000 + n, seconds=3) for n in range(5)])
        for task_id in handed:
            wait_for_state(b.api, task_id, {"RUNNING", *TERMINAL}, timeout=60)
        b.stop()
        finals = _wait_all(a.api, handed, timeout=60)
        assert Counter(finals.values()) == {"COMPLETE": 5}, finals
        assert [(runs / str(30_000 + n)).read_text() for n in range(5)] == ["run\n"] * 5
        assert "adopted" in (a.data_dir / "tesp-serve.log").read_text()
    finally:
        a.stop()
        b.stop()
