"""The worker spec: typed, validated view of the JSON the service writes for each task.

The service validated everything already; the worker checks again because it is the last
place before a string becomes a path on a compute node or an element of an argv.
"""

from __future__ import annotations

import posixpath

# Not typing.TYPE_CHECKING: importing typing costs every task's worker ~12M instructions.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, ClassVar

SPEC_VERSION = 1
RUNTIME_KINDS = frozenset({"none", "bwrap", "docker", "podman", "apptainer", "singularity"})
IO_TYPES = frozenset({"FILE", "DIRECTORY"})
DEFAULT_LOG_TAIL_BYTES = 65536

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
    # [A-Za-z_][A-Za-z0-9_]*, checked without importing re (the worker's start path).
    if (
        not isinstance(key, str)
        or not key.isascii()
        or not key.replace("_", "a").isalnum()
        or key[0].isdigit()
    ):
        raise SpecError(f"{where}: invalid environment variable name {key!r}")
    return key


def validate_image(image: object, where: str) -> str:
    """Return ``image`` if it cannot be mistaken for an option or split by anything."""
    if not isinstance(image, str) or not image:
        raise SpecError(f"{where}: image must be a non-empty string")
    # Control characters are U+0000-U+001F and U+007F (checked without compiling a regex).
    if image.startswith("-") or any(c.isspace() or c < " " or c == "\x7f" for c in image):
        raise SpecError(f"{where}: invalid image name {image!r}")
    return image


def is_wildcard(path: str) -> bool:
    """Whether a TES output path is a POSIX glob (TES 1.1 wildcard output)."""
    return any(c in _GLOB_CHARS for c in path)


class Record:
    """Equality, hash and repr from ``__slots__``, like a frozen dataclass's.

    The worker's value types are plain classes: importing :mod:`dataclasses` (with
    :mod:`inspect`, :mod:`ast`...) cost more than the rest of the worker's start-up.
    Instances are treated as immutable; nothing assigns to them after ``__init__``. The
    order of ``__slots__`` is the field order of the repr (hence the unsorted tuples).
    """

    __slots__: tuple[str, ...] = ()
    _repr_skip: ClassVar[tuple[str, ...]] = ()

    def _key(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, Record)
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        shown = (f"{n}={getattr(self, n)!r}" for n in self.__slots__ if n not in self._repr_skip)
        return f"{type(self).__name__}({', '.join(shown)})"


class Runtime(Record):
    """How executors are run: the runtime kind, an optional binary and site options.

    ``hide``: host directories the executor must not see (bwrap masks each with a tmpfs).
    """

    __slots__ = ("kind", "executable", "extra_args", "hide")  # noqa: RUF023

    def __init__(
        self,
        kind: str,
        executable: str | None = None,
        extra_args: tuple[str, ...] = (),
        hide: tuple[str, ...] = (),
    ) -> None:
        self.kind = kind
        self.executable = executable
        self.extra_args = extra_args
        self.hide = hide


class Input(Record):
    """A TES input: fetched from ``url`` or written from inline ``content`` at ``path``."""

    __slots__ = ("path", "type", "url", "content")  # noqa: RUF023

    def __init__(self, path: str, type: str, url: str | None, content: str | None) -> None:
        self.path = path
        self.type = type
        self.url = url
        self.content = content


class Output(Record):
    """A TES output; a wildcard ``path`` has its ``path_prefix`` stripped before ``url``."""

    __slots__ = ("path", "type", "url", "path_prefix")  # noqa: RUF023

    def __init__(self, path: str, type: str, url: str, path_prefix: str | None) -> None:
        self.path = path
        self.type = type
        self.url = url
        self.path_prefix = path_prefix

    @property
    def wildcard(self) -> bool:
        """Whether ``path`` is a glob pattern."""
        return is_wildcard(self.path)


class Executor(Record):
    """One TES executor: image, argv and its I/O redirections (all TES paths)."""

    __slots__ = (  # noqa: RUF023
        "image",
        "command",
        "workdir",
        "stdin",
        "stdout",
        "stderr",
        "env",
        "ignore_error",
    )

    def __init__(
        self,
        image: str,
        command: tuple[str, ...],
        workdir: str | None = None,
        stdin: str | None = None,
        stdout: str | None = None,
        stderr: str | None = None,
        env: dict[str, str] | None = None,
        ignore_error: bool = False,
    ) -> None:
        self.image = image
        self.command = command
        self.workdir = workdir
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
        self.env: dict[str, str] = {} if env is None else env
        self.ignore_error = ignore_error


class WorkerSpec(Record):
    """The whole worker spec. ``storage`` may hold secrets: never log or show it."""

    __slots__ = (  # noqa: RUF023
        "task_id",
        "runtime",
        "inputs",
        "outputs",
        "volumes",
        "executors",
        "storage",
        "log_tail_bytes",
    )
    _repr_skip: ClassVar[tuple[str, ...]] = ("storage",)

    def __init__(
        self,
        task_id: str,
        runtime: Runtime,
        inputs: tuple[Input, ...],
        outputs: tuple[Output, ...],
        volumes: tuple[str, ...],
        executors: tuple[Executor, ...],
        storage: dict[str, Any],
        log_tail_bytes: int = DEFAULT_LOG_TAIL_BYTES,
    ) -> None:
        self.task_id = task_id
        self.runtime = runtime
        self.inputs = inputs
        self.outputs = outputs
        self.volumes = volumes
        self.executors = executors
        self.storage = storage
        self.log_tail_bytes = log_tail_bytes


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
