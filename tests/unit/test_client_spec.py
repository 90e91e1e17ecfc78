"""``tesp run`` flags -> tesTask, and task files (pure functions of tesp_core.client)."""

from __future__ import annotations

import pytest

from tesp_core.client.errors import UsageError
from tesp_core.client.task_spec import (
    RunSpec,
    build_task,
    parse_task_file,
    split_input,
    split_output,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("s3://bucket/key:/data/key", ("s3://bucket/key", "/data/key")),
        ("http://host:8080/f.txt:/in/f.txt", ("http://host:8080/f.txt", "/in/f.txt")),
        ("ftp://u@h:21/a:b:/in/a", ("ftp://u@h:21/a:b", "/in/a")),
        ("file:///srv/x:/data/x", ("file:///srv/x", "/data/x")),
        ("https://h/q?a=1:2:/data/q", ("https://h/q?a=1:2", "/data/q")),
    ],
)
def test_split_input_at_last_colon_before_an_absolute_path(
    value: str, expected: tuple[str, str]
) -> None:
    assert split_input("-i", value) == expected


@pytest.mark.parametrize(
    "value", ["http://host/file", "/data/x", "s3://b/k:relative", "nocolon", "s3://b/k:"]
)
def test_split_input_errors_name_the_flag(value: str) -> None:
    with pytest.raises(UsageError) as err:
        split_input("-i", value)
    assert str(err.value).startswith(f"-i {value!r}: expected URL:PATH")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("/data/out:s3://b/out", ("/data/out", "s3://b/out")),
        ("/data/a:b:http://h:81/x", ("/data/a:b", "http://h:81/x")),
        ("/o/*.txt:file:///srv/o/", ("/o/*.txt", "file:///srv/o/")),
    ],
)
def test_split_output_at_first_colon_before_a_url(value: str, expected: tuple[str, str]) -> None:
    assert split_output("-o", value) == expected


@pytest.mark.parametrize("value", ["s3://b/out:/data/out", "/data/out", "rel:s3://b/k"])
def test_split_output_errors_name_the_flag(value: str) -> None:
    with pytest.raises(UsageError) as err:
        split_output("-o", value)
    assert str(err.value).startswith(f"-o {value!r}: expected PATH:URL")


def test_build_task_keeps_argv_and_every_field() -> None:
    spec = RunSpec(
        image="alpine",
        command=["sh", "-c", 'echo "$1"; rm -rf /', "a b; c"],
        inputs=["s3://b/in:/data/in"],
        outputs=["/data/out:s3://b/out"],
        tags=["k=v=w", "flag"],
        env=["A=1"],
        name="n",
        workdir="/data",
        cpu=2,
        ram=1.5,
    )
    assert build_task(spec) == {
        "name": "n",
        "executors": [
            {
                "image": "alpine",
                "command": ["sh", "-c", 'echo "$1"; rm -rf /', "a b; c"],
                "workdir": "/data",
                "env": {"A": "1"},
            }
        ],
        "inputs": [{"url": "s3://b/in", "path": "/data/in"}],
        "outputs": [{"path": "/data/out", "url": "s3://b/out"}],
        "tags": {"k": "v=w", "flag": ""},
        "resources": {"cpu_cores": 2, "ram_gb": 1.5},
    }


def test_build_task_needs_a_command_and_good_env() -> None:
    with pytest.raises(UsageError, match="give the command after --"):
        build_task(RunSpec(image="a", command=[]))
    with pytest.raises(UsageError, match="--env 'NOEQUALS': expected KEY=VALUE"):
        build_task(RunSpec(image="a", command=["true"], env=["NOEQUALS"]))


def test_parse_task_file_errors_give_position_and_kind() -> None:
    with pytest.raises(UsageError, match=r"^t\.json: not valid JSON at line 2 column 3: "):
        parse_task_file("t.json", '{"a":\n  }')
    with pytest.raises(
        UsageError, match=r"^t\.json: must be a JSON object \(a tesTask\), not array"
    ):
        parse_task_file("t.json", "[1]")
    assert parse_task_file("t.json", '{"name": "x"}') == {"name": "x"}
