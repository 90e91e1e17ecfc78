"""End to end through ``tesp serve`` -> TaskService -> embedded Pulsar -> worker, via py-tes."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests
import tes

from tests.conftest import TERMINAL, TespProcess, sleeping, wait_for_state


@pytest.fixture
def client(tesp_server: TespProcess) -> tes.HTTPClient:
    return tes.HTTPClient(tesp_server.url, timeout=30)


def test_service_info_is_complete(tesp_server: TespProcess) -> None:
    info = requests.get(f"{tesp_server.api}/service-info", timeout=10).json()
    assert info["type"] == {"group": "org.ga4gh", "artifact": "tes", "version": "1.1.0"}
    assert info["organization"]["url"].startswith("http")
    assert info["createdAt"].endswith("Z") and "T" in info["createdAt"]
    assert tesp_server.storage.as_uri() in info["storage"]
    assert isinstance(info["tesResources_backend_parameters"], list)
    # The /v1 alias serves the same document.
    assert requests.get(f"{tesp_server.url}/v1/service-info", timeout=10).json()["id"] == info["id"]


def test_two_executors_content_and_file_input(
    tesp_server: TespProcess, client: tes.HTTPClient
) -> None:
    src = tesp_server.storage / f"in-{uuid.uuid4().hex}.txt"
    src.write_bytes(b"alpha\nbeta\n")
    out = tesp_server.storage / f"out-{uuid.uuid4().hex}.txt"
    task = tes.Task(
        name="two-executors",
        inputs=[
            tes.Input(path="/data/greeting", content="hello from content\n"),
            tes.Input(path="/data/in.txt", url=src.as_uri()),
        ],
        outputs=[tes.Output(path="/data/out.txt", url=out.as_uri())],
        executors=[
            tes.Executor(
                image="alpine",
                command=["cat", "/data/greeting", "/data/in.txt"],
                stdout="/data/out.txt",
            ),
            tes.Executor(image="alpine", command=["wc", "-l", "/data/out.txt"]),
        ],
    )
    task_id = client.create_task(task)
    done = client.wait(task_id, timeout=60)
    assert done.state == "COMPLETE"
    full = client.get_task(task_id, view="FULL")
    assert out.read_bytes() == b"hello from content\nalpha\nbeta\n"
    log = full.logs[0]
    assert [e.exit_code for e in log.logs] == [0, 0]
    assert log.logs[0].stdout == "hello from content\nalpha\nbeta\n"
    assert log.logs[1].stdout.strip() == "3 /data/out.txt"
    assert [(o.path, o.url, int(o.size_bytes)) for o in log.outputs] == [
        ("/data/out.txt", out.as_uri(), 30)
    ]
    raw = requests.get(
        f"{tesp_server.api}/tasks/{task_id}", params={"view": "FULL"}, timeout=10
    ).json()
    assert raw["logs"][0]["outputs"][0]["size_bytes"] == "30"  # int64 travels as a string
    assert log.start_time and log.end_time


def test_views(tesp_server: TespProcess) -> None:
    body = {
        "name": "views",
        "inputs": [{"path": "/data/x", "content": "secret-ish content"}],
        "executors": [{"image": "alpine", "command": ["echo", "out-line"]}],
    }
    task_id = requests.post(f"{tesp_server.api}/tasks", json=body, timeout=10).json()["id"]
    # Readable immediately after create.
    minimal = requests.get(f"{tesp_server.api}/tasks/{task_id}", timeout=10).json()
    assert set(minimal) == {"id", "state"} and minimal["id"] == task_id
    full = wait_for_state(tesp_server.api, task_id, TERMINAL)
    assert full["state"] == "COMPLETE"
    assert full["inputs"][0]["content"] == "secret-ish content"
    assert full["logs"][0]["logs"][0]["stdout"] == "out-line\n"
    basic = requests.get(
        f"{tesp_server.api}/tasks/{task_id}", params={"view": "BASIC"}, timeout=10
    ).json()
    assert "content" not in basic["inputs"][0]
    assert "stdout" not in basic["logs"][0]["logs"][0]
    assert basic["logs"][0]["logs"][0]["exit_code"] == 0
    assert basic["executors"] == full["executors"]
    assert "creation_time" in basic


def test_executor_error_and_ignore_error(tesp_server: TespProcess) -> None:
    failing = {
        "executors": [
            {"image": "alpine", "command": ["sh", "-c", "exit 3"]},
            {"image": "alpine", "command": ["echo", "never"]},
        ]
    }
    ignored = {
        "executors": [
            {"image": "alpine", "command": ["sh", "-c", "exit 4"], "ignore_error": True},
            {"image": "alpine", "command": ["echo", "after"]},
        ]
    }
    ids = [
        requests.post(f"{tesp_server.api}/tasks", json=b, timeout=10).json()["id"]
        for b in (failing, ignored)
    ]
    first = wait_for_state(tesp_server.api, ids[0], TERMINAL)
    assert first["state"] == "EXECUTOR_ERROR"
    assert [e["exit_code"] for e in first["logs"][0]["logs"]] == [3]
    second = wait_for_state(tesp_server.api, ids[1], TERMINAL)
    assert second["state"] == "COMPLETE"
    assert [e["exit_code"] for e in second["logs"][0]["logs"]] == [4, 0]
    assert second["logs"][0]["logs"][1]["stdout"] == "after\n"


def test_list_filters_and_pagination(tesp_server: TespProcess) -> None:
    prefix = f"list-{uuid.uuid4().hex[:8]}"
    ids = []
    for n in range(5):
        body = {
            "name": f"{prefix}-{n}",
            "tags": {"group": prefix, "parity": "even" if n % 2 == 0 else "odd"},
            "executors": [{"image": "alpine", "command": ["true"]}],
        }
        ids.append(requests.post(f"{tesp_server.api}/tasks", json=body, timeout=10).json()["id"])
    # A literal prefix: regex metacharacters match nothing.
    assert (
        requests.get(
            f"{tesp_server.api}/tasks", params={"name_prefix": "list-.*"}, timeout=10
        ).json()["tasks"]
        == []
    )
    listed = requests.get(
        f"{tesp_server.api}/tasks", params={"name_prefix": prefix}, timeout=10
    ).json()
    assert [t["id"] for t in listed["tasks"]] == ids[::-1]  # newest first
    assert "next_page_token" not in listed
    even = requests.get(
        f"{tesp_server.api}/tasks",
        params={"tag_key": ["group", "parity"], "tag_value": [prefix, "even"]},
        timeout=10,
    ).json()
    assert [t["id"] for t in even["tasks"]] == [ids[4], ids[2], ids[0]]
    any_value = requests.get(
        f"{tesp_server.api}/tasks",
        params={"tag_key": "parity", "name_prefix": prefix},
        timeout=10,
    ).json()
    assert len(any_value["tasks"]) == 5
    # Pages of 2 cover every task exactly once.
    seen: list[str] = []
    token = None
    while True:
        params = {"name_prefix": prefix, "page_size": 2, "view": "BASIC"}
        if token:
            params["page_token"] = token
        page = requests.get(f"{tesp_server.api}/tasks", params=params, timeout=10).json()
        seen += [t["id"] for t in page["tasks"]]
        assert all("executors" in t for t in page["tasks"])
        token = page.get("next_page_token")
        if not token:
            break
    assert seen == ids[::-1]
    for task_id in ids:
        wait_for_state(tesp_server.api, task_id, TERMINAL)
    done = requests.get(
        f"{tesp_server.api}/tasks",
        params={"name_prefix": prefix, "state": "COMPLETE"},
        timeout=10,
    ).json()
    assert sorted(t["id"] for t in done["tasks"]) == sorted(ids)
    assert (
        requests.get(
            f"{tesp_server.api}/tasks",
            params={"name_prefix": prefix, "state": "RUNNING"},
            timeout=10,
        ).json()["tasks"]
        == []
    )


def test_cancel_running_sleep_kills_it(tesp_server: TespProcess, client: tes.HTTPClient) -> None:
    marker = str(1000 + uuid.uuid4().int % 8999)
    task_id = client.create_task(
        tes.Task(executors=[tes.Executor(image="alpine", command=["sleep", marker])])
    )
    wait_for_state(tesp_server.api, task_id, {"RUNNING"})
    deadline = time.monotonic() + 20
    while not sleeping(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sleeping(marker), "the executor never started"
    client.cancel_task(task_id)
    final = wait_for_state(tesp_server.api, task_id, TERMINAL, timeout=30)
    assert final["state"] == "CANCELED"
    deadline = time.monotonic() + 10
    while sleeping(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sleeping(marker) == []
    # Cancelling a finished task is a no-op answering 200 {}.
    again = requests.post(f"{tesp_server.api}/tasks/{task_id}:cancel", timeout=10)
    assert again.status_code == 200 and again.json() == {}
    assert client.get_task(task_id, "MINIMAL").state == "CANCELED"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"executors": []}, "executors"),
        ({}, "executors"),
        ({"executors": [{"image": "alpine", "command": []}]}, "executors[0].command"),
        ({"executors": [{"command": ["true"]}]}, "executors[0].image"),
        (
            {"executors": [{"image": "alpine", "command": ["true"], "workdir": "rel"}]},
            "executors[0].workdir",
        ),
        (
            {"executors": [{"image": "alpine", "command": ["true"], "stdout": "/a/../b"}]},
            "executors[0].stdout",
        ),
        (
            {"inputs": [{"path": "/x"}], "executors": [{"image": "a", "command": ["true"]}]},
            "inputs[0]",
        ),
        (
            {
                "outputs": [{"path": "/x/*.txt", "url": "file:///tmp/o/"}],
                "executors": [{"image": "a", "command": ["true"]}],
            },
            "outputs[0]",
        ),
        (
            {"outputs": [{"path": "/x"}], "executors": [{"image": "a", "command": ["true"]}]},
            "outputs[0].url",
        ),
        (
            {
                "resources": {
                    "backend_parameters": {"VmSize": "x"},
                    "backend_parameters_strict": True,
                },
                "executors": [{"image": "a", "command": ["true"]}],
            },
            "resources.backend_parameters.VmSize",
        ),
        ({"executors": [{"image": "a", "command": ["true"]}], "bogus": 1}, "bogus"),
        (
            {
                "inputs": [{"path": "/x", "url": "file:///etc/passwd"}],
                "executors": [{"image": "a", "command": ["true"]}],
            },
            "inputs[0].url",
        ),
        (
            {"executors": [{"image": "a", "command": ["true"], "env": {"A B": "1"}}]},
            "executors[0].env",
        ),
    ],
)
def test_invalid_tasks_are_400_naming_the_field(
    tesp_server: TespProcess, body: dict, field: str
) -> None:
    response = requests.post(f"{tesp_server.api}/tasks", json=body, timeout=10)
    assert response.status_code == 400, response.text
    assert response.json()["field"] == field


def test_client_sent_server_fields_are_ignored(tesp_server: TespProcess) -> None:
    body = {
        "id": "mine",
        "state": "COMPLETE",
        "creation_time": "1999-01-01T00:00:00Z",
        "logs": [{"logs": [], "outputs": []}],
        "executors": [{"image": "a", "command": ["true"]}],
    }
    task_id = requests.post(f"{tesp_server.api}/tasks", json=body, timeout=10).json()["id"]
    assert task_id != "mine"
    task = requests.get(
        f"{tesp_server.api}/tasks/{task_id}", params={"view": "BASIC"}, timeout=10
    ).json()
    assert task["creation_time"] != "1999-01-01T00:00:00Z"
    assert task["state"] != "COMPLETE" or task["logs"][0]["logs"][0]["exit_code"] == 0


def test_bad_requests(tesp_server: TespProcess) -> None:
    api = tesp_server.api
    assert requests.get(f"{api}/tasks/nope", timeout=10).status_code == 404
    assert requests.post(f"{api}/tasks/nope:cancel", timeout=10).status_code == 404
    bad_json = requests.post(f"{api}/tasks", data=b"{not json", timeout=10)
    assert bad_json.status_code == 400 and bad_json.json()["field"] == "body"
    for params, field in [
        ({"view": "HUGE"}, "view"),
        ({"page_size": 0}, "page_size"),
        ({"page_size": 2048}, "page_size"),
        ({"state": "DONE"}, "state"),
        ({"page_token": "garbage!"}, "page_token"),
    ]:
        response = requests.get(f"{api}/tasks", params=params, timeout=10)
        assert response.status_code == 400, (params, response.text)
        assert response.json()["field"] == field


def test_task_path_env_does_not_hide_the_runtime(tesp_server: TespProcess) -> None:
    body = {
        "executors": [
            {
                "image": "a",
                "command": ["/bin/sh", "-c", 'echo "$PATH"'],
                "env": {"PATH": "/opt/mytool/bin"},
            }
        ]
    }
    task_id = requests.post(f"{tesp_server.api}/tasks", json=body, timeout=10).json()["id"]
    task = wait_for_state(tesp_server.api, task_id, TERMINAL)
    assert task["state"] == "COMPLETE", task
    assert task["logs"][0]["logs"][0]["stdout"] == "/opt/mytool/bin\n"


def test_executors_cannot_see_tesp_data(tesp_server: TespProcess) -> None:
    data = str(tesp_server.data_dir)
    staging = str(tesp_server.data_dir / "pulsar" / "staging")
    script = (
        f'ls -A "{data}" | wc -l; ls -A "{staging}" | wc -l; '
        f'cat "{data}/pulsar/app.yml" 2>/dev/null || echo hidden'
    )
    body = {"executors": [{"image": "a", "command": ["sh", "-c", script]}]}
    task_id = requests.post(f"{tesp_server.api}/tasks", json=body, timeout=10).json()["id"]
    task = wait_for_state(tesp_server.api, task_id, TERMINAL)
    assert task["state"] == "COMPLETE", task
    assert task["logs"][0]["logs"][0]["stdout"] == "0\n0\nhidden\n"


@pytest.mark.parametrize(
    ("where", "field"),
    [
        ({"volumes": ["{data}/files/v"]}, "volumes[0]"),
        ({"inputs": [{"path": "{data}/tasks.sqlite", "content": "x"}]}, "inputs[0].path"),
        ({"outputs": [{"path": "{data}/pulsar/x", "url": "ftp://127.0.0.1/x"}]}, "outputs[0].path"),
        (
            {"executors": [{"image": "a", "command": ["true"], "workdir": "{data}"}]},
            "executors[0].workdir",
        ),
    ],
)
def test_tes_paths_inside_the_data_directory_are_refused(
    tesp_server: TespProcess, where: dict[str, Any], field: str
) -> None:
    # Binding such a path once left the data directory visible to the task (other
    # tasks' documents and specs, the embedded Pulsar's token).
    body = json.loads(
        json.dumps({"executors": [{"image": "a", "command": ["true"]}], **where}).replace(
            "{data}", str(tesp_server.data_dir)
        )
    )
    response = requests.post(f"{tesp_server.api}/tasks", json=body, timeout=10)
    assert response.status_code == 400, response.text
    assert response.json()["field"] == field
    assert "data directory" in response.json()["msg"]


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (
            b'{"executors": [{"image": "a", "command": ["x"]}], "resources": {"ram_gb": NaN}}',
            "body",
        ),
        (
            b'{"executors": [{"image": "a", "command": ["x"]}], "resources": {"ram_gb": Infinity}}',
            "body",
        ),
        (b'{"executors":' + b"[" * 100_000 + b"]" * 100_000 + b"}", "body"),
    ],
)
def test_hostile_json_is_400(tesp_server: TespProcess, raw: bytes, field: str) -> None:
    response = requests.post(f"{tesp_server.api}/tasks", data=raw, timeout=30)
    assert response.status_code == 400, response.text
    assert response.json()["field"] == field


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (
            {"executors": [{"image": "a", "command": ["x"], "ignore_error": "yes"}]},
            "executors[0].ignore_error",
        ),
        (
            {"executors": [{"image": "a", "command": ["x"]}], "resources": {"ram_gb": 1e308}},
            "resources.ram_gb",
        ),
        ({"executors": [{"image": "a", "command": ["x"]}], "volumes": ["/"]}, "volumes"),
        (
            {"executors": [{"image": "a", "command": ["x"], "stdout": "/proc/self/x"}]},
            "executors[0].stdout",
        ),
        (
            {
                "inputs": [{"path": "/dev/null", "content": "x"}],
                "executors": [{"image": "a", "command": ["x"]}],
            },
            "inputs[0].path",
        ),
        (
            {
                "inputs": [{"path": "/a", "content": "1"}, {"path": "/a", "content": "2"}],
                "executors": [{"image": "a", "command": ["x"]}],
            },
            "inputs[1].path",
        ),
        (
            {
                "inputs": [{"path": "/a", "content": "1"}, {"path": "/a/b", "content": "2"}],
                "executors": [{"image": "a", "command": ["x"]}],
            },
            "inputs[1].path",
        ),
        ({"executors": [{"image": "a", "command": ["x"] * 5000}]}, "executors[0].command"),
        (
            {"executors": [{"image": "a", "command": ["x"], "env": {"V": "v" * 200_000}}]},
            "executors[0].env",
        ),
    ],
)
def test_impossible_tasks_are_400_at_submit(
    tesp_server: TespProcess, body: dict, field: str
) -> None:
    response = requests.post(f"{tesp_server.api}/tasks", json=body, timeout=10)
    assert response.status_code == 400, response.text
    assert response.json()["field"] == field


@pytest.mark.parametrize("raw", ["s9223372036854775808", "s-1", "s0", "s 1", "s\u0663", "x5"])
def test_forged_page_tokens_are_400(tesp_server: TespProcess, raw: str) -> None:
    import base64

    token = base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")
    response = requests.get(f"{tesp_server.api}/tasks", params={"page_token": token}, timeout=10)
    assert response.status_code == 400, response.text
    assert response.json()["field"] == "page_token"


def test_unknown_routes_use_the_error_body(tesp_server: TespProcess) -> None:
    missing = requests.get(f"{tesp_server.api}/nothing-here", timeout=10)
    assert missing.status_code == 404 and missing.json()["status_code"] == 404
    wrong = requests.delete(f"{tesp_server.api}/tasks", timeout=10)
    assert wrong.status_code == 405
    assert wrong.headers["Allow"] == "GET, POST"


def test_executor_logs_appear_while_the_task_runs(tesp_server: TespProcess) -> None:
    body = {
        "executors": [
            {"image": "a", "command": ["sh", "-c", "exit 0"]},
            {"image": "a", "command": ["sleep", "6"]},
        ]
    }
    task_id = requests.post(f"{tesp_server.api}/tasks", json=body, timeout=10).json()["id"]
    deadline = time.monotonic() + 30
    task: dict = {}
    while time.monotonic() < deadline:
        task = requests.get(
            f"{tesp_server.api}/tasks/{task_id}", params={"view": "BASIC"}, timeout=10
        ).json()
        if task["state"] == "RUNNING" and task.get("logs", [{}])[0].get("logs"):
            break
        time.sleep(0.1)
    assert task["state"] == "RUNNING", task
    assert [e["exit_code"] for e in task["logs"][0]["logs"]] == [0]
    requests.post(f"{tesp_server.api}/tasks/{task_id}:cancel", timeout=10)
    assert wait_for_state(tesp_server.api, task_id, TERMINAL)["state"] == "CANCELED"


def test_finished_task_jobs_are_cleaned(tesp_server: TespProcess) -> None:
    # A task ends as soon as the worker's result.json is there; its Pulsar job is still
    # drained and deleted afterwards (its spec holds storage credentials).
    staging = tesp_server.data_dir / "pulsar" / "staging"
    ids = [
        requests.post(
            f"{tesp_server.api}/tasks",
            json={"executors": [{"image": "alpine", "command": ["sh", "-c", f"exit {code}"]}]},
            timeout=10,
        ).json()["id"]
        for code in (0, 4)
    ]
    states = [wait_for_state(tesp_server.api, i, TERMINAL)["state"] for i in ids]
    assert states == ["COMPLETE", "EXECUTOR_ERROR"]
    full = requests.get(f"{tesp_server.api}/tasks/{ids[1]}?view=FULL", timeout=10).json()
    assert full["logs"][0]["logs"][0]["exit_code"] == 4
    deadline = time.monotonic() + 30
    while any((staging / i).exists() for i in ids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [i for i in ids if (staging / i).exists()] == []


def test_debug_logs_never_show_the_pulsar_token(tmp_path: Path) -> None:
    server = TespProcess(
        data_dir=tmp_path / "data",
        storage=tmp_path / "storage",
        extra_args=["--runtime", "none"],
        env={"TESP_LOG_LEVEL": "DEBUG"},
    ).start()
    try:
        task_id = requests.post(
            f"{server.api}/tasks",
            json={"executors": [{"image": "a", "command": ["true"]}]},
            timeout=10,
        ).json()["id"]
        assert wait_for_state(server.api, task_id, TERMINAL)["state"] == "COMPLETE"
        token = json.loads((tmp_path / "data" / "pulsar" / "embedded.json").read_text())["token"]
    finally:
        server.stop()
    log = server.log_text_full()
    assert "private_token=***" in log  # the request lines are there, redacted
    assert token not in log
