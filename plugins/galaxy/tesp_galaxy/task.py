"""Turning a prepared Galaxy job into a TES task (pure: no Galaxy objects, no I/O).

The task runs Galaxy's own job script (``/bin/bash <working_directory>/galaxy_<id>.sh``),
which does everything a Galaxy job does (tool command, ``from_work_dir`` copies, exit code
file, optional metadata). The script's stdout/stderr go to the files Galaxy's
``finish_job`` reads. Inside the task every path is the path Galaxy knows, in both staging
modes, so the command line is never rewritten.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import quote

from .params import DEFAULT_IMAGE, StagingMode, TesDestination


@dataclass(frozen=True)
class GalaxyJob:
    """What the runner extracted from Galaxy's job wrapper."""

    galaxy_id: str
    name: str
    job_script: str
    working_directory: str
    stdout_file: str
    stderr_file: str
    env: dict[str, str] = field(default_factory=dict)
    input_paths: tuple[str, ...] = ()
    output_paths: tuple[str, ...] = ()
    tool_id: str | None = None
    #: The container Galaxy resolved for the tool, used when the destination names no image.
    container_image: str | None = None


def file_url(path: str) -> str:
    """A ``file://`` URL for an absolute POSIX path (percent-encoded)."""
    if not path.startswith("/"):
        raise ValueError(f"not an absolute path: {path!r}")
    return "file://" + quote(path)


def _resources(dest: TesDestination) -> dict[str, Any] | None:
    res: dict[str, Any] = {}
    if dest.cpu_cores is not None:
        res["cpu_cores"] = dest.cpu_cores
    if dest.ram_gb is not None:
        res["ram_gb"] = dest.ram_gb
    if dest.disk_gb is not None:
        res["disk_gb"] = dest.disk_gb
    if dest.preemptible is not None:
        res["preemptible"] = dest.preemptible
    if dest.zones:
        res["zones"] = list(dest.zones)
    if dest.backend_parameters:
        res["backend_parameters"] = dict(dest.backend_parameters)
    if dest.backend_parameters_strict is not None:
        res["backend_parameters_strict"] = dest.backend_parameters_strict
    return res or None


def _inside(path: str, directory: str) -> bool:
    return PurePosixPath(path).is_relative_to(PurePosixPath(directory))


def _staging(job: GalaxyJob) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """TES inputs and outputs that move the job's files in and out of the task."""
    wd = job.working_directory
    inputs: list[dict[str, Any]] = [
        {"name": "galaxy_job_directory", "url": file_url(wd), "path": wd, "type": "DIRECTORY"}
    ]
    for path in sorted(set(job.input_paths)):
        if not _inside(path, wd):
            inputs.append({"url": file_url(path), "path": path, "type": "FILE"})
    outputs: list[dict[str, Any]] = [
        {"name": "galaxy_job_directory", "url": file_url(wd), "path": wd, "type": "DIRECTORY"}
    ]
    for path in sorted(set(job.output_paths)):
        if not _inside(path, wd):
            outputs.append({"url": file_url(path), "path": path, "type": "FILE"})
    return inputs, outputs


def build_task(job: GalaxyJob, dest: TesDestination) -> dict[str, Any]:
    """The TES task (a JSON-ready ``dict`` in TES 1.1 field names) for one Galaxy job."""
    executor: dict[str, Any] = {
        "image": dest.image or job.container_image or DEFAULT_IMAGE,
        "command": ["/bin/bash", job.job_script],
        "workdir": job.working_directory,
        "stdout": job.stdout_file,
        "stderr": job.stderr_file,
    }
    if job.env:
        executor["env"] = dict(job.env)
    tags = {"galaxy_job_id": job.galaxy_id, **dict(dest.tes_tags)}
    if job.tool_id:
        tags["galaxy_tool_id"] = job.tool_id
    task: dict[str, Any] = {
        "name": job.name,
        "description": f"Galaxy job {job.galaxy_id}",
        "executors": [executor],
        "tags": tags,
    }
    resources = _resources(dest)
    if resources:
        task["resources"] = resources
    if dest.staging is StagingMode.TES:
        task["inputs"], task["outputs"] = _staging(job)
    return task
