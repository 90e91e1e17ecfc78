"""Which backend is down: /readyz lists each backend's health (ready while one is up) and
tesp_backend_errors_total names the backend whose call failed. A real ``tesp serve`` with
the embedded Pulsar as backend ``a`` and a port nothing listens on as backend ``b``."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import TespProcess, free_port


@pytest.fixture(scope="module")
def half_down(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TespProcess]:
    root = tmp_path_factory.mktemp("half-down")
    backends = {"a": {}, "b": {"url": f"http://127.0.0.1:{free_port()}"}}
    tesp = TespProcess(
        root / "data",
        root / "storage",
        env={"TESP_BACKENDS": json.dumps(backends), "TESP_RUNTIME": "none"},
    ).start()
    yield tesp
    tesp.stop()


def _errors(tesp: TespProcess) -> dict[tuple[str, str, str], float]:
    text = requests.get(f"{tesp.url}/metrics", timeout=10).text
    return {
        (s.labels["backend"], s.labels["operation"], s.labels["kind"]): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "tesp_backend_errors_total"
    }


def test_readyz_lists_each_backend(half_down: TespProcess) -> None:
    ready = requests.get(f"{half_down.url}/readyz", timeout=10)
    assert ready.status_code == 200
    assert ready.json() == {
        "status": "ready",
        "checks": {"store": "ok", "backend": "ok"},
        "backends": {"a": "ok", "b": "unreachable"},
    }


def test_backend_errors_name_the_backend(half_down: TespProcess) -> None:
    task = {
        "executors": [{"image": "none", "command": ["true"]}],
        "resources": {"backend_parameters": {"backend": "b"}},
    }
    created = requests.post(f"{half_down.api}/tasks", json=task, timeout=10)
    assert created.status_code == 200
    deadline = time.monotonic() + 30
    while ("b", "submit", "unavailable") not in _errors(half_down):
        assert time.monotonic() < deadline, _errors(half_down)
        time.sleep(0.2)
    errors = _errors(half_down)
    # b is then marked down: the task waits in routing, with no further call to b yet.
    assert errors == {("b", "submit", "unavailable"): 1.0}
    log = half_down.log_text()
    assert log.count("backend b is unreachable; routing skips it") == 1
