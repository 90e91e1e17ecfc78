"""TES model validation and the three views (pure logic)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tesp_core.models import State, Task, View, render
from tesp_core.service import validation_error

EXECUTOR = {"image": "alpine", "command": ["true"]}


def _field(body: dict) -> str:
    with pytest.raises(ValidationError) as info:
        Task.from_client(body)
    return validation_error(info.value).field


def test_server_owned_fields_are_dropped() -> None:
    task = Task.from_client(
        {"id": "x", "state": "COMPLETE", "logs": [], "creation_time": "t", "executors": [EXECUTOR]}
    )
    assert (task.id, task.state, task.logs, task.creation_time) == (None, None, None, None)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"executors": [{**EXECUTOR, "image": "alpine latest"}]}, "executors[0].image"),
        ({"executors": [{**EXECUTOR, "image": "-v"}]}, "executors[0].image"),
        ({"executors": [{**EXECUTOR, "stdin": "/a/b/../c"}]}, "executors[0].stdin"),
        ({"executors": [{**EXECUTOR, "env": {"1X": "v"}}]}, "executors[0].env"),
        ({"executors": [EXECUTOR], "volumes": ["vol"]}, "volumes"),
        (
            {
                "executors": [EXECUTOR],
                "inputs": [{"path": "/d", "type": "DIRECTORY", "content": "x"}],
            },
            "inputs[0]",
        ),
        (
            {
                "executors": [EXECUTOR],
                "outputs": [{"path": "/o/*.txt", "path_prefix": "/p/", "url": "file:///x/"}],
            },
            "outputs[0]",
        ),
        ({"executors": [EXECUTOR], "resources": {"cpu_cores": 0}}, "resources.cpu_cores"),
        ({"executors": [{**EXECUTOR, "extra": 1}]}, "executors[0].extra"),
        ({"executors": [EXECUTOR], "tags": {f"k{i}": "" for i in range(129)}}, "tags"),
        ({"executors": [EXECUTOR], "tags": {"": "v"}}, "tags"),
        ({"executors": [EXECUTOR], "tags": {"k": "v" * 4097}}, "tags"),
        ({"executors": [EXECUTOR], "name": "n" * 4097}, "name"),
    ],
)
def test_invalid_fields_are_named(body: dict, field: str) -> None:
    assert _field(body) == field


def test_wildcard_output_with_prefix_is_accepted() -> None:
    task = Task.from_client(
        {
            "executors": [EXECUTOR],
            "outputs": [{"path": "/data/*.log", "path_prefix": "/data/", "url": "s3://b/logs/"}],
        }
    )
    assert task.outputs is not None and task.outputs[0].is_wildcard


def _finished_task() -> Task:
    return Task.model_validate(
        {
            "id": "t1",
            "state": "COMPLETE",
            "executors": [EXECUTOR],
            "inputs": [{"path": "/in", "content": "payload"}],
            "logs": [
                {
                    "logs": [{"exit_code": 0, "stdout": "o", "stderr": "e"}],
                    "outputs": [],
                    "system_logs": ["sys"],
                }
            ],
        }
    )


def test_views() -> None:
    task = _finished_task()
    assert render(task, View.MINIMAL) == {"id": "t1", "state": State.COMPLETE}
    basic = render(task, View.BASIC)
    assert "content" not in basic["inputs"][0]
    assert basic["logs"][0]["logs"] == [{"exit_code": 0}]
    assert "system_logs" not in basic["logs"][0]
    full = render(task, View.FULL)
    assert full["inputs"][0]["content"] == "payload"
    assert full["logs"][0]["logs"][0] == {"exit_code": 0, "stdout": "o", "stderr": "e"}
    assert full["logs"][0]["system_logs"] == ["sys"]
    # Rendering BASIC does not alter the task itself.
    assert task.inputs is not None and task.inputs[0].content == "payload"


def test_secret_env_values_are_masked_in_views() -> None:
    task = Task.model_validate(
        {
            "id": "t2",
            "state": "QUEUED",
            "executors": [
                {
                    "image": "a",
                    "command": ["x"],
                    "env": {
                        "AWS_SECRET_ACCESS_KEY": "s1",
                        "API_TOKEN": "s2",
                        "DB_PASSWORD": "s3",
                        "SNAKEMAKE_STORAGE_S3_ACCESS_KEY": "s4",
                        "KEY": "s5",
                        "PATH": "/bin",
                        "MONKEY": "banana",
                    },
                }
            ],
        }
    )
    env = render(task, View.FULL, redact_url=lambda u: u)["executors"][0]["env"]
    assert env == {
        "AWS_SECRET_ACCESS_KEY": "***",
        "API_TOKEN": "***",
        "DB_PASSWORD": "***",
        "SNAKEMAKE_STORAGE_S3_ACCESS_KEY": "***",
        "KEY": "***",
        "PATH": "/bin",
        "MONKEY": "banana",
    }
    # The stored task keeps the real values for the worker.
    assert task.executors[0].env is not None
    assert task.executors[0].env["DB_PASSWORD"] == "s3"
