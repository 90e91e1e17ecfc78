"""Nothing lost, nothing run twice: kill -9 of the server, a vanished Pulsar job, Pulsar down."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from tests.conftest import TERMINAL, TespProcess, free_port, remote_tesp, sleeping, wait_for_state
from tests.servers import PulsarServer


def _sleeper(marker: Path, seconds: float) -> dict:
    return {
        "name": f"sleeper-{marker.name}",
        "executors": [
            {"image": "a", "command": ["sh", "-c", f'sleep {seconds}; echo run >> "{marker}"']}
        ],
    }


def test_kill_9_server_every_task_completes_exactly_once(tmp_path: Path) -> None:
    runs = tmp_path / "storage" / "runs"
    runs.mkdir(parents=True)
    args = ["--runtime", "none", "--max-in-flight", "20"]
    server = TespProcess(
        data_dir=tmp_path / "data", storage=tmp_path / "storage", extra_args=args
    ).start()
    api = server.api
    # Task 0, whose Pulsar job will be deleted, runs long enough to still be running then.
    ids = [
        requests.post(
            f"{api}/tasks", json=_sleeper(runs / str(n), 60 if n == 0 else 4), timeout=10
        ).json()["id"]
        for n in range(20)
    ]
    for task_id in ids:
        wait_for_state(api, task_id, {"RUNNING"}, timeout=60)
    assert server.proc is not None
    os.kill(server.proc.pid, signal.SIGKILL)  # the server only: its Pulsar lives on
    server.proc.wait(10)
    # While TESP is down, one job disappears from Pulsar.
    state = json.loads((tmp_path / "data" / "pulsar" / "embedded.json").read_text())
    requests.put(
        f"{state['url']}/jobs/{ids[0]}/cancel", params={"private_token": state["token"]}, timeout=10
    )
    deleted = requests.delete(
        f"{state['url']}/jobs/{ids[0]}", params={"private_token": state["token"]}, timeout=10
    )
    assert deleted.ok
    server.proc = None
    again = TespProcess(
        data_dir=tmp_path / "data", storage=tmp_path / "storage", extra_args=args, port=server.port
    ).start()
    try:
        finals = {task_id: wait_for_state(api, task_id, TERMINAL, timeout=120) for task_id in ids}
    finally:
        again.stop()
    lost = finals[ids[0]]
    assert lost["state"] == "SYSTEM_ERROR", (lost, (runs / "0").exists())
    assert "vanished" in " ".join(lost["logs"][0]["system_logs"])
    for n, task_id in enumerate(ids[1:], start=1):
        assert finals[task_id]["state"] == "COMPLETE", finals[task_id]
        assert (runs / str(n)).read_text() == "run\n", f"task {n} ran more or less than once"
    # The embedded Pulsar was adopted, not duplicated, and stopped with the server.
    assert not (tmp_path / "data" / "pulsar" / "embedded.json").exists()


def test_pulsar_down_then_back_and_deadline(tmp_path: Path) -> None:
    pulsar = PulsarServer(tmp_path / "pulsar")
    server = TespProcess(
        data_dir=tmp_path / "data",
        storage=tmp_path / "storage",
        extra_args=["--pulsar-url", pulsar.url, "--runtime", "none"],
        env={"TESP_WORKER_PYTHON": sys.executable, "TESP_BACKEND_RETRY_SECONDS": "8"},
    ).start()
    try:
        api = server.api
        early = requests.post(
            f"{api}/tasks",
            json={"executors": [{"image": "a", "command": ["echo", "waited"]}]},
            timeout=10,
        ).json()["id"]
        time.sleep(1.5)
        # The API keeps answering while Pulsar is down; the task waits, QUEUED, and says why.
        waiting = requests.get(f"{api}/tasks/{early}?view=FULL", timeout=5).json()
        assert waiting["state"] == "QUEUED"
        [why] = waiting["logs"][0]["system_logs"]
        assert f"waiting for a backend: Pulsar at {pulsar.url} unreachable" in why, why
        assert why.endswith("; TESP retries for up to 8 s"), why
        pulsar.start()
        done = wait_for_state(api, early, TERMINAL, timeout=60)
        assert done["state"] == "COMPLETE"
        assert done["logs"][0]["logs"][0]["stdout"] == "waited\n"
        # The wait stays on record, with its end.
        then, submitted = done["logs"][0]["system_logs"]
        assert then == why
        assert re.search(r"submitted to backend \S+ after waiting \d+ s$", submitted), submitted
        pulsar.stop()
        late = requests.post(
            f"{api}/tasks", json={"executors": [{"image": "a", "command": ["true"]}]}, timeout=10
        ).json()["id"]
        failed = wait_for_state(api, late, TERMINAL, timeout=60)
        assert failed["state"] == "SYSTEM_ERROR"
        waited, gave_up = failed["logs"][0]["system_logs"]
        assert "waiting for a backend" in waited, waited
        assert "unreachable for over 8 s" in gave_up, gave_up
    finally:
        server.stop()
        pulsar.stop()


def test_restarted_pulsar_under_a_running_job_is_detected(tmp_path: Path) -> None:
    """A node restart: Pulsar and the job die, the new Pulsar says 'running' forever."""
    pulsar = PulsarServer(tmp_path / "pulsar")
    pulsar.start()
    server = TespProcess(
        data_dir=tmp_path / "data",
        storage=tmp_path / "storage",
        extra_args=["--pulsar-url", pulsar.url, "--runtime", "none"],
        env={"TESP_WORKER_PYTHON": sys.executable, "TESP_HEARTBEAT_STALE_SECONDS": "20"},
    ).start()
    marker = str(4000 + os.getpid() % 1000)
    try:
        api = server.api
        task_id = requests.post(
            f"{api}/tasks",
            json={"executors": [{"image": "a", "command": ["sleep", marker]}]},
            timeout=10,
        ).json()["id"]
        wait_for_state(api, task_id, {"RUNNING"}, timeout=60)
        pulsar.kill()
        for proc in sleeping(marker):
            for parent in proc.parents():
                if "tesp-worker.pyz" in " ".join(parent.cmdline()):
                    parent.kill()
            proc.kill()
        pulsar.start()
        final = wait_for_state(api, task_id, TERMINAL, timeout=90)
        assert final["state"] == "SYSTEM_ERROR"
        assert "stopped reporting" in final["logs"][0]["system_logs"][-1]
    finally:
        server.stop()
        pulsar.stop()


def test_a_job_set_up_but_never_launched_is_submitted_after_a_restart(tmp_path: Path) -> None:
    """A server killed between Pulsar's setup and launch: the job sits in 'preprocessing'
    for ever; the next server must launch the task, not attach to the dead job."""
    pulsar = PulsarServer(tmp_path / "pulsar")
    pulsar.start()
    marker = tmp_path / "storage" / "runs"
    common = {
        "data_dir": tmp_path / "data",
        "storage": tmp_path / "storage",
        "extra_args": ["--pulsar-url", pulsar.url, "--runtime", "none"],
    }
    env = {"TESP_WORKER_PYTHON": sys.executable}
    try:
        idle = TespProcess(**common, env={**env, "TESP_DISPATCH": "false"}).start()
        body = _sleeper(marker, 0)
        task_id = requests.post(f"{idle.api}/tasks", json=body, timeout=10).json()["id"]
        idle.stop()
        # What the dead server left: bookkeeping that says "submitting", a job set up
        # with its worker uploaded, never launched.
        from tesp_core.store.sqlite import SQLiteTaskStore

        store = SQLiteTaskStore(tmp_path / "data" / "tasks.sqlite")
        store.update_backend(task_id, {"submitting": True, "backend": "default"})
        store.close()
        assert requests.post(f"{pulsar.url}/jobs", params={"job_id": task_id}, timeout=10).ok
        status = requests.get(f"{pulsar.url}/jobs/{task_id}/status", timeout=10).json()
        assert status["status"] == "preprocessing"
        server = TespProcess(**common, env=env).start()
        try:
            final = wait_for_state(server.api, task_id, TERMINAL, timeout=60)
        finally:
            server.stop()
        assert final["state"] == "COMPLETE", final
        assert marker.read_text() == "run\n"
    finally:
        pulsar.stop()


def test_a_wrong_pulsar_token_makes_tasks_wait_not_fail(tmp_path: Path) -> None:
    pulsar = PulsarServer(tmp_path / "pulsar", token="the-right-token")
    pulsar.start()
    server = TespProcess(
        data_dir=tmp_path / "data",
        storage=tmp_path / "storage",
        extra_args=["--pulsar-url", pulsar.url, "--runtime", "none"],
        env={"TESP_WORKER_PYTHON": sys.executable, "TESP_PULSAR_TOKEN": "a-wrong-token-77"},
    ).start()
    try:
        ready = requests.get(f"{server.url}/readyz", timeout=10)
        assert ready.status_code == 503
        task_id = requests.post(
            f"{server.api}/tasks",
            json={"executors": [{"image": "a", "command": ["true"]}]},
            timeout=10,
        ).json()["id"]
        time.sleep(3)
        task = requests.get(f"{server.api}/tasks/{task_id}?view=FULL", timeout=10).json()
        assert task["state"] == "QUEUED"
        [why] = task["logs"][0]["system_logs"]
        assert f"waiting for a backend: Pulsar at {pulsar.url} refused TESP's token" in why, why
        assert "a-wrong-token-77" not in json.dumps(task)
        log = server.log_text()
        assert "refused TESP's token" in log
        assert "a-wrong-token-77" not in log
    finally:
        server.stop()
        pulsar.stop()


class _Gate:
    """A TCP forwarder on loopback that can be shut (connections refused) and reopened:
    Pulsar unreachable from TESP while the Pulsar and its jobs live on."""

    def __init__(self, target_port: int) -> None:
        self.port, self.target = free_port(), target_port
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    def open(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def shut(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            conns, self._conns = self._conns, []
        if listener is not None:
            # shutdown, not just close: a close leaves the socket listening while another
            # thread blocks in accept() on it.
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


@pytest.mark.parametrize("sleep, ran", [(6, False), (1, True)])
def test_a_cancel_while_pulsar_is_unreachable_is_sent_when_it_answers(
    tmp_path: Path, sleep: int, ran: bool
) -> None:
    pulsar = PulsarServer(tmp_path / "pulsar")
    pulsar.start()
    gate = _Gate(pulsar.port)
    gate.open()
    marker = tmp_path / "storage" / "runs"
    server = TespProcess(
        data_dir=tmp_path / "data",
        storage=tmp_path / "storage",
        extra_args=["--pulsar-url", f"http://127.0.0.1:{gate.port}", "--runtime", "none"],
        env={"TESP_WORKER_PYTHON": sys.executable},
    ).start()
    try:
        api = server.api
        body = _sleeper(marker, sleep)
        task_id = requests.post(f"{api}/tasks", json=body, timeout=10).json()["id"]
        wait_for_state(api, task_id, {"RUNNING"}, timeout=60)
        gate.shut()
        assert requests.post(f"{api}/tasks/{task_id}:cancel", timeout=10).ok
        # The cancel is retried with back-off: 0, 1, 3, 7 s after the request. The gate
        # opens between two tries (not at 3 s, where the try and the opening raced), so the
        # kill lands at 3 s, while a 6 s sleeper still runs.
        time.sleep(2.5)
        assert requests.get(f"{api}/tasks/{task_id}", timeout=10).json()["state"] == "CANCELING"
        gate.open()
        final = wait_for_state(api, task_id, TERMINAL, timeout=60)
        assert final["state"] == "CANCELED"
        full = requests.get(f"{api}/tasks/{task_id}?view=FULL", timeout=10).json()
        notes = " ".join(full["logs"][0].get("system_logs") or [])
        if ran:
            assert "the task ran to its end (COMPLETE" in notes
            assert marker.read_text() == "run\n"
        else:
            assert "ran to its end" not in notes
            # The stop request waited for Pulsar too: the worker stopped its executor (TERM:
            # 143) and reported, so the task keeps the executor's log.
            assert "canceled: the task was cancelled through TES" in notes, notes
            assert [log["exit_code"] for log in full["logs"][0]["logs"]] == [143], full
            time.sleep(sleep)  # long enough for the sleeper to have written its marker
            assert not marker.exists()
    finally:
        server.stop()
        gate.shut()
        pulsar.stop()


@pytest.mark.parametrize("cancelled", [False, True], ids=["running", "cancelled"])
def test_a_task_given_up_for_an_outage_has_its_job_killed_and_cleaned_later(
    tmp_path: Path, cancelled: bool
) -> None:
    """Given up after backend_retry_seconds: SYSTEM_ERROR, or CANCELED when the user had
    cancelled it during the outage (the cancel stands); either way its job, which ran on
    unseen, is killed and cleaned once Pulsar answers again."""
    pulsar = PulsarServer(tmp_path / "pulsar").start()
    server = remote_tesp(tmp_path, pulsar.url, TESP_BACKEND_RETRY_SECONDS="3")
    marker = f"{uuid.uuid4().int % 10**6 + 300}.25"  # a sleep length no other job uses
    try:
        body = {"executors": [{"image": "a", "command": ["sleep", marker]}]}
        task_id = requests.post(f"{server.api}/tasks", json=body, timeout=10).json()["id"]
        wait_for_state(server.api, task_id, {"RUNNING"}, timeout=60)
        pulsar.stop()  # its jobs live on
        assert len(sleeping(marker)) == 1
        if cancelled:
            assert requests.post(f"{server.api}/tasks/{task_id}:cancel", timeout=10).ok
        given_up = wait_for_state(server.api, task_id, TERMINAL, timeout=60)
        assert given_up["state"] == ("CANCELED" if cancelled else "SYSTEM_ERROR"), given_up
        last = given_up["logs"][0]["system_logs"][-1]
        assert last.startswith("the backend was unreachable for over 3 s: "), last
        killed_later = "; its job, if it still runs there, is killed when the backend answers"
        assert last.endswith(killed_later) == cancelled, last
        pulsar.start()
        deadline = time.monotonic() + 60
        while (pulsar.jobs or sleeping(marker)) and time.monotonic() < deadline:
            time.sleep(0.2)
        # The job that ran on, unseen, was killed and its directory deleted.
        assert sleeping(marker) == []
        assert pulsar.jobs == 0
    finally:
        for proc in sleeping(marker):
            proc.kill()
        server.stop()
        pulsar.stop()


def test_an_outage_while_a_task_runs_is_on_its_record(tmp_path: Path) -> None:
    """Pulsar unreachable for a while under a running task: the task says so in its system
    logs while it lasts (a client sees why nothing moves), then when it ended; the job ran on
    and its task completes."""
    pulsar = PulsarServer(tmp_path / "pulsar").start()
    gate = _Gate(pulsar.port)
    gate.open()
    server = remote_tesp(tmp_path, f"http://127.0.0.1:{gate.port}")
    try:
        api = server.api
        body = {"executors": [{"image": "a", "command": ["sh", "-c", "sleep 6; echo ran on"]}]}
        task_id = requests.post(f"{api}/tasks", json=body, timeout=10).json()["id"]
        wait_for_state(api, task_id, {"RUNNING"}, timeout=60)
        gate.shut()
        # Polled at most poll_max (2 s) apart: the outage is seen within that.
        deadline, notes = time.monotonic() + 10, []
        while time.monotonic() < deadline and not notes:
            time.sleep(0.2)
            full = requests.get(f"{api}/tasks/{task_id}?view=FULL", timeout=10).json()
            notes = full["logs"][0].get("system_logs") or []
        assert full["state"] == "RUNNING"
        [lost] = notes
        url = f"http://127.0.0.1:{gate.port}"
        assert f"lost contact with the backend, its job may run on: Pulsar at {url}" in lost, lost
        gate.open()
        done = wait_for_state(api, task_id, TERMINAL, timeout=60)
        assert done["state"] == "COMPLETE", done
        assert done["logs"][0]["logs"][0]["stdout"] == "ran on\n"
        then, back = done["logs"][0]["system_logs"]
        assert then == lost
        assert re.search(
            # The bound is said once two tries failed at least 1 s apart.
            r"the backend answered again(; it was unreachable for at least [1-9]\d* s "
            r"\(TESP's tries back off up to 30 s apart\))?$",
            back,
        ), back
    finally:
        server.stop()
        gate.shut()
        pulsar.stop()


def test_a_worker_s_silence_counts_from_its_job_s_launch(tmp_path: Path) -> None:
    """Two tasks across a 22 s outage, with heartbeat_stale_seconds at 20. One was launched
    before it and its worker hangs before its first word: it ends SYSTEM_ERROR, saying the
    worker never reported. The other waited, QUEUED, for the whole outage: it completes (its
    silence counted from its launch, not from when TESP took it, which killed it at once)."""
    hang = "HANG-BEFORE-START-" + uuid.uuid4().hex[:8]
    marker = f"{uuid.uuid4().int % 10**6 + 300}.5"  # a sleep length no other job uses
    python = tmp_path / "python"
    python.write_text(
        "#!/bin/sh\n"
        f'for a in "$@"; do [ -f "$a" ] && grep -q {hang} "$a" && exec sleep {marker}; done\n'
        f'exec {sys.executable} "$@"\n'
    )
    python.chmod(0o755)
    pulsar = PulsarServer(tmp_path / "pulsar").start()
    gate = _Gate(pulsar.port)
    gate.open()
    server = remote_tesp(
        tmp_path,
        f"http://127.0.0.1:{gate.port}",
        TESP_WORKER_PYTHON=str(python),
        TESP_HEARTBEAT_STALE_SECONDS="20",
    )
    try:
        api = server.api

        def post(command: list[str]) -> str:
            body = {"executors": [{"image": "a", "command": command}]}
            return str(requests.post(f"{api}/tasks", json=body, timeout=10).json()["id"])

        hung = post(["echo", hang])
        _wait_until(lambda: bool(sleeping(marker)), "the hanging job never launched")
        gate.shut()
        waited = post(["echo", "waited out the outage"])
        time.sleep(22)
        gate.open()
        done = wait_for_state(api, waited, TERMINAL, timeout=60)
        assert done["state"] == "COMPLETE", done
        assert done["logs"][0]["logs"][0]["stdout"] == "waited out the outage\n"
        given_up = wait_for_state(api, hung, TERMINAL, timeout=60)
        assert given_up["state"] == "SYSTEM_ERROR", given_up
        last = given_up["logs"][0]["system_logs"][-1]
        assert last.startswith(
            "the worker never reported: no progress.json 20 s after Pulsar launched the job"
        ), last
        _wait_until(lambda: not sleeping(marker), "the hung job was not killed")
    finally:
        server.stop()
        gate.shut()
        pulsar.stop()


def _wait_until(check: Callable[[], bool], failure: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, failure
        time.sleep(0.2)


def test_a_password_in_the_pulsar_url_never_reaches_a_task(tmp_path: Path) -> None:
    """A Pulsar URL with a password, and nothing listening there: the task's waiting line
    and its final SYSTEM_ERROR name the URL with the password masked, as the log does."""
    url = f"http://bob:Sekr1tPW@127.0.0.1:{free_port()}"
    server = remote_tesp(tmp_path, url, TESP_BACKEND_RETRY_SECONDS="3")
    try:
        body = {"executors": [{"image": "a", "command": ["true"]}]}
        task_id = requests.post(f"{server.api}/tasks", json=body, timeout=10).json()["id"]
        final = wait_for_state(server.api, task_id, TERMINAL, timeout=60)
        log = server.log_text()
    finally:
        server.stop()
    assert final["state"] == "SYSTEM_ERROR", final
    waited, gave_up = final["logs"][0]["system_logs"]
    shown = url.replace("Sekr1tPW", "***")
    assert f"waiting for a backend: Pulsar at {shown} unreachable" in waited, waited
    assert f"Pulsar at {shown} unreachable" in gave_up, gave_up
    assert "Sekr1tPW" not in json.dumps(final) + log
