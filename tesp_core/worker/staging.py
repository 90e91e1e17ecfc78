"""Staging: inputs from storage into the job root, outputs from the job root to storage.

The download path and the upload path are kept apart. Each returns safe messages only:
``StorageError`` strings are already redacted, anything else goes through ``redact_text``.
"""

from __future__ import annotations

import os
import posixpath

from tesp_core.worker.logshim import get_logger, use_logging
from tesp_core.worker.runtimes import host_path
from tesp_core.worker.spec import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

    from tesp_core.worker.spec import Input, Output, WorkerSpec

# Paths are plain strings here: pathlib (with urllib.parse, fnmatch...) is imported only by
# the storage drivers, and the drivers themselves (tesp_core.storage) only by the functions
# that transfer something: a task without inputs or outputs loads none of it. For the same
# reason glob and urllib.parse are imported inside the output functions that need them.

log = get_logger(__name__)


class StagingError(Exception):
    """Staging an input failed; ``str()`` names the path and the redacted URL."""


class UploadReport:
    """What the upload path did: one log per uploaded file, and the failures."""

    __slots__ = ("errors", "outputs")

    def __init__(self) -> None:
        self.outputs: list[dict[str, str]] = []
        self.errors: list[str] = []


class Layout:
    """Maps TES paths to host paths for one runtime kind and job root."""

    __slots__ = ("job_root", "kind")

    def __init__(self, kind: str, job_root: str) -> None:
        self.kind = kind
        self.job_root = job_root

    def host(self, tes_path: str) -> str:
        """The host path of a TES path."""
        return host_path(self.kind, self.job_root, tes_path)

    def confined(self, path: str) -> bool:
        """Whether an output source may be read: inside the job root (after symlinks).

        Under ``none`` the executor already ran as the worker on the host; elsewhere an
        executor could plant a symlink to a host file the worker could read but it could not.
        """
        if self.kind == "none":
            return True
        root = os.path.realpath(self.job_root)
        real = os.path.realpath(path)
        return real == root or real.startswith(root.rstrip("/") + "/")


def _safe(exc: BaseException) -> str:
    from tesp_core.storage import StorageError, redact_text

    if isinstance(exc, StorageError):
        return str(exc)
    return redact_text(f"{type(exc).__name__}: {exc}")


def stage_input(item: Input, layout: Layout, storage: dict[str, Any]) -> int | None:
    """Write inline content, or download the URL, to the input's host path.

    Returns the bytes downloaded, or None for inline content (nothing was transferred).
    """
    dest = layout.host(item.path)
    if item.content is not None:
        try:
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            with open(dest, "w", encoding="utf-8") as fh:
                fh.write(item.content)
        except OSError as exc:
            raise StagingError(f"input {item.path}: {_safe(exc)}") from exc
        return None
    assert item.url is not None
    from pathlib import Path  # the drivers' API; they import pathlib anyway

    from tesp_core.storage import StorageError, transport_for

    use_logging()  # the drivers log through logging
    try:
        transport = transport_for(item.url, storage)
        if item.type == "DIRECTORY":
            return transport.download_dir(item.url, Path(dest))
        return transport.download_file(item.url, Path(dest))
    except (StorageError, OSError) as exc:
        raise StagingError(f"input {item.path}: {_safe(exc)}") from exc


def stage_inputs(
    spec: WorkerSpec, layout: Layout, staged: list[dict[str, str]] | None = None
) -> None:
    """Stage every input in order; the first failure raises :class:`StagingError`.

    Each downloaded input is appended to ``staged`` as ``{"url" (redacted), "path",
    "size_bytes"}`` as soon as it is in place, so a later failure keeps the earlier ones.
    """
    for item in spec.inputs:
        size = stage_input(item, layout, spec.storage)
        if size is not None and item.url is not None and staged is not None:
            from tesp_core.storage import redact_url  # loaded by the download already

            url = redact_url(item.url)
            staged.append({"url": url, "path": item.path, "size_bytes": str(size)})
        log.info("task %s: staged input %s", spec.task_id, item.path)


def join_url(base: str, rel: str) -> str:
    """``base`` with relative POSIX path ``rel`` appended (percent-quoted for real URLs)."""
    if not rel:
        return base
    from urllib.parse import quote, urlsplit

    if urlsplit(base).scheme:
        rel = quote(rel, safe="/")
    return base.rstrip("/") + "/" + rel


def _walk_files(top: str) -> Iterator[str]:
    """Regular files (and links to them) under ``top``, sorted, depth first."""
    for current, dirs, files in os.walk(top):
        dirs.sort()
        for name in sorted(files):
            yield os.path.join(current, name)


def _upload(
    src: str, tes_path: str, url: str, layout: Layout, storage: dict[str, Any], rep: UploadReport
) -> None:
    if not layout.confined(src):
        rep.errors.append(f"output {tes_path}: refused, it links outside the job directory")
        return
    from pathlib import Path  # the drivers' API; they import pathlib anyway

    from tesp_core.storage import StorageError, redact_url, transport_for

    use_logging()  # the drivers log through logging
    try:
        size = transport_for(url, storage).upload_file(Path(src), url)
    except (StorageError, OSError) as exc:
        rep.errors.append(f"output {tes_path}: {_safe(exc)}")
        return
    rep.outputs.append({"url": redact_url(url), "path": tes_path, "size_bytes": str(size)})


def _upload_tree(
    top: str, tes_top: str, url: str, layout: Layout, storage: dict[str, Any], rep: UploadReport
) -> None:
    """Upload a directory recursively, keeping its structure under ``url``."""
    if not layout.confined(top):
        rep.errors.append(f"output {tes_top}: refused, it links outside the job directory")
        return
    for src in _walk_files(top):
        rel = os.path.relpath(src, top)
        _upload(src, posixpath.join(tes_top, rel), join_url(url, rel), layout, storage, rep)


def _glob(pattern: str, layout: Layout) -> list[str]:
    """TES paths matching POSIX glob ``pattern`` (``*`` and ``?`` never match ``/``)."""
    import glob

    root = "/" if layout.kind == "none" else layout.job_root
    matches = glob.glob(pattern.lstrip("/"), root_dir=root)
    return sorted("/" + m for m in matches)


def _stage_wildcard(
    out: Output, layout: Layout, storage: dict[str, Any], rep: UploadReport
) -> None:
    prefix = out.path_prefix or ""
    for tes_path in _glob(out.path, layout):
        src = layout.host(tes_path)
        if not tes_path.startswith(prefix):
            rep.errors.append(f"output {tes_path}: does not start with path_prefix {prefix!r}")
            continue
        url = join_url(out.url, tes_path[len(prefix) :].lstrip("/"))
        if out.type == "DIRECTORY" and os.path.isdir(src):
            _upload_tree(src, tes_path, url, layout, storage, rep)
        elif out.type == "FILE" and os.path.isfile(src):
            _upload(src, tes_path, url, layout, storage, rep)


def stage_output(
    out: Output, layout: Layout, storage: dict[str, Any], rep: UploadReport, *, strict: bool
) -> None:
    """Upload one output. A missing non-wildcard output is an error only when ``strict``."""
    if out.wildcard:
        _stage_wildcard(out, layout, storage, rep)
        return
    src = layout.host(out.path)
    if out.type == "DIRECTORY" and os.path.isdir(src):
        _upload_tree(src, out.path, out.url, layout, storage, rep)
    elif out.type == "FILE" and os.path.isfile(src):
        _upload(src, out.path, out.url, layout, storage, rep)
    elif strict:
        what = "directory" if out.type == "DIRECTORY" else "file"
        rep.errors.append(f"output {out.path}: no such {what} after the executors ran")


def stage_outputs(spec: WorkerSpec, layout: Layout, *, strict: bool) -> UploadReport:
    """Upload every output that exists; failures are collected, not raised."""
    rep = UploadReport()
    for out in spec.outputs:
        stage_output(out, layout, spec.storage, rep, strict=strict)
    log.info("task %s: uploaded %d output files", spec.task_id, len(rep.outputs))
    return rep
