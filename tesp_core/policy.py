"""What this server accepts beyond the TES schema: URL schemes, file roots, sizes, parameters.

Pure checks against the server's configuration; each failure names the field.
"""

from __future__ import annotations

import os.path
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from tesp_core.backends.scheduler import SCHEDULER_PARAMETERS, check_scheduler_parameters
from tesp_core.errors import InvalidTaskError
from tesp_core.models import FileType, Task

# backend_parameters keys TESP understands (advertised in service-info). "backend" and
# "labels" choose among named backends (docs/deployment-backends.md).
SUPPORTED_BACKEND_PARAMETERS: tuple[str, ...] = (*SCHEDULER_PARAMETERS, "backend", "labels")


def backend_parameters(scheduler: bool) -> tuple[str, ...]:
    """The keys service-info advertises: the scheduler's (slurm_*) only when some backend
    declares a scheduler. The others' values are still checked, and otherwise ignored."""
    return SUPPORTED_BACKEND_PARAMETERS if scheduler else ("backend", "labels")


@dataclass(frozen=True)
class Policy:
    """The server-side limits a task must fit."""

    schemes: frozenset[str]
    file_roots: tuple[str, ...]
    max_content_bytes: int
    # Some backend submits to a scheduler (setting scheduler / pulsar_scheduler).
    scheduler: bool = True


def check_task(task: Task, policy: Policy) -> None:
    """Raise InvalidTaskError naming the first field this server cannot accept."""
    check_input_paths(task)
    for n, item in enumerate(task.inputs or []):
        if item.content is not None:
            if len(item.content.encode()) > policy.max_content_bytes:
                raise InvalidTaskError(
                    f"inputs[{n}].content",
                    f"larger than this server's limit of {policy.max_content_bytes} bytes",
                )
        elif item.url:
            check_url(f"inputs[{n}].url", item.url, policy)
    for n, out in enumerate(task.outputs or []):
        check_url(f"outputs[{n}].url", out.url, policy)
    check_scheduler_parameters(task)
    resources = task.resources
    if resources and resources.backend_parameters_strict:
        supported = backend_parameters(policy.scheduler)
        for key in resources.backend_parameters or {}:
            if key not in supported:
                raise InvalidTaskError(
                    f"resources.backend_parameters.{key}",
                    "not supported by this server (backend_parameters_strict is true); "
                    f"supported: {list(supported)}",
                )


def check_input_paths(task: Task) -> None:
    """Two inputs at one path, or anything below a FILE input, can never be staged."""
    seen: dict[str, int] = {}
    files: dict[str, int] = {}
    for n, item in enumerate(task.inputs or []):
        path = os.path.normpath(item.path)
        if path in seen:
            raise InvalidTaskError(f"inputs[{n}].path", f"repeats inputs[{seen[path]}].path")
        seen[path] = n
        if item.type is FileType.FILE:
            files[path] = n
    for n, item in enumerate(task.inputs or []):
        path = os.path.normpath(item.path)
        for file_path, m in files.items():
            if path.startswith(file_path + "/"):
                raise InvalidTaskError(f"inputs[{n}].path", f"lies inside the FILE inputs[{m}]")


def check_url(field: str, url: str, policy: Policy) -> None:
    """A URL must use a reachable scheme; a file URL must lie under an allowed root."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise InvalidTaskError(field, "not a valid URL") from exc
    scheme = parts.scheme.lower()
    if not scheme and url.startswith("/"):
        scheme = "file"
    if scheme not in policy.schemes:
        raise InvalidTaskError(
            field,
            f"URL scheme {scheme or '(none)'!r} is not supported; use one of "
            f"{sorted(policy.schemes)}",
        )
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise InvalidTaskError(field, "a file:// URL must not name a host")
        path = unquote(parts.path) if parts.scheme else url
        if not is_under_roots(path, policy.file_roots):
            raise InvalidTaskError(
                field, "file path is outside the server's allowed roots (setting file_roots)"
            )


def is_under_roots(path: str, roots: Sequence[str]) -> bool:
    """True when the normalized absolute ``path`` lies inside one of ``roots``."""
    if not path.startswith("/") or any(p == ".." for p in path.split("/")):
        return False
    norm = os.path.normpath(path)
    for root in roots:
        base = os.path.normpath(root)
        if norm == base or norm.startswith(base.rstrip("/") + "/"):
            return True
    return False
