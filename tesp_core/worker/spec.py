"""The worker spec: typed, validated view of the JSON the service writes for each task.

The service validated everything already; the worker checks again because it is the last
place before a string becomes a path on a compute node or an element of an argv.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field
from typing import Any

SPEC_VERSION = 1
RUNTIME_KINDS = frozenset({"none", "bwrap", "docker", "podman", "apptainer", "singularity"})
IO_TYPES = frozenset({"FILE", "DIRECTORY"})
DEFAULT_LOG_TAIL_BYTES = 65536

_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_GLOB_CHARS = frozenset("*?[")


class SpecError(ValueError):
    """The worker spec is malformed; the message names the offending field, never a secret."""


def validate_tes_path(value: object, where: str) -> str:
    """Return ``value`` normalised if it is an absolute POSIX path without ``..``."""
    if not isinstance(value, str) or not value:
        raise SpecError(f"{where}: path must be a non-empty string")
    if not value.startswith("/"):
        raise SpecError(f"{where}: path {value!r} is not absolute")
    if "\x00" in value:
        raise SpecError(f"{where}: path contains a NUL byte")
    if ".." in value.split("/"):
        raise SpecError(f"{where}: path {value!r} contains '..'")
    # normpath keeps a leading '//' (POSIX allows it to mean something else); collapse it.
    normal = posixpath.normpath(value)
    return "/" + normal.lstrip("/")


def validate_env_key(key: object, where: str) -> str:
    """Return ``key`` if it is a portable environment variable name."""
    if not isinstance(key, str) or not _ENV_KEY.match(key):
        raise SpecError(f"{where}: invalid environment variable name {key!r}")
    return key


def validate_image(image: object, where: str) -> str:
    """Return ``image`` if it cannot be mistaken for an option or split by anything."""
    if not isinstance(image, str) or not image:
        raise SpecError(f"{where}: image must be a non-empty string")
    if image.startswith("-") or _CONTROL.search(image) or any(c.isspace() for c in image):
        raise SpecError(f"{where}: invalid image name {image!r}")
    return image


def is_wildcard(path: str) -> bool:
    """Whether a TES output path is a POSIX glob (TES 1.1 wildcard output)."""
    return any(c in _GLOB_CHARS for c in path)


@dataclass(frozen=True)
class Runtime:
    """How executors are run: the runtime kind, an optional binary and site options."""

    kind: str
    executable: str | None = None
    extra_args: tuple[str, ...] = ()
    # Host directories the executor must not see (bwrap masks each with an empty tmpfs).
    hide: tuple[str, ...] = ()


@dataclass(frozen=True)
class Input:
    """A TES input: fetched from ``url`` or written from inline ``content`` at ``path``."""

    path: str
    type: str
    url: str | None
    content: str | None


@dataclass(frozen=True)
class Output:
    """A TES output; a wildcard ``path`` has its ``path_prefix`` stripped before ``url``."""

    path: str
    type: str
    url: str
    path_prefix: str | None

    @property
    def wildcard(self) -> bool:
        """Whether ``path`` is a glob pattern."""
        return is_wildcard(self.path)


@dataclass(frozen=True)
class Executor:
    """One TES executor: image, argv and its I/O redirections (all TES paths)."""

    image: str
    command: tuple[str, ...]
    workdir: str | None = None
    stdin: str | None = None
    stdout: str | None = None
    stderr: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    ignore_error: bool = False


@dataclass(frozen=True)
class WorkerSpec:
    """The whole worker spec. ``storage`` may hold secrets: never log or show it."""

    task_id: str
    runtime: Runtime
    inputs: tuple[Input, ...]
    outputs: tuple[Output, ...]
    volumes: tuple[str, ...]
    executors: tuple[Executor, ...]
    storage: dict[str, Any] = field(repr=False)
    log_tail_bytes: int = DEFAULT_LOG_TAIL_BYTES


def _obj(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise SpecError(f"{where}: expected an object")
    return value


def _or_empty(value: object) -> object:
    return {} if value is None else value


def _list(value: object, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise SpecError(f"{where}: expected a list")
    return value


def _opt_str(value: object, where: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise SpecError(f"{where}: expected a string or null")
    return value


def _io_type(value: object, where: str) -> str:
    kind = "FILE" if value is None else value
    if kind not in IO_TYPES:
        raise SpecError(f"{where}: type must be FILE or DIRECTORY, not {value!r}")
    assert isinstance(kind, str)
    return kind


def _opt_path(value: object, where: str) -> str | None:
    return None if value is None else validate_tes_path(value, where)


def parse_runtime(raw: object) -> Runtime:
    """Parse the ``runtime`` object."""
    data = _obj(raw, "runtime")
    kind = data.get("kind")
    if kind not in RUNTIME_KINDS:
        raise SpecError(f"runtime.kind: unknown runtime {kind!r}")
    extra = _list(data.get("extra_args"), "runtime.extra_args")
    if not all(isinstance(arg, str) for arg in extra):
        raise SpecError("runtime.extra_args: expected a list of strings")
    executable = _opt_str(data.get("executable"), "runtime.executable")
    hide = _list(data.get("hide"), "runtime.hide")
    if not all(isinstance(p, str) and p.startswith("/") for p in hide):
        raise SpecError("runtime.hide: expected a list of absolute paths")
    return Runtime(
        kind=str(kind), executable=executable or None, extra_args=tuple(extra), hide=tuple(hide)
    )


def parse_input(raw: object, where: str) -> Input:
    """Parse one input; exactly one of ``url`` and ``content`` must be given."""
    data = _obj(raw, where)
    path = validate_tes_path(data.get("path"), f"{where}.path")
    kind = _io_type(data.get("type"), f"{where}.type")
    url = _opt_str(data.get("url"), f"{where}.url")
    content = _opt_str(data.get("content"), f"{where}.content")
    if (url is None) == (content is None):
        raise SpecError(f"{where}: exactly one of url and content is required")
    if content is not None and kind != "FILE":
        raise SpecError(f"{where}: inline content is only allowed for a FILE")
    return Input(path=path, type=kind, url=url, content=content)


def parse_output(raw: object, where: str) -> Output:
    """Parse one output; a wildcard needs a ``path_prefix`` that the pattern starts with."""
    data = _obj(raw, where)
    path = validate_tes_path(data.get("path"), f"{where}.path")
    kind = _io_type(data.get("type"), f"{where}.type")
    url = _opt_str(data.get("url"), f"{where}.url")
    if not url:
        raise SpecError(f"{where}: url is required")
    prefix = _opt_str(data.get("path_prefix"), f"{where}.path_prefix")
    if is_wildcard(path):
        if not prefix:
            raise SpecError(f"{where}: a wildcard output needs path_prefix")
        if not data["path"].startswith(prefix) and not path.startswith(prefix):
            raise SpecError(f"{where}: path does not start with path_prefix")
    return Output(path=path, type=kind, url=url, path_prefix=prefix or None)


def parse_executor(raw: object, where: str) -> Executor:
    """Parse one executor; env keys, image and every path are checked."""
    data = _obj(raw, where)
    image = validate_image(data.get("image"), f"{where}.image")
    command = _list(data.get("command"), f"{where}.command")
    if not command or not all(isinstance(arg, str) for arg in command):
        raise SpecError(f"{where}.command: expected a non-empty list of strings")
    if any("\x00" in arg for arg in command):
        raise SpecError(f"{where}.command: an argument contains a NUL byte")
    env_obj = _obj(_or_empty(data.get("env")), f"{where}.env")
    env: dict[str, str] = {}
    for key, value in env_obj.items():
        validate_env_key(key, f"{where}.env")
        if not isinstance(value, str) or "\x00" in value:
            raise SpecError(f"{where}.env.{key}: value must be a string without NUL")
        env[key] = value
    ignore = data.get("ignore_error", False)
    if not isinstance(ignore, bool):
        raise SpecError(f"{where}.ignore_error: expected a boolean")
    return Executor(
        image=image,
        command=tuple(command),
        workdir=_opt_path(data.get("workdir"), f"{where}.workdir"),
        stdin=_opt_path(data.get("stdin"), f"{where}.stdin"),
        stdout=_opt_path(data.get("stdout"), f"{where}.stdout"),
        stderr=_opt_path(data.get("stderr"), f"{where}.stderr"),
        env=env,
        ignore_error=ignore,
    )


def parse_spec(raw: object) -> WorkerSpec:
    """Turn the decoded spec JSON into a :class:`WorkerSpec`, or raise :class:`SpecError`."""
    data = _obj(raw, "spec")
    if data.get("version") != SPEC_VERSION:
        raise SpecError(f"version: unsupported spec version {data.get('version')!r}")
    task_id = data.get("task_id")
    if not isinstance(task_id, str) or not task_id:
        raise SpecError("task_id: expected a non-empty string")
    executors = _list(data.get("executors"), "executors")
    if not executors:
        raise SpecError("executors: at least one executor is required")
    tail = data.get("log_tail_bytes", DEFAULT_LOG_TAIL_BYTES)
    if isinstance(tail, bool) or not isinstance(tail, int) or tail < 0:
        raise SpecError("log_tail_bytes: expected a non-negative integer")
    return WorkerSpec(
        task_id=task_id,
        runtime=parse_runtime(data.get("runtime")),
        inputs=tuple(
            parse_input(item, f"inputs[{i}]")
            for i, item in enumerate(_list(data.get("inputs"), "inputs"))
        ),
        outputs=tuple(
            parse_output(item, f"outputs[{i}]")
            for i, item in enumerate(_list(data.get("outputs"), "outputs"))
        ),
        volumes=tuple(
            validate_tes_path(item, f"volumes[{i}]")
            for i, item in enumerate(_list(data.get("volumes"), "volumes"))
        ),
        executors=tuple(
            parse_executor(item, f"executors[{i}]") for i, item in enumerate(executors)
        ),
        storage=_obj(_or_empty(data.get("storage")), "storage"),
        log_tail_bytes=tail,
    )
