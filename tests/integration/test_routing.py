"""Several named Pulsars behind one ``tesp serve``: routing, load spreading, failover.

Two real Pulsar servers on loopback ("a": gpu, site eu, 2 cores and 16 GB at most; "b":
site us, 8 cores and 64 GB) and one ``tesp serve`` configured with ``[backends.a]`` and
``[backends.b]`` (docs/deployment-backends.md). Each executor prints its working
directory, which lies in the job directory of the Pulsar that ran it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import TERMINAL, TespProcess, wait_for_state
from tests.servers import PulsarServer


@dataclass
class _Site:
    server: TespProcess
    a: PulsarServer
    b: PulsarServer
    config: Path

    @property
    def api(self) -> str:
        return self.server.api

    def restart(self) -> None:
        self.server.stop()
        self.server = TespProcess(
            data_dir=self.server.data_dir,
            storage=self.server.storage,
            port=self.server.port,
            extra_args=self.server.extra_args,
        ).start()


CONFIG = """\
runtime = "none"

[backends.a]
url = "{a}"
capacity = 2
labels = ["gpu", "site=eu"]
max_cpu_cores = 2
max_ram_gb = 16
worker_python = "{python}"

[backends.b]
url = "{b}"
capacity = 2
labels = {{ site = "us" }}
max_cpu_cores = 8
max_ram_gb = 64
worker_python = "{python}"
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Site]:
    base = tmp_path_factory.mktemp("routing")
    a = PulsarServer(base / "pulsar-a")
    b = PulsarServer(base / "pulsar-b")
    a.start()
    b.start()
    config = base / "tesp.toml"
    config.write_text(CONFIG.format(a=a.url, b=b.url, python=sys.executable))
    server = TespProcess(
        data_dir=base / "data", storage=base / "storage", extra_args=["--config", str(config)]
    )
    site = _Site(server, a, b, config)
    try:
        server.start()
        yield site
    finally:
        site.server.stop()  # the one running now: tests restart it
        a.stop()
        b.stop()


def _submit(api: str, command: list[str], **resources: Any) -> str:
    body: dict[str, Any] = {"executors": [{"image": "a", "command": command}]}
    if resources:
        body["resources"] = resources
    response = requests.post(f"{api}/tasks", json=body, timeout=10)
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


def _ran_on(site: _Site, task: dict[str, Any]) -> str:
    """The backend a finished task's log names, checked against where the job really ran."""
    assert task["state"] == "COMPLETE", task
    meta = task["logs"][0]["metadata"]
    name = meta["backend"]
    pulsar = {"a": site.a, "b": site.b}[name]
    assert meta["pulsar_url"] == pulsar.url
    assert meta["pulsar_job_id"] == task["id"]
    cwd = task["logs"][0]["logs"][0]["stdout"].strip()
    assert cwd.startswith(f"{pulsar.root}/staging/{task['id']}/"), (name, cwd)
    return str(name)


def _run(site: _Site, **resources: Any) -> str:
    task_id = _submit(site.api, ["pwd"], **resources)
    return _ran_on(site, wait_for_state(site.api, task_id, TERMINAL))


def test_service_info_advertises_the_routing_parameters(site: _Site) -> None:
    info = requests.get(f"{site.api}/service-info", timeout=10).json()
    assert {"backend", "labels"} <= set(info["tesResources_backend_parameters"])


def test_a_named_backend_runs_the_task(site: _Site) -> None:
    assert _run(site, backend_parameters={"backend": "a"}) == "a"
    assert _run(site, backend_parameters={"backend": "b"}) == "b"


def test_an_unknown_or_impossible_task_is_refused_naming_the_field(site: _Site) -> None:
    cases = [
        ({"backend_parameters": {"backend": "c"}}, "resources.backend_parameters.backend"),
        ({"backend_parameters": {"labels": "tpu"}}, "resources.backend_parameters.labels"),
        ({"cpu_cores": 16}, "resources.cpu_cores"),
        ({"cpu_cores": 4, "backend_parameters": {"backend": "a"}}, "resources.cpu_cores"),
    ]
    for resources, field in cases:
        body = {"executors": [{"image": "a", "command": ["true"]}], "resources": resources}
        response = requests.post(f"{site.api}/tasks", json=body, timeout=10)
        assert response.status_code == 400, (resources, response.text)
        assert field in response.text, (field, response.text)


def test_labels_route_the_task(site: _Site) -> None:
    assert _run(site, backend_parameters={"labels": "gpu"}) == "a"
    assert _run(site, backend_parameters={"labels": "site=eu"}) == "a"
    assert _run(site, backend_parameters={"labels": "site=us"}) == "b"


def test_resources_route_the_task(site: _Site) -> None:
    assert _run(site, cpu_cores=4) == "b"
    assert _run(site, ram_gb=32, backend_parameters={"labels": "site"}) == "b"
    assert _run(site, ram_gb=8, backend_parameters={"labels": "site"}) == "a"


def test_load_spreads_over_both_and_capacities_hold(site: _Site) -> None:
    ids = [_submit(site.api, ["sh", "-c", "sleep 1; pwd"]) for _ in range(10)]
    most = {"a": 0, "b": 0}
    dirs = {"a": 0, "b": 0}
    pending = set(ids)
    while pending:
        most = {"a": max(most["a"], site.a.workers), "b": max(most["b"], site.b.workers)}
        dirs = {"a": max(dirs["a"], site.a.jobs), "b": max(dirs["b"], site.b.jobs)}
        for task_id in list(pending):
            state = requests.get(f"{site.api}/tasks/{task_id}", timeout=10).json()["state"]
            if state in TERMINAL:
                pending.discard(task_id)
        time.sleep(0.05)
    names = [_ran_on(site, wait_for_state(site.api, t, TERMINAL)) for t in ids]
    assert set(names) == {"a", "b"}
    assert sorted(names).count("a") >= 2 and sorted(names).count("b") >= 2
    # Never more jobs at work on a Pulsar than its capacity (2), though 10 were waiting.
    # A job whose worker delivered its result takes no room while Pulsar finishes it, so
    # at most as many again wait there to be cleaned.
    assert most["a"] <= 2 and most["b"] <= 2, most
    assert dirs["a"] <= 4 and dirs["b"] <= 4, dirs


def test_restart_keeps_tasks_on_their_backend(site: _Site) -> None:
    ids = {
        name: _submit(site.api, ["sh", "-c", "sleep 3; pwd"], backend_parameters={"backend": name})
        for name in ("a", "b")
    }
    for task_id in ids.values():
        wait_for_state(site.api, task_id, {"RUNNING"})
    site.restart()
    for name, task_id in ids.items():
        assert _ran_on(site, wait_for_state(site.api, task_id, TERMINAL)) == name


def test_a_stopped_pulsar_sends_new_tasks_to_the_other(site: _Site) -> None:
    site.a.stop()
    sleeper = ["sh", "-c", "sleep 0.5; pwd"]
    try:
        # The first goes to a (both idle: configuration order), finds it refusing
        # connections, and is re-routed to b; the next ones skip a at once.
        ids = [_submit(site.api, sleeper)]
        # Only a has the gpu label: these wait for it, as many as the total capacity,
        # without holding up the tasks b can run.
        waiting = [
            _submit(site.api, ["pwd"], backend_parameters={"labels": "gpu"}) for _ in range(4)
        ]
        ids += [_submit(site.api, sleeper) for _ in range(5)]
        names = [_ran_on(site, wait_for_state(site.api, t, TERMINAL)) for t in ids]
        assert names == ["b"] * 6
        for task_id in waiting:
            assert (
                requests.get(f"{site.api}/tasks/{task_id}", timeout=10).json()["state"] == "QUEUED"
            )
    finally:
        site.a.start()
    for task_id in waiting:
        assert _ran_on(site, wait_for_state(site.api, task_id, TERMINAL, timeout=90)) == "a"
