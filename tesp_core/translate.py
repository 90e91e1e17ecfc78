"""TES task -> the worker spec the backend ships with the job. Pure: no I/O.

The spec format is documented in docs/worker-protocol.md. Every user string travels as JSON
data inside the spec and reaches the executor as an argv list; the only shell command line
(Pulsar's) is built by the backend from quoted, server-chosen paths.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tesp_core.models import FileType, Task

SPEC_VERSION = 1


@dataclass(frozen=True)
class WorkerOptions:
    """Server-side settings the worker needs for one task."""

    runtime: str = "none"
    file_roots: tuple[str, ...] = ()
    storage: dict[str, Any] = field(default_factory=dict)
    log_tail_bytes: int = 64 * 1024
    # Host directories executors must not see (TESP's data directory).
    hide: tuple[str, ...] = ()


def worker_spec(task: Task, options: WorkerOptions) -> dict[str, Any]:
    """The worker spec for ``task`` (validated already) under ``options``."""
    assert task.id is not None
    storage = {
        "file_roots": list(options.file_roots),
        "file_denied": list(options.hide),
        **options.storage,
    }
    return {
        "version": SPEC_VERSION,
        "task_id": task.id,
        "runtime": {
            "kind": options.runtime,
            "executable": None,
            "extra_args": [],
            "hide": list(options.hide),
        },
        "inputs": [
            {
                "path": i.path,
                "type": (i.type or FileType.FILE).value,
                "url": None if i.content is not None else i.url,
                "content": i.content,
            }
            for i in task.inputs or []
        ],
        "outputs": [
            {
                "path": o.path,
                "type": (o.type or FileType.FILE).value,
                "url": o.url,
                "path_prefix": o.path_prefix,
            }
            for o in task.outputs or []
        ],
        "volumes": list(task.volumes or []),
        "executors": [
            {
                "image": e.image,
                "command": list(e.command),
                "workdir": e.workdir,
                "stdin": e.stdin,
                "stdout": e.stdout,
                "stderr": e.stderr,
                "env": dict(e.env or {}),
                "ignore_error": bool(e.ignore_error),
            }
            for e in task.executors
        ],
        "storage": storage,
        "log_tail_bytes": options.log_tail_bytes,
    }
