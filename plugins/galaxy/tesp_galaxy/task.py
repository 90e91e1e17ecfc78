"""Turning a prepared Galaxy job into a TES task (pure: no Galaxy objects, no I/O).

The task runs Galaxy's own job script (``/bin/bash <working_directory>/galaxy_<id>.sh``),
which does everything a Galaxy job does (tool command, ``from_work_dir`` copies, exit code
file, optional metadata). The script's stdout/stderr go to the files Galaxy's
``finish_job`` reads. Inside the task every path is the path Galaxy knows, in both staging
modes, so the command line is never rewritten.

In staging mode ``tes`` the task is given exactly what the job script touches that Galaxy
owns: the job directory (tool script, configfiles, metadata parameters; back again with the
exit code and stream files), the input datasets with their metadata files and extra files
directories, the output datasets (the empty files Galaxy created go in, so a tool that
appends or writes nothing behaves as on Galaxy's host) with their extra files directories
if the tool makes them, and the tool's directory (scripts the command line names). Galaxy's
own code and virtualenv are not staged: metadata is then set by Galaxy after the outputs
are back (``embed_metadata_in_job`` defaults to false in this mode).
"""

from __future__ import annotations

import glob
import posixpath
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
    #: Input files: datasets and their metadata files.
    input_paths: tuple[str, ...] = ()
    #: Input directories: the extra files directories of input datasets that have one.
    input_directories: tuple[str, ...] = ()
    output_paths: tuple[str, ...] = ()
    #: The outputs that exist before the job runs (Galaxy creates them empty).
    existing_output_paths: tuple[str, ...] = ()
    tool_id: str | None = None
    #: The directory of the tool's XML (``$__tool_directory__``), if it has one.
    tool_directory: str | None = None
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


def extra_files_path(path: str) -> str | None:
    """Where Galaxy puts a dataset's extra files: ``dataset_<x>.dat`` -> ``dataset_<x>_files``."""
    return path[: -len(".dat")] + "_files" if path.endswith(".dat") else None


def _optional_directory_output(path: str) -> dict[str, Any]:
    """A DIRECTORY output that is uploaded if the task made it and skipped if not.

    A plain TES output that does not exist fails the task; a wildcard matching nothing does
    not. The pattern matches exactly ``path`` (its last character as a one-letter class).
    """
    parent = posixpath.dirname(path)
    pattern = glob.escape(path[:-1]) + "[" + path[-1] + "]"
    return {
        "url": file_url(parent),
        "path": pattern,
        "path_prefix": parent + "/",
        "type": "DIRECTORY",
    }


def _directory(path: str, name: str | None = None) -> dict[str, Any]:
    entry = {"name": name} if name else {}
    return {**entry, "url": file_url(path), "path": path, "type": "DIRECTORY"}


def _staging(
    job: GalaxyJob, dest: TesDestination
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """TES inputs and outputs that move the job's files in and out of the task."""
    wd = job.working_directory
    inputs = [_directory(wd, "galaxy_job_directory")]
    outputs = [_directory(wd, "galaxy_job_directory")]
    staged_dirs = [wd]
    tool_dir = job.tool_directory if dest.stage_tool_directory else None
    if tool_dir and not _inside(wd, tool_dir) and not _inside(tool_dir, wd):
        inputs.append(_directory(tool_dir, "galaxy_tool_directory"))
        staged_dirs.append(tool_dir)
    for path in sorted(set(job.input_directories)):
        if not any(_inside(path, d) for d in staged_dirs):
            inputs.append(_directory(path))
    staged_dirs.extend(job.input_directories)
    own_outputs = sorted(p for p in set(job.output_paths) if not _inside(p, wd))
    files = {*job.input_paths, *(p for p in job.existing_output_paths if p in own_outputs)}
    for path in sorted(files):
        if not any(_inside(path, d) for d in staged_dirs):
            inputs.append({"url": file_url(path), "path": path, "type": "FILE"})
    for path in own_outputs:
        outputs.append({"url": file_url(path), "path": path, "type": "FILE"})
        extra = extra_files_path(path)
        if extra:
            outputs.append(_optional_directory_output(extra))
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
        task["inputs"], task["outputs"] = _staging(job, dest)
    return task
