"""Parsing and validating the worker spec."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tesp_core.worker.spec import (
    Executor,
    Input,
    Output,
    SpecError,
    parse_spec,
    validate_env_key,
    validate_image,
    validate_tes_path,
)

SPEC: dict[str, Any] = {
    "version": 1,
    "task_id": "3f0c",
    "runtime": {"kind": "bwrap", "executable": None, "extra_args": []},
    "inputs": [
        {"path": "/data/in.txt", "type": "FILE", "url": "file:///srv/x.txt", "content": None},
        {"path": "/data/hello", "type": "FILE", "url": None, "content": "hello\n"},
    ],
    "outputs": [
        {
            "path": "/data/out.txt",
            "type": "FILE",
            "url": "file:///srv/out.txt",
            "path_prefix": None,
        },
        {
            "path": "/data/*.log",
            "type": "FILE",
            "url": "file:///srv/logs/",
            "path_prefix": "/data/",
        },
    ],
    "volumes": ["/vol"],
    "executors": [
        {
            "image": "ubuntu:24.04",
            "command": ["cat", "/data/in.txt"],
            "workdir": "/data",
            "stdin": None,
            "stdout": "/data/out.txt",
            "stderr": None,
            "env": {"A": "1"},
            "ignore_error": False,
        }
    ],
    "storage": {"file_roots": ["/srv"], "s3": {"endpoint_url": None}, "http": {}},
    "log_tail_bytes": 65536,
}


def spec_with(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    spec = copy.deepcopy(SPEC)
    target: Any = spec
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return spec


def test_the_documented_example_parses() -> None:
    spec = parse_spec(SPEC)
    assert spec.task_id == "3f0c"
    assert spec.runtime.kind == "bwrap"
    assert spec.inputs == (
        Input("/data/in.txt", "FILE", "file:///srv/x.txt", None),
        Input("/data/hello", "FILE", None, "hello\n"),
    )
    assert spec.outputs[1] == Output("/data/*.log", "FILE", "file:///srv/logs/", "/data/")
    assert spec.outputs[1].wildcard and not spec.outputs[0].wildcard
    assert spec.volumes == ("/vol",)
    assert spec.executors == (
        Executor(
            "ubuntu:24.04",
            ("cat", "/data/in.txt"),
            "/data",
            None,
            "/data/out.txt",
            None,
            {"A": "1"},
            False,
        ),
    )
    assert spec.log_tail_bytes == 65536
    assert "file_roots" not in repr(spec)  # storage may hold secrets


@pytest.mark.parametrize(
    ("raw", "normal"), [("/a/b", "/a/b"), ("/a//b/./c/", "/a/b/c"), ("//x", "/x"), ("/", "/")]
)
def test_paths_are_normalised(raw: str, normal: str) -> None:
    assert validate_tes_path(raw, "p") == normal


@pytest.mark.parametrize("bad", ["", "rel/x", "/a/../b", "/..", "/a/\x00b", None, 3])
def test_bad_paths_are_refused(bad: Any) -> None:
    with pytest.raises(SpecError, match=r"^p: "):
        validate_tes_path(bad, "p")


@pytest.mark.parametrize("key", ["A", "_x", "PATH_2"])
def test_env_keys_accepted(key: str) -> None:
    assert validate_env_key(key, "env") == key


@pytest.mark.parametrize("key", ["", "1A", "A-B", "A B", "A=B", "$(id)", "Ä"])
def test_env_keys_refused(key: str) -> None:
    with pytest.raises(SpecError, match="invalid environment variable name"):
        validate_env_key(key, "env")


@pytest.mark.parametrize("image", ["ubuntu:24.04", "quay.io/b/x@sha256:ab", "/srv/i.sif"])
def test_images_accepted(image: str) -> None:
    assert validate_image(image, "i") == image


@pytest.mark.parametrize("image", ["", "-v", "--privileged", "a b", "a\tb", "a\nb", "x\x1b[0m"])
def test_images_refused(image: str) -> None:
    with pytest.raises(SpecError, match="image"):
        validate_image(image, "i")


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("version",), 2, "unsupported spec version"),
        (("task_id",), "", "task_id"),
        (("runtime", "kind"), "lxc", "unknown runtime 'lxc'"),
        (("runtime", "extra_args"), [1], "extra_args"),
        (("inputs", 0, "path"), "data/in.txt", "inputs\\[0\\].path: .* not absolute"),
        (("inputs", 0, "content"), "x", "exactly one of url and content"),
        (("inputs", 1, "content"), None, "exactly one of url and content"),
        (("inputs", 1, "type"), "DIRECTORY", "only allowed for a FILE"),
        (("inputs", 0, "type"), "LINK", "FILE or DIRECTORY"),
        (("outputs", 0, "url"), None, "url is required"),
        (("outputs", 1, "path_prefix"), None, "needs path_prefix"),
        (("outputs", 1, "path_prefix"), "/other/", "does not start with path_prefix"),
        (("volumes", 0), "/vol/../etc", "contains '..'"),
        (("executors",), [], "at least one executor"),
        (("executors", 0, "command"), [], "non-empty list"),
        (("executors", 0, "command"), ["a\x00b"], "NUL"),
        (("executors", 0, "image"), "-it", "invalid image"),
        (("executors", 0, "env"), {"A B": "1"}, "invalid environment variable name"),
        (("executors", 0, "env"), {"A": 1}, "value must be a string"),
        (("executors", 0, "workdir"), "../x", "not absolute"),
        (("executors", 0, "stdout"), "/a/../../etc/passwd", "contains '..'"),
        (("executors", 0, "ignore_error"), "yes", "boolean"),
        (("log_tail_bytes",), -1, "log_tail_bytes"),
        (("log_tail_bytes",), True, "log_tail_bytes"),
        (("storage",), [], "storage: expected an object"),
    ],
)
def test_invalid_specs_name_the_field(path: tuple[Any, ...], value: Any, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        parse_spec(spec_with(path, value))


def test_not_an_object() -> None:
    with pytest.raises(SpecError, match="spec: expected an object"):
        parse_spec([])


def test_defaults() -> None:
    spec = copy.deepcopy(SPEC)
    for key in ("inputs", "outputs", "volumes", "log_tail_bytes"):
        del spec[key]
    spec["executors"] = [{"image": "x", "command": ["true"]}]
    parsed = parse_spec(spec)
    assert (parsed.inputs, parsed.outputs, parsed.volumes) == ((), (), ())
    assert parsed.log_tail_bytes == 65536
    assert parsed.executors[0] == Executor("x", ("true",))
