"""A cancel through TES stops a running executor gracefully: TERM first, KILL after the
worker's grace, and the task ends CANCELED with the executor's log (its exit code, what it
printed) instead of Pulsar's SIGKILL of the whole job, which left no log at all."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import TERMINAL, TespProcess, remote_tesp, sleeping, wait_for_state
from tests.servers import PulsarServer


@pytest.fixture
def remote(tmp_path: Path) -> Iterator[TespProcess]:
    """A ``tesp serve`` (runtime ``none``) driving its own Pulsar over HTTP."""
    pulsar = PulsarServer(tmp_path / "pulsar").start()
    served = remote_tesp(tmp_path, pulsar.url)
    try:
        yield served
    finally:
        served.stop()
        pulsar.stop()


@pytest.fixture(params=["embedded", "remote"])
def server(request: pytest.FixtureRequest, tesp_server: TespProcess) -> TespProcess:
    """The session's embedded-Pulsar server, or one driving a Pulsar over HTTP."""
    if request.param == "embedded":
        return tesp_server
    served: TespProcess = request.getfixturevalue("remote")
    return served


def _cancel_when_sleeping(server: TespProcess, script: str, marker: str) -> dict[str, Any]:
    """Run ``script`` (which ends in ``sleep marker``), cancel it once it sleeps, and
    return the task's FULL view at its end."""
    body = {"executors": [{"image": "alpine", "command": ["sh", "-c", script]}]}
    task_id = requests.post(f"{server.api}/tasks", json=body, timeout=10).json()["id"]
    deadline = time.monotonic() + 30
    while not sleeping(marker):
        assert time.monotonic() < deadline, "the executor never started"
        time.sleep(0.05)
    assert requests.post(f"{server.api}/tasks/{task_id}:cancel", timeout=10).json() == {}
    wait_for_state(server.api, task_id, TERMINAL, timeout=60)
    view = requests.get(f"{server.api}/tasks/{task_id}", params={"view": "FULL"}, timeout=10)
    deadline = time.monotonic() + 10
    while sleeping(marker):
        assert time.monotonic() < deadline, "the executor outlived its cancel"
        time.sleep(0.1)
    return dict(view.json())


def test_a_cancelled_executor_is_terminated_and_its_log_kept(server: TespProcess) -> None:
    marker = f"{uuid.uuid4().int % 10**6 + 300}.5"  # a sleep length no other job uses
    # The trap runs when the TERM reaches the shell: what it prints is in the log.
    script = f"trap 'echo stopping; exit 3' TERM; echo started; sleep {marker} & wait"
    task = _cancel_when_sleeping(server, script, marker)
    assert task["state"] == "CANCELED", task
    [log] = task["logs"][0]["logs"]
    assert (log["exit_code"], log["stdout"]) == (3, "started\nstopping\n"), log
    assert log["start_time"] and log["end_time"]
    assert "canceled: the task was cancelled through TES" in task["logs"][0]["system_logs"]


def test_an_executor_that_ignores_term_is_killed_after_the_grace(
    tesp_server: TespProcess,
) -> None:
    marker = f"{uuid.uuid4().int % 10**6 + 300}.25"
    script = f"trap '' TERM; echo stubborn; sleep {marker}"
    started = time.monotonic()
    task = _cancel_when_sleeping(tesp_server, script, marker)
    took = time.monotonic() - started
    assert task["state"] == "CANCELED", task
    [log] = task["logs"][0]["logs"]
    # The sleep ignores TERM too (inherited); the worker KILLs the group after 5 s.
    assert (log["exit_code"], log["stdout"]) == (137, "stubborn\n"), log
    assert took >= 5, took


def test_a_cancel_stops_what_the_executor_started_in_a_new_session(server: TespProcess) -> None:
    """A child that left the executor's process group (setsid) is stopped with it: under
    `none` nothing else would (bwrap's pid namespace ends it anyway)."""
    marker = f"{uuid.uuid4().int % 10**6 + 300}.5"
    escaped = f"{uuid.uuid4().int % 10**6 + 300}.75"
    script = f"setsid sleep {escaped} & sleep {marker}"
    task = _cancel_when_sleeping(server, script, marker)
    assert task["state"] == "CANCELED", task
    deadline = time.monotonic() + 10
    while sleeping(escaped):
        assert time.monotonic() < deadline, "the setsid child outlived its task's cancel"
        time.sleep(0.1)


def test_a_worker_that_does_not_answer_the_stop_is_killed_by_pulsar(remote: TespProcess) -> None:
    """The worker is frozen (SIGSTOP): after 10 s TESP has Pulsar kill the job, and the
    task's system log says why it has no executor log."""
    server = remote
    marker = f"{uuid.uuid4().int % 10**6 + 300}.5"
    try:
        body = {"executors": [{"image": "a", "command": ["sleep", marker]}]}
        task_id = requests.post(f"{server.api}/tasks", json=body, timeout=10).json()["id"]
        deadline = time.monotonic() + 30
        while not sleeping(marker):
            assert time.monotonic() < deadline, "the executor never started"
            time.sleep(0.05)
        [sleeper] = sleeping(marker)
        [worker] = [p for p in sleeper.parents() if "tesp-worker.pyz" in " ".join(p.cmdline())]
        worker.suspend()
        assert requests.post(f"{server.api}/tasks/{task_id}:cancel", timeout=10).ok
        wait_for_state(server.api, task_id, TERMINAL, timeout=60)
        full = requests.get(f"{server.api}/tasks/{task_id}", params={"view": "FULL"}, timeout=10)
        task = full.json()
        deadline = time.monotonic() + 10
        while sleeping(marker):
            assert time.monotonic() < deadline, "the executor outlived Pulsar's kill"
            time.sleep(0.1)
    finally:
        for proc in sleeping(marker):
            proc.kill()
    assert task["state"] == "CANCELED", task
    assert task["logs"][0]["logs"] == []
    assert task["logs"][0]["system_logs"] == [
        "canceled: Pulsar killed the job (its worker did not answer TESP's stop request in "
        "10 s); it left no executor log"
    ]


def test_a_cancel_under_none_stops_a_child_that_double_forked_away(remote: TespProcess) -> None:
    """`(setsid sleep &)`: the child's parent exits at once, so it is no descendant of the
    executor any more; under `none` the worker finds it by the TESP_RUN mark it inherited."""
    marker = f"{uuid.uuid4().int % 10**6 + 300}.5"
    escaped = f"{uuid.uuid4().int % 10**6 + 300}.75"
    try:
        task = _cancel_when_sleeping(remote, f"(setsid sleep {escaped} &); sleep {marker}", marker)
        deadline = time.monotonic() + 10
        while sleeping(escaped) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = sleeping(escaped)
    finally:
        for proc in sleeping(escaped):
            proc.kill()
    assert task["state"] == "CANCELED", task
    assert left == [], "the double-forked child outlived its task's cancel"
