"""TES 1.1 task objects, with the spec's field names.

Two families: the inbound models (``*Create``-free: :class:`Task` and its parts as a client
sends them) reject unknown fields and invalid values; the stored/outbound :class:`Task`
carries the server-owned fields (``id``, ``state``, ``logs``, ``creation_time``) too.
A client that sends those server-owned fields has them ignored, not rejected.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

_GLOB_CHARS = re.compile(r"[*?\[]")
# Below the kernel's limits (MAX_ARG_STRLEN is 128 KiB; bwrap takes at most 9000 args).
MAX_ARGS = 4096
MAX_ARG_BYTES = 128 * 1024 - 1
# What one execve receives from the task: every argument and every KEY=VALUE, each with
# its NUL. Half the usual ARG_MAX (2 MiB), leaving room for the runtime's own argv and env.
MAX_COMMAND_BYTES = 1024 * 1024
MAX_ENV = 1024
# One KEY=VALUE is one execve string; the apptainer runtime prefixes the name with
# SINGULARITYENV_ (15 bytes), which must still fit MAX_ARG_BYTES.
MAX_ENV_ENTRY_BYTES = MAX_ARG_BYTES - 16
LONE_SURROGATE = "contains a lone surrogate: not valid Unicode"
_SURROGATE = re.compile("[\ud800-\udfff]")


class State(StrEnum):
    """``tesState``."""

    UNKNOWN = "UNKNOWN"
    QUEUED = "QUEUED"
    INITIALIZING = "INITIALIZING"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    COMPLETE = "COMPLETE"
    EXECUTOR_ERROR = "EXECUTOR_ERROR"
    SYSTEM_ERROR = "SYSTEM_ERROR"
    CANCELED = "CANCELED"
    CANCELING = "CANCELING"
    PREEMPTED = "PREEMPTED"

    @property
    def is_terminal(self) -> bool:
        """A terminal state never changes again."""
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset(
    {State.COMPLETE, State.EXECUTOR_ERROR, State.SYSTEM_ERROR, State.CANCELED, State.PREEMPTED}
)


class FileType(StrEnum):
    """``tesFileType``."""

    FILE = "FILE"
    DIRECTORY = "DIRECTORY"


# Kernel file systems every runtime mounts itself: a TES path there can never be staged.
RESERVED_PREFIXES = ("/proc", "/sys", "/dev")


def check_tes_path(value: str) -> str:
    """A TES path: POSIX absolute, not ``/`` itself nor under /proc, /sys or /dev, no ``..``
    component, no NUL or newline."""
    if not value.startswith("/"):
        raise ValueError("must be an absolute path (start with '/')")
    if any(part == ".." for part in value.split("/")):
        raise ValueError("must not contain '..'")
    if any(c in value for c in "\x00\n\r"):
        raise ValueError("must not contain NUL or newline characters")
    norm = "/" + "/".join(p for p in value.split("/") if p and p != ".")
    if norm == "/":
        raise ValueError("must not be the root directory '/'")
    if any(norm == r or norm.startswith(r + "/") for r in RESERVED_PREFIXES):
        raise ValueError("must not lie under /proc, /sys or /dev")
    return value


TesPath = Annotated[str, Field(min_length=1, max_length=4096)]


class _Inbound(BaseModel):
    model_config = ConfigDict(extra="forbid", use_enum_values=False)


class Executor(_Inbound):
    """``tesExecutor``: one command run in one image."""

    image: str = Field(min_length=1, max_length=1024)
    command: list[str] = Field(min_length=1, max_length=MAX_ARGS)
    workdir: TesPath | None = None
    stdin: TesPath | None = None
    stdout: TesPath | None = None
    stderr: TesPath | None = None
    env: dict[str, str] | None = None
    ignore_error: StrictBool | None = None

    @field_validator("image")
    @classmethod
    def _image(cls, value: str) -> str:
        if value != value.strip() or any(c.isspace() or ord(c) < 32 for c in value):
            raise ValueError("must not contain whitespace or control characters")
        if value.startswith("-"):
            raise ValueError("must not start with '-'")
        return value

    @field_validator("command")
    @classmethod
    def _command(cls, value: list[str]) -> list[str]:
        if any("\x00" in arg for arg in value):
            raise ValueError("arguments must not contain NUL characters")
        if any(len(arg.encode()) > MAX_ARG_BYTES for arg in value):
            raise ValueError(f"an argument is longer than {MAX_ARG_BYTES} bytes")
        if sum(len(arg.encode()) + 1 for arg in value) > MAX_COMMAND_BYTES:
            raise ValueError(f"the arguments add up to more than {MAX_COMMAND_BYTES} bytes")
        return value

    @field_validator("workdir", "stdin", "stdout", "stderr")
    @classmethod
    def _paths(cls, value: str | None) -> str | None:
        return None if value is None else check_tes_path(value)

    @field_validator("env")
    @classmethod
    def _env(cls, value: dict[str, str] | None, info: ValidationInfo) -> dict[str, str] | None:
        for key, val in (value or {}).items():
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
                raise ValueError(f"invalid environment variable name {key!r}")
            if "\x00" in val:
                raise ValueError(f"value of {key!r} must not contain NUL characters")
            if len(key) + 1 + len(val.encode()) > MAX_ENV_ENTRY_BYTES:
                raise ValueError(f"{key}=VALUE is longer than {MAX_ENV_ENTRY_BYTES} bytes")
        if value and len(value) > MAX_ENV:
            raise ValueError(f"at most {MAX_ENV} variables are allowed")
        # ``command`` is validated before ``env``: absent here only when it was refused.
        command: list[str] = info.data.get("command") or []
        total = sum(len(arg.encode()) + 1 for arg in command)
        total += sum(len(k) + len(v.encode()) + 2 for k, v in (value or {}).items())
        if total > MAX_COMMAND_BYTES:
            raise ValueError(
                f"the command and env add up to more than {MAX_COMMAND_BYTES} bytes "
                "(each argument and each KEY=VALUE counts one byte more)"
            )
        return value


class Input(_Inbound):
    """``tesInput``: a file or directory staged into the task before the executors run."""

    name: str | None = None
    description: str | None = None
    url: str | None = None
    path: TesPath
    type: FileType = FileType.FILE
    content: str | None = None
    streamable: StrictBool | None = None

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        return check_tes_path(value)

    @model_validator(mode="after")
    def _source(self) -> Input:
        if self.content is None and not self.url:
            raise ValueError("an input needs a 'url' or a 'content'")
        if self.content is not None and self.type is FileType.DIRECTORY:
            raise ValueError("'content' can only fill a FILE input")
        return self


class Output(_Inbound):
    """``tesOutput``: a file, directory or wildcard uploaded after the executors ran."""

    name: str | None = None
    description: str | None = None
    url: str = Field(min_length=1)
    path: TesPath
    path_prefix: str | None = None
    type: FileType = FileType.FILE

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        return check_tes_path(value)

    @property
    def is_wildcard(self) -> bool:
        """True when ``path`` is a POSIX glob."""
        return bool(_GLOB_CHARS.search(self.path))

    @model_validator(mode="after")
    def _prefix(self) -> Output:
        if self.is_wildcard:
            if not self.path_prefix:
                raise ValueError("a wildcard 'path' needs a 'path_prefix'")
            check_tes_path(self.path_prefix)
            if not self.path.startswith(self.path_prefix):
                raise ValueError("'path' must start with 'path_prefix'")
        return self


class Resources(_Inbound):
    """``tesResources``."""

    cpu_cores: StrictInt | None = Field(default=None, ge=1, le=100_000)
    preemptible: StrictBool | None = None
    ram_gb: float | None = Field(default=None, ge=0, le=1e7, allow_inf_nan=False)
    disk_gb: float | None = Field(default=None, ge=0, le=1e9, allow_inf_nan=False)
    zones: list[str] | None = None
    backend_parameters: dict[str, str] | None = None
    backend_parameters_strict: StrictBool | None = False


class ExecutorLog(BaseModel):
    """``tesExecutorLog``."""

    start_time: str | None = None
    end_time: str | None = None
    stdout: str | None = None
    stderr: str | None = None
    exit_code: int


class OutputFileLog(BaseModel):
    """``tesOutputFileLog``: one uploaded file."""

    url: str
    path: str
    size_bytes: str


class TaskLog(BaseModel):
    """``tesTaskLog``: one attempt at running the task."""

    logs: list[ExecutorLog] = Field(default_factory=list)
    metadata: dict[str, str] | None = None
    start_time: str | None = None
    end_time: str | None = None
    outputs: list[OutputFileLog] = Field(default_factory=list)
    system_logs: list[str] | None = None


_SERVER_OWNED = ("id", "state", "logs", "creation_time")
MAX_TAGS = 128
MAX_TAG_KEY = 256
MAX_TAG_VALUE = 4096


class Task(_Inbound):
    """``tesTask``. As input, the server-owned fields are dropped before validation."""

    id: str | None = None
    state: State | None = None
    name: str | None = Field(default=None, max_length=4096)
    description: str | None = None
    inputs: list[Input] | None = None
    outputs: list[Output] | None = None
    resources: Resources | None = None
    executors: list[Executor] = Field(min_length=1)
    volumes: list[TesPath] | None = None
    tags: dict[str, str] | None = None
    logs: list[TaskLog] | None = None
    creation_time: str | None = None

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is None:
            return None
        if len(value) > MAX_TAGS:
            raise ValueError(f"at most {MAX_TAGS} tags are allowed")
        for key, val in value.items():
            if not key or len(key) > MAX_TAG_KEY:
                raise ValueError(f"a tag key must be 1 to {MAX_TAG_KEY} characters")
            if len(val) > MAX_TAG_VALUE:
                raise ValueError(
                    f"the value of tag {key[:40]!r} exceeds {MAX_TAG_VALUE} characters"
                )
        return value

    @field_validator("volumes")
    @classmethod
    def _volumes(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else [check_tes_path(v) for v in value]

    @classmethod
    def from_client(cls, body: Any) -> Task:
        """Validate a task as a client submitted it, ignoring the server-owned fields.

        Any string in it (value or key, at any depth) with a lone surrogate is refused first:
        it is not Unicode, so it could be neither stored nor answered as JSON.
        """
        if isinstance(body, dict):
            body = {k: v for k, v in body.items() if k not in _SERVER_OWNED}
        found = find_lone_surrogate(body)
        if found is not None:
            loc, problem = found
            error = InitErrorDetails(
                type=PydanticCustomError("lone_surrogate", problem), loc=loc, input=None
            )
            raise ValidationError.from_exception_data(cls.__name__, [error], hide_input=True)
        return cls.model_validate(body)


def _not_unicode(text: str) -> bool:
    return not text.isascii() and _SURROGATE.search(text) is not None


def find_lone_surrogate(value: Any) -> tuple[tuple[str | int, ...], str] | None:
    """The location (pydantic style) and problem of the first string in ``value``, a value or
    a dict key at any depth, that holds a lone surrogate; None when there is none.

    A bad key is reported at its dict, as the key itself cannot be echoed.
    """
    # Iterative: a body nested nearly as deep as the JSON parser allows must not recurse.
    stack: list[tuple[tuple[str | int, ...], Any]] = [((), value)]
    while stack:
        loc, item = stack.pop()
        if isinstance(item, str):
            if _not_unicode(item):
                return loc, LONE_SURROGATE
        elif isinstance(item, dict):
            if any(isinstance(k, str) and _not_unicode(k) for k in item):
                return loc, f"a key {LONE_SURROGATE}"
            stack.extend(((*loc, str(k)), v) for k, v in reversed(item.items()))
        elif isinstance(item, list | tuple):
            stack.extend(((*loc, n), v) for n, v in reversed(list(enumerate(item))))
    return None


class CreateTaskResponse(BaseModel):
    """``tesCreateTaskResponse``."""

    id: str


class CancelTaskResponse(BaseModel):
    """``tesCancelTaskResponse``: an empty object."""


class ListTasksResponse(BaseModel):
    """``tesListTasksResponse``."""

    tasks: list[dict[str, Any]]
    next_page_token: str | None = None
