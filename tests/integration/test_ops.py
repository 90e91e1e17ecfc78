"""Operations endpoints and logs against a real ``tesp serve``: health, readiness, metrics.

One server logs JSON and runs a COMPLETE and an EXECUTOR_ERROR task whose inputs and
outputs have known sizes (one input over HTTP with a password in its URL); its metrics and
logs are then checked to the exact value. A second server, with Basic auth, checks who may
read ``/metrics`` and that readiness fails once its embedded Pulsar is gone.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tesp_core.server.auth import hash_password
from tests.conftest import TERMINAL, TespProcess, wait_for_state
from tests.servers import HttpServer, start_http

HTTP_USER = "opsuser"
URL_SECRET = "pw-in-url-5d1e9c"
INPUT_BYTES = 1234
REMOTE_BYTES = 777
OUTPUT_BYTES = 100


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpServer]:
    root = tmp_path_factory.mktemp("ops-http")
    (root / "remote.bin").write_bytes(b"r" * REMOTE_BYTES)
    with start_http(root, auth=(HTTP_USER, URL_SECRET)) as server:
        yield server


@pytest.fixture(scope="module")
def ops_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TespProcess]:
    base = tmp_path_factory.mktemp("ops")
    env = {"TESP_LOG_FORMAT": "json", "TESP_LOG_LEVEL": "INFO"}
    server = TespProcess(data_dir=base / "data", storage=base / "st", env=env).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def finished(ops_server: TespProcess, remote: HttpServer) -> dict[str, str]:
    """Run one COMPLETE and one EXECUTOR_ERROR task; their ids by final state."""
    storage = ops_server.storage
    (storage / "in.bin").write_bytes(b"i" * INPUT_BYTES)
    secret_url = remote.url("/remote.bin").replace("://", f"://{HTTP_USER}:{URL_SECRET}@", 1)
    complete: dict[str, Any] = {
        "name": "ops-complete",
        "inputs": [
            {"path": "/data/in.bin", "url": (storage / "in.bin").as_uri()},
            {"path": "/data/remote.bin", "url": secret_url},
            {"path": "/data/note", "content": "inline content is not a transfer\n"},
        ],
        "outputs": [{"path": "/data/out.bin", "url": (storage / "out.bin").as_uri()}],
        "executors": [
            {
                "image": "alpine",
                "command": ["head", "-c", str(OUTPUT_BYTES), "/data/in.bin"],
                "stdout": "/data/out.bin",
            }
        ],
    }
    failing: dict[str, Any] = {
        "name": "ops-fail",
        "executors": [{"image": "alpine", "command": ["false"]}],
    }
    ids = {}
    for expected, body in (("COMPLETE", complete), ("EXECUTOR_ERROR", failing)):
        answer = requests.post(f"{ops_server.api}/tasks", json=body, timeout=10)
        assert answer.status_code == 200, answer.text
        task = wait_for_state(ops_server.api, answer.json()["id"], TERMINAL)
        assert task["state"] == expected, task
        ids[expected] = task["id"]
    assert (storage / "out.bin").stat().st_size == OUTPUT_BYTES
    return ids


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a Prometheus text page, keyed by (name, labels)."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _value(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_healthz_and_readyz_answer_without_auth(ops_server: TespProcess) -> None:
    health = requests.get(f"{ops_server.url}/healthz", timeout=10)
    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    ready = requests.get(f"{ops_server.url}/readyz", timeout=10)
    assert ready.status_code == 200
    assert ready.json() == {
        "status": "ready",
        "checks": {"store": "ok", "backend": "ok"},
        "backends": {"default": "ok"},
    }


def test_metrics_count_tasks_requests_and_bytes(
    ops_server: TespProcess, finished: dict[str, str]
) -> None:
    page = requests.get(f"{ops_server.url}/metrics", timeout=10)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/plain")
    samples = _samples(page.text)
    for state in ("COMPLETE", "EXECUTOR_ERROR"):
        assert _value(samples, "tesp_tasks", state=state) == 1
        assert _value(samples, "tesp_tasks_finished_total", state=state) == 1
        assert _value(samples, "tesp_task_duration_seconds_count", state=state) == 1
    for state in ("QUEUED", "RUNNING", "SYSTEM_ERROR", "CANCELED"):
        assert _value(samples, "tesp_tasks", state=state) == 0
    creates = _value(
        samples, "tesp_http_request_duration_seconds_count", method="POST", route="/tasks"
    )
    assert creates == 2
    assert (
        _value(samples, "tesp_http_requests_total", method="POST", route="/tasks", status="200")
        == 2
    )
    # Route templates, never raw paths: no task id appears anywhere on the page.
    polls = _value(
        samples, "tesp_http_requests_total", method="GET", route="/tasks/{task_id}", status="200"
    )
    assert polls >= 2
    assert all(task_id not in page.text for task_id in finished.values())
    assert (
        _value(samples, "tesp_staging_bytes_total", direction="input", protocol="file")
        == INPUT_BYTES
    )
    assert (
        _value(samples, "tesp_staging_bytes_total", direction="input", protocol="http")
        == REMOTE_BYTES
    )
    assert (
        _value(samples, "tesp_staging_bytes_total", direction="output", protocol="file")
        == OUTPUT_BYTES
    )
    assert URL_SECRET not in page.text


def test_list_latency_is_recorded(ops_server: TespProcess) -> None:
    before = _samples(requests.get(f"{ops_server.url}/metrics", timeout=10).text)
    for base in ("/ga4gh/tes/v1", "/v1"):
        assert requests.get(f"{ops_server.url}{base}/tasks", timeout=10).status_code == 200
    after = _samples(requests.get(f"{ops_server.url}/metrics", timeout=10).text)
    name, labels = "tesp_http_request_duration_seconds_count", {"method": "GET", "route": "/tasks"}
    assert _value(after, name, **labels) - _value(before, name, **labels) == 2


def _json_lines(path: Path) -> list[dict[str, Any]]:
    lines = []
    for raw in path.read_text(errors="replace").splitlines():
        if raw.startswith("{"):
            lines.append(json.loads(raw))
    return lines


def test_json_logs_carry_task_id_and_no_secret(
    ops_server: TespProcess, finished: dict[str, str]
) -> None:
    lines = _json_lines(ops_server.data_dir / "tesp-serve.log")
    assert lines, ops_server.log_text()
    assert all({"time", "level", "logger", "message"} <= line.keys() for line in lines)
    task_id = finished["COMPLETE"]
    mine = [line for line in lines if line.get("task_id") == task_id]
    messages = [line["message"] for line in mine]
    assert f"task {task_id}: created (1 executors)" in messages
    assert any(m.startswith(f"task {task_id}: submitted to ") for m in messages)
    # The state it came from depends on which poll saw it last; the last line is the end.
    assert messages[-1].startswith(f"task {task_id}: ")
    assert messages[-1].endswith(" -> COMPLETE")
    assert all(line["logger"].startswith("tesp_core") for line in mine)
    # uvicorn's own lines go through the same JSON handler.
    assert any(line["logger"].startswith("uvicorn") for line in lines)
    for path in ops_server.log_files:
        assert URL_SECRET not in path.read_text(errors="replace"), path


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TespProcess]:
    base = tmp_path_factory.mktemp("ops-auth")
    users = {
        "root": {"password_hash": hash_password("root-pw", iterations=1000), "roles": ["admin"]},
        "alice": {"password_hash": hash_password("alice-pw", iterations=1000)},
    }
    env = {"TESP_AUTH_MODE": "basic", "TESP_BASIC_USERS": json.dumps(users)}
    server = TespProcess(data_dir=base / "data", storage=base / "st", env=env).start()
    yield server
    server.stop()


def test_metrics_need_admin_when_auth_is_on(auth_server: TespProcess) -> None:
    url = f"{auth_server.url}/metrics"
    assert requests.get(url, timeout=10).status_code == 401
    assert requests.get(url, auth=("alice", "alice-pw"), timeout=10).status_code == 403
    page = requests.get(url, auth=("root", "root-pw"), timeout=10)
    assert page.status_code == 200
    assert "tesp_tasks{" in page.text
    # Probes stay open to the orchestrator.
    assert requests.get(f"{auth_server.url}/healthz", timeout=10).status_code == 200


def test_readyz_fails_when_pulsar_is_gone(auth_server: TespProcess) -> None:
    ready = requests.get(f"{auth_server.url}/readyz", timeout=10)
    assert ready.status_code == 200, ready.text
    state = json.loads((auth_server.data_dir / "pulsar" / "embedded.json").read_text())
    os.kill(int(state["pid"]), signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ready = requests.get(f"{auth_server.url}/readyz", timeout=40)
        if ready.status_code != 200:
            break
        time.sleep(0.1)
    assert ready.status_code == 503
    body = ready.json()
    assert body == {
        "status": "not ready",
        "checks": {"store": "ok", "backend": "not healthy"},
        "backends": {"default": "unreachable"},
        "not_ready": ["backend"],
    }
    # Liveness is not readiness: the process still serves.
    assert requests.get(f"{auth_server.url}/healthz", timeout=10).status_code == 200
