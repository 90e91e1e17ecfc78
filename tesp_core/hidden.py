"""TES paths must stay out of the directories tasks are not allowed to see.

The server's data directory holds every task's document (with the URLs and credentials
clients sent), the embedded Pulsar's token and every job's spec. The worker masks it from
executors; a TES path inside it would be bound there and so leave it visible (bwrap), or
would be a host path into it (``none``). Such a task is refused at creation.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator, Sequence

from tesp_core.errors import InvalidTaskError
from tesp_core.models import Task


def task_paths(task: Task) -> Iterator[tuple[str, str]]:
    """``(field, path)`` for every TES (container) path the task names."""
    for n, item in enumerate(task.inputs or []):
        yield f"inputs[{n}].path", item.path
    for n, out in enumerate(task.outputs or []):
        yield f"outputs[{n}].path", out.path
    for n, volume in enumerate(task.volumes or []):
        yield f"volumes[{n}]", volume
    for n, ex in enumerate(task.executors):
        for name in ("workdir", "stdin", "stdout", "stderr"):
            value = getattr(ex, name)
            if value:
                yield f"executors[{n}].{name}", value


def file_urls(task: Task) -> Iterator[tuple[str, str]]:
    """``(field, path)`` for every ``file://`` URL (or plain path) of the task's I/O."""
    from urllib.parse import unquote, urlsplit

    items = [("inputs", i.url) for i in task.inputs or []]
    items += [("outputs", o.url) for o in task.outputs or []]
    counts: dict[str, int] = {}
    for kind, url in items:
        n = counts[kind] = counts.get(kind, -1) + 1
        if not url:
            continue
        parts = urlsplit(url)
        if parts.scheme in ("", "file"):
            yield f"{kind}[{n}].url", unquote(parts.path)


def check_not_hidden(task: Task, hidden: Sequence[str]) -> None:
    """InvalidTaskError for the first TES path or file URL at or below one of ``hidden``.

    The worker checks file URLs again after resolving symlinks (storage/file.py)."""
    roots = [posixpath.normpath(h) for h in hidden if h and posixpath.normpath(h) != "/"]
    for field, path in [*task_paths(task), *file_urls(task)]:
        normal = posixpath.normpath(path)
        for root in roots:
            if normal == root or normal.startswith(root + "/"):
                raise InvalidTaskError(
                    field, "lies in this server's data directory, which tasks cannot use"
                )
