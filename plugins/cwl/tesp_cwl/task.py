"""Pure translation of one cwltool job into a TES task (a JSON-ready dict). No I/O."""

from __future__ import annotations

import math
import posixpath
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tesp_cwl.paths import EMPTY_DIRS_MANIFEST, REMOTE_SCHEMES

# A TES server refuses ``content`` beyond its limit (1 MiB by default); larger literals
# are written to a file and staged by URL instead.
MAX_INLINE_CONTENT = 256 * 1024


@dataclass(frozen=True)
class Staged:
    """One entry of a cwltool path mapper: what to stage (``resolved``) and where."""

    resolved: str
    target: str
    type: str  # File, Directory, WritableFile, WritableDirectory, CreateFile, ...


@dataclass
class StagingPlan:
    """TES inputs and the directories that must merely exist (TES volumes)."""

    inputs: list[dict[str, Any]] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)


def location_url(resolved: str) -> str:
    """A ``file://`` URL for a local path; a remote URL unchanged."""
    scheme = urlsplit(resolved).scheme
    if scheme in REMOTE_SCHEMES or scheme == "file":
        return resolved
    return Path(resolved).as_uri()


def plan_staging(
    entries: Iterable[Staged],
    *,
    content_of: Callable[[str], str],
    spill: Callable[[str, str], str],
) -> StagingPlan:
    """Turn path mapper entries into TES inputs.

    ``content_of`` resolves a literal (secrets included); ``spill(target, text)`` writes a
    literal too large to inline and returns its URL.
    """
    plan = StagingPlan()
    seen: set[str] = set()
    for entry in entries:
        if entry.target in seen:
            continue
        seen.add(entry.target)
        if entry.type in ("CreateFile", "CreateWritableFile"):
            text = content_of(entry.resolved)
            if len(text.encode()) <= MAX_INLINE_CONTENT:
                plan.inputs.append({"path": entry.target, "type": "FILE", "content": text})
            else:
                url = spill(entry.target, text)
                plan.inputs.append({"path": entry.target, "type": "FILE", "url": url})
        elif entry.type in ("Directory", "WritableDirectory"):
            if entry.resolved.startswith("_:"):
                plan.volumes.append(entry.target)
            else:
                plan.inputs.append(
                    {"path": entry.target, "type": "DIRECTORY", "url": location_url(entry.resolved)}
                )
        elif entry.type in ("File", "WritableFile"):
            plan.inputs.append(
                {"path": entry.target, "type": "FILE", "url": location_url(entry.resolved)}
            )
    return plan


def tes_resources(resources: Mapping[str, Any]) -> dict[str, Any]:
    """CWL ``runtime`` resources (cores, MiB) as ``tesResources``."""
    out: dict[str, Any] = {}
    cores = resources.get("cores")
    if cores:
        out["cpu_cores"] = max(1, math.ceil(float(cores)))
    ram = resources.get("ram")
    if ram:
        out["ram_gb"] = round(float(ram) / 1024, 3)
    disk = float(resources.get("tmpdirSize") or 0) + float(resources.get("outdirSize") or 0)
    if disk:
        out["disk_gb"] = round(disk / 1024, 3)
    return out


@dataclass(frozen=True)
class JobSpec:
    """Everything of a cwltool job that goes into its TES task, in TES paths."""

    name: str
    image: str
    command: list[str]
    outdir: str
    tmpdir: str
    outdir_url: str
    env: Mapping[str, str]
    staging: StagingPlan
    resources: Mapping[str, Any]
    stdin: str | None = None
    stdout: str | None = None
    stderr: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)


def build_task(spec: JobSpec) -> dict[str, Any]:
    """The TES task for one job.

    Two executors: the tool itself (``ignore_error`` so that the second still runs and the
    outputs are uploaded whatever the exit code, which the caller reads from the first
    executor's log), then a listing of the empty directories under the output directory.
    """
    tool: dict[str, Any] = {
        "image": spec.image,
        "command": list(spec.command),
        "workdir": spec.outdir,
        "env": dict(spec.env),
        "ignore_error": True,
    }
    if spec.stdin:
        tool["stdin"] = spec.stdin
    if spec.stdout:
        tool["stdout"] = posixpath.join(spec.outdir, spec.stdout)
    if spec.stderr:
        tool["stderr"] = posixpath.join(spec.outdir, spec.stderr)
    listing = {
        "image": spec.image,
        "command": [
            "/bin/sh",
            "-c",
            'cd "$1" && find . -mindepth 1 -type d -empty > "$2" 2>/dev/null; exit 0',
            "sh",
            spec.outdir,
            posixpath.join(spec.outdir, EMPTY_DIRS_MANIFEST),
        ],
        "ignore_error": True,
    }
    task: dict[str, Any] = {
        "name": spec.name,
        "inputs": spec.staging.inputs,
        "outputs": [{"path": spec.outdir, "url": spec.outdir_url, "type": "DIRECTORY"}],
        "executors": [tool, listing],
        "volumes": [spec.tmpdir, *spec.staging.volumes],
        "tags": dict(spec.tags),
    }
    resources = tes_resources(spec.resources)
    if resources:
        task["resources"] = resources
    return task
