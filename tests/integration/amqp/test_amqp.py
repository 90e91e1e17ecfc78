"""TES tasks through a real ``tesp serve`` that reaches a real Pulsar only through RabbitMQ.

The Pulsar runs in message-queue mode with no web server at all (``pulsar.main``), so a
task that completes proves that TESP made no REST call to it.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import psutil
import requests

from tests.amqp.pulsar_mq import PulsarMQ
from tests.conftest import TERMINAL, TespProcess, wait_for_state
from tests.integration.amqp.conftest import AMQP_PASSWORD, amqp_tesp
from tests.servers import start_http


def _submit(server: TespProcess, task: dict) -> str:
    response = requests.post(f"{server.api}/tasks", json=task, timeout=10)
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


def _processes_with(marker: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if any(marker in part for part in proc.info["cmdline"] or []):
            found.append(proc)
    return found


def _assert_no_secret(server: TespProcess, *views: dict) -> None:
    for path in server.log_files:
        if path.exists():
            assert AMQP_PASSWORD not in path.read_text(errors="replace"), path
    for view in views:
        assert AMQP_PASSWORD not in str(view)


def test_pulsar_listens_on_no_port(pulsar_mq: PulsarMQ) -> None:
    assert pulsar_mq.proc.poll() is None
    assert pulsar_mq.listening_ports() == []


def test_task_completes_with_stdout_and_output(
    amqp_server: TespProcess, pulsar_mq: PulsarMQ
) -> None:
    out = amqp_server.storage / f"out-{uuid.uuid4().hex}.txt"
    task_id = _submit(
        amqp_server,
        {
            "name": "amqp-hello",
            "inputs": [{"path": "/data/greeting", "content": "hello over AMQP\n"}],
            "outputs": [{"path": "/data/copy", "url": out.as_uri()}],
            "executors": [
                {"image": "a", "command": ["cat", "/data/greeting"]},
                {"image": "a", "command": ["cp", "/data/greeting", "/data/copy"]},
            ],
        },
    )
    task = wait_for_state(amqp_server.api, task_id, TERMINAL, timeout=120)
    assert task["state"] == "COMPLETE", task
    run = task["logs"][0]
    assert [e["exit_code"] for e in run["logs"]] == [0, 0]
    assert run["logs"][0]["stdout"] == "hello over AMQP\n"
    assert out.read_text() == "hello over AMQP\n"
    assert run["outputs"][0]["url"] == out.as_uri()
    assert run["metadata"]["pulsar_job_id"] == task_id
    _assert_no_secret(amqp_server, task)
    # clean(): a clean-up job removes the job's directory (and the spec in it) on Pulsar;
    # every status update was acknowledged (Pulsar's amqp_acknowledge is on).
    job_dir = pulsar_mq.staging / task_id
    deadline = time.monotonic() + 60
    while job_dir.exists() or pulsar_mq.unacknowledged():
        assert time.monotonic() < deadline, (job_dir.exists(), pulsar_mq.unacknowledged())
        time.sleep(0.1)


def test_task_outlives_the_heartbeat_limit(amqp_server: TespProcess) -> None:
    # The server's heartbeat_stale_seconds is 20: only Pulsar's answers to TESP's status
    # requests keep this task alive (there is no progress.json to read over AMQP).
    task_id = _submit(
        amqp_server,
        {"executors": [{"image": "a", "command": ["sh", "-c", "sleep 30; echo still here"]}]},
    )
    task = wait_for_state(amqp_server.api, task_id, TERMINAL, timeout=120)
    assert task["state"] == "COMPLETE", task
    assert task["logs"][0]["logs"][0]["stdout"] == "still here\n"


def test_executor_error(amqp_server: TespProcess) -> None:
    task_id = _submit(
        amqp_server,
        {"executors": [{"image": "a", "command": ["sh", "-c", "echo oops >&2; exit 3"]}]},
    )
    task = wait_for_state(amqp_server.api, task_id, TERMINAL, timeout=120)
    assert task["state"] == "EXECUTOR_ERROR", task
    assert task["logs"][0]["logs"][0]["exit_code"] == 3
    assert task["logs"][0]["logs"][0]["stderr"] == "oops\n"


def test_staging_error_names_the_url(amqp_server: TespProcess, tmp_path: Path) -> None:
    with start_http(tmp_path / "www") as http:
        missing = http.url("/no/such/input.txt")
        task_id = _submit(
            amqp_server,
            {
                "inputs": [{"path": "/data/in.txt", "url": missing}],
                "executors": [{"image": "a", "command": ["cat", "/data/in.txt"]}],
            },
        )
        task = wait_for_state(amqp_server.api, task_id, TERMINAL, timeout=120)
    assert task["state"] == "SYSTEM_ERROR", task
    system_logs = "\n".join(task["logs"][0]["system_logs"])
    assert missing in system_logs
    assert "404" in system_logs


def test_cancel_kills_the_running_executor(amqp_server: TespProcess) -> None:
    marker = f"tesp-amqp-cancel-{uuid.uuid4().hex}"
    task_id = _submit(
        amqp_server,
        {"executors": [{"image": "a", "command": ["sh", "-c", f"sleep 300 # {marker}"]}]},
    )
    wait_for_state(amqp_server.api, task_id, {"RUNNING"}, timeout=120)
    deadline = time.monotonic() + 60
    while not _processes_with(marker):
        assert time.monotonic() < deadline, "the executor never started"
        time.sleep(0.1)
    response = requests.post(f"{amqp_server.api}/tasks/{task_id}:cancel", timeout=10)
    assert response.status_code == 200
    task = wait_for_state(amqp_server.api, task_id, TERMINAL, timeout=60)
    assert task["state"] == "CANCELED", task
    deadline = time.monotonic() + 30
    while _processes_with(marker):
        assert time.monotonic() < deadline, "the executor survived the cancel"
        time.sleep(0.1)


def test_task_finishes_once_across_a_restart(
    tmp_path: Path, amqp_url: str, pulsar_mq: PulsarMQ
) -> None:
    with start_http(tmp_path / "www") as http:
        (tmp_path / "www" / "in.txt").write_text("counted\n")
        # Pulsar's second manager: the module's server consumes the first one's updates.
        server = amqp_tesp(tmp_path, amqp_url, manager="second").start()
        try:
            task_id = _submit(
                server,
                {
                    "inputs": [{"path": "/data/in.txt", "url": http.url("/in.txt")}],
                    "executors": [
                        {"image": "a", "command": ["sh", "-c", "sleep 6; cat /data/in.txt"]}
                    ],
                },
            )
            wait_for_state(server.api, task_id, {"RUNNING"}, timeout=120)
        finally:
            server.stop()
        # The job finishes while TESP is down: its status update waits in RabbitMQ.
        finished = pulsar_mq.staging / task_id / "postprocessed"
        deadline = time.monotonic() + 60
        while not finished.exists():
            assert time.monotonic() < deadline, "the Pulsar job never finished"
            time.sleep(0.1)
        again = amqp_tesp(tmp_path, amqp_url, port=server.port, manager="second").start()
        try:
            task = wait_for_state(again.api, task_id, TERMINAL, timeout=120)
        finally:
            again.stop()
        gets = [r for r in http.requests if r[0] == "GET" and r[1] == "/in.txt"]
    assert task["state"] == "COMPLETE", task
    assert len(task["logs"]) == 1
    assert task["logs"][0]["logs"][0]["stdout"] == "counted\n"
    assert len(gets) == 1
    _assert_no_secret(again, task)
