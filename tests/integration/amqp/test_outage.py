"""Cancel and recovery while Pulsar or RabbitMQ is down, with a Pulsar of their own.

Each test runs its own webless Pulsar on the manager ``outage`` (the session Pulsar does
not consume its queues), so it can stop and start it, and its own ``tesp serve``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import requests

from tests.amqp.pulsar_mq import PulsarMQ, start_pulsar_mq
from tests.amqp.rabbitmq import RabbitMQ
from tests.conftest import TERMINAL, TespProcess, wait_for_state
from tests.integration.amqp.conftest import amqp_tesp
from tests.integration.amqp.test_amqp import _assert_no_secret, _processes_with, _submit

MANAGER = "outage"


def _server(base: Path, amqp_url: str) -> TespProcess:
    server = amqp_tesp(base, amqp_url, manager=MANAGER)
    server.env["TESP_HEARTBEAT_STALE_SECONDS"] = "20"
    server.env["TESP_RUNTIME"] = "none"  # the executor writes the marker on this host
    return server.start()


@contextlib.contextmanager
def _pulsar(root: Path, amqp_url: str) -> Iterator[PulsarMQ]:
    with start_pulsar_mq(root, amqp_url, managers=(MANAGER,)) as pulsar:
        yield pulsar


def _wait(what: str, check: object, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def _sleep(tag: str) -> str:
    return f"sleep 300 # {tag}"


def _cancel(server: TespProcess, task_id: str) -> None:
    response = requests.post(f"{server.api}/tasks/{task_id}:cancel", timeout=10)
    assert response.status_code == 200, response.text


def _state(server: TespProcess, task_id: str) -> str:
    return str(requests.get(f"{server.api}/tasks/{task_id}", timeout=10).json()["state"])


def test_a_task_cancelled_while_pulsar_is_down_never_runs(
    tmp_path: Path, amqp_url: str, rabbitmq: RabbitMQ
) -> None:
    marker = tmp_path / f"ran-{uuid.uuid4().hex}"
    server = _server(tmp_path / "tesp", amqp_url)
    try:
        # No Pulsar consumes the queues yet: the setup message waits in RabbitMQ.
        task_id = _submit(
            server,
            {"executors": [{"image": "a", "command": ["sh", "-c", f"sleep 8; touch {marker}"]}]},
        )
        wait_for_state(server.api, task_id, {"QUEUED"}, timeout=30)
        _cancel(server, task_id)
        time.sleep(3)
        # The job may still run (its setup is queued): not CANCELED yet.
        assert _state(server, task_id) == "CANCELING"
        with _pulsar(tmp_path / "pulsar", amqp_url) as pulsar:
            task = wait_for_state(server.api, task_id, TERMINAL, timeout=120)
            assert task["state"] == "CANCELED", task
            # Long enough for the executor's sleep to have ended, had it run on.
            time.sleep(12)
            assert not marker.exists()
            _wait("the job directory stayed", lambda: not (pulsar.staging / task_id).exists())
        _assert_no_secret(server, task)
    finally:
        server.stop()


def test_a_cancel_during_a_broker_outage_ends_canceled(
    tmp_path: Path, amqp_url: str, rabbitmq: RabbitMQ
) -> None:
    tag = f"tesp-amqp-outage-{uuid.uuid4().hex}"
    server = _server(tmp_path / "tesp", amqp_url)
    try:
        with _pulsar(tmp_path / "pulsar", amqp_url) as pulsar:
            task_id = _submit(
                server,
                {"executors": [{"image": "a", "command": ["sh", "-c", f"sleep 300 # {tag}"]}]},
            )
            wait_for_state(server.api, task_id, {"RUNNING"}, timeout=120)
            _wait("the executor never started", lambda: _processes_with(tag))
            rabbitmq.stop_app()
            try:
                _cancel(server, task_id)
                # Longer than heartbeat_stale_seconds (20): the silence is the broker's,
                # so the task is neither declared dead nor CANCELED.
                time.sleep(25)
                assert _state(server, task_id) == "CANCELING"
                assert _processes_with(tag)
            finally:
                rabbitmq.start_app()
            task = wait_for_state(server.api, task_id, TERMINAL, timeout=120)
            assert task["state"] == "CANCELED", task
            assert not _processes_with(tag)
            _wait("the job directory stayed", lambda: not (pulsar.staging / task_id).exists())
        _assert_no_secret(server, task)
    finally:
        server.stop()


def test_a_job_pulsar_loses_in_a_restart_is_killed_and_cleaned(
    tmp_path: Path, amqp_url: str, rabbitmq: RabbitMQ
) -> None:
    tag = f"tesp-amqp-orphan-{uuid.uuid4().hex}"
    server = _server(tmp_path / "tesp", amqp_url)
    root = tmp_path / "pulsar"
    try:
        with _pulsar(root, amqp_url) as pulsar:
            task_id = _submit(
                server,
                {"executors": [{"image": "a", "command": ["sh", "-c", f"sleep 300 # {tag}"]}]},
            )
            wait_for_state(server.api, task_id, {"RUNNING"}, timeout=120)
            _wait("the executor never started", lambda: _processes_with(tag))
            # Pulsar alone dies (not its process group): the job's processes live on.
            os.kill(pulsar.proc.pid, signal.SIGKILL)
            pulsar.proc.wait(30)
        assert _processes_with(tag)
        with _pulsar(root, amqp_url) as again:
            task = wait_for_state(server.api, task_id, TERMINAL, timeout=120)
            assert task["state"] == "SYSTEM_ERROR", task
            system_logs = "\n".join(task["logs"][0]["system_logs"])
            assert "Pulsar lost track of the job" in system_logs
            _wait("the orphaned executor survived", lambda: not _processes_with(tag))
            _wait("the job directory stayed", lambda: not (again.staging / task_id).exists())
    finally:
        server.stop()
