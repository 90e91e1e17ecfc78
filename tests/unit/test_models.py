"""TES model validation and the three views (pure logic)."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from tesp_core.models import State, Task, View, render
from tesp_core.models.task import (
    LONE_SURROGATE,
    MAX_COMMAND_BYTES,
    MAX_ENV_ENTRY_BYTES,
    find_lone_surrogate,
)
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


BAD = "ok\ud800"  # a lone surrogate: JSON "\ud800" parses to it, UTF-8 cannot encode it


@pytest.mark.parametrize(
    ("body", "field", "problem"),
    [
        ({"description": BAD}, "description", "contains a lone surrogate"),
        ({"name": BAD}, "name", "contains a lone surrogate"),
        ({"tags": {BAD: "v"}}, "tags", "a key contains a lone surrogate"),
        ({"tags": {"k": BAD}}, "tags.k", "contains a lone surrogate"),
        ({"inputs": [{"path": "/a", "content": BAD}]}, "inputs[0].content", "contains"),
        ({"resources": {"zones": ["z", BAD]}}, "resources.zones[1]", "contains"),
        (
            {"resources": {"backend_parameters": {BAD: "v"}}},
            "resources.backend_parameters",
            "a key contains a lone surrogate",
        ),
        (
            {"resources": {"backend_parameters": {"k": "\udfff"}}},
            "resources.backend_parameters.k",
            "contains",
        ),
        (
            {"executors": [EXECUTOR, {**EXECUTOR, "command": ["a", BAD]}]},
            "executors[1].command[1]",
            "contains",
        ),
        ({"executors": [{**EXECUTOR, "env": {"V": BAD}}]}, "executors[0].env.V", "contains"),
        ({"executors": [{**EXECUTOR, "env": {BAD: "v"}}]}, "executors[0].env", "a key contains"),
        ({"outputs": [{"path": BAD, "url": "s3://b/k"}]}, "outputs[0].path", "contains"),
        ({BAD: 1}, "body", "a key contains a lone surrogate"),
        ({"unknown": {"deep": [[{"x": BAD}]]}}, "unknown.deep[0][0].x", "contains"),
    ],
)
def test_lone_surrogates_anywhere_are_refused_naming_the_field(
    body: dict, field: str, problem: str
) -> None:
    with pytest.raises(ValidationError) as info:
        Task.from_client({"executors": [EXECUTOR], **body})
    error = validation_error(info.value)
    assert (error.field, error.problem.startswith(problem)) == (field, True)
    assert error.problem.endswith("not valid Unicode")
    assert "\ud800" not in str(error) and "\udfff" not in str(error)
    assert "\ud800" not in str(info.value)  # the input is hidden in pydantic's text too


def test_paired_surrogates_and_other_unicode_are_accepted() -> None:
    # JSON "\ud83d\ude00" is one character (U+1F600) once parsed.
    text = json.loads('"\\ud83d\\ude00 \u65e5\u672c \ufffd"')
    task = Task.from_client({"description": text, "tags": {text: text}, "executors": [EXECUTOR]})
    assert task.description == text and task.tags == {text: text}


def test_lone_surrogate_search_does_not_recurse() -> None:
    deep: object = BAD
    for _ in range(5000):
        deep = [deep]
    assert find_lone_surrogate({"x": deep}) == (("x", *[0] * 5000), LONE_SURROGATE)
    assert find_lone_surrogate({"x": [1, None, 2.5, True, {"y": "fine"}]}) is None


def _env_field(command: list[str], env: dict[str, str]) -> tuple[str, str] | None:
    try:
        Task.from_client({"executors": [EXECUTOR, {**EXECUTOR, "command": command, "env": env}]})
    except ValidationError as exc:
        error = validation_error(exc)
        return error.field, error.problem
    return None


def test_command_and_env_together_are_bounded_like_execve() -> None:
    # The tester's case: 20 values of 131,000 bytes; each fits, together they cannot exec.
    big = {f"V{i}": "x" * 131_000 for i in range(20)}
    assert _env_field(["true"], big) == (
        "executors[1].env",
        f"the command and env add up to more than {MAX_COMMAND_BYTES} bytes "
        "(each argument and each KEY=VALUE counts one byte more)",
    )
    # Exactly at the limit: argv "true\0" (5 bytes) + "V=...\0" entries.
    filler = MAX_COMMAND_BYTES - 5
    env = {f"V{i}": "x" * (100_000 - 4) for i in range(filler // 100_000)}
    rest = filler - 100_000 * len(env)
    env["Z"] = "x" * (rest - 3)
    assert sum(len(k) + len(v) + 2 for k, v in env.items()) == filler
    assert _env_field(["true"], env) is None
    env["Z"] += "x"
    assert _env_field(["true"], env) is not None
    # Arguments count too: a command (900,009 bytes) and an env (200,006) that each fit.
    args = ["y" * 100_000] * 9
    assert _env_field(args, {"A": "x" * 100_000}) is None
    assert _env_field(args, {"A": "x" * 100_000, "B": "x" * 100_000}) is not None


def test_one_env_entry_fits_one_execve_string() -> None:
    assert _env_field(["true"], {"A": "x" * (MAX_ENV_ENTRY_BYTES - 2)}) is None
    assert _env_field(["true"], {"A": "é" * (MAX_ENV_ENTRY_BYTES // 2)}) == (
        "executors[1].env",
        f"A=VALUE is longer than {MAX_ENV_ENTRY_BYTES} bytes",
    )
