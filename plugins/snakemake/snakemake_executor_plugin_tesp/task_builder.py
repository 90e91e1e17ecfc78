"""Snakemake job -> TES task (a ``tesTask`` JSON dict). Pure: no I/O, no Snakemake objects.

The executor reads what it needs off a Snakemake job into :class:`JobFacts`; everything
else here is plain data in, plain data out, so it is unit tested without a workflow.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# Resources Snakemake manages itself or that map onto tesResources fields.
_NOT_BACKEND_PARAMETERS = frozenset(
    {"_cores", "_nodes", "_job_count", "threads", "tmpdir", "mem", "mem_mb", "mem_mib"}
    | {"disk", "disk_mb", "disk_mib"}
)
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")
TAG_PREFIX = "snakemake_"
RUN_TAG = f"{TAG_PREFIX}run"


@dataclass(frozen=True)
class JobFacts:
    """What a TES task needs to know about one Snakemake job (or group job)."""

    name: str
    """The rule name, or the group id of a group job."""
    jobid: str
    rules: tuple[str, ...]
    threads: int
    resources: Mapping[str, object]
    command: str
    """The shell command line from the executor's ``format_job_exec``."""
    attempt: int = 1
    is_group: bool = False


@dataclass(frozen=True)
class TaskOptions:
    """Per-run settings of the tasks this executor creates."""

    image: str
    workflow: str
    run_id: str
    workdir: str | None = None
    """Where the executor runs (a TES path); None leaves it to the server."""
    env: Mapping[str, str] = field(default_factory=dict)
    backend_parameters: Mapping[str, str] = field(default_factory=dict)
    shell: str = "/bin/sh"


def build_task(job: JobFacts, options: TaskOptions) -> dict[str, Any]:
    """The ``tesTask`` running ``job`` (one executor: ``sh -c <command>``)."""
    executor: dict[str, Any] = {
        "image": options.image,
        "command": [options.shell, "-c", job.command],
    }
    if options.workdir:
        executor["workdir"] = options.workdir
    if options.env:
        executor["env"] = dict(options.env)
    kind = "group" if job.is_group else "rule"
    return {
        "name": task_name(job, options.workflow),
        "description": (
            f"Snakemake {kind} {job.name} (job {job.jobid}, attempt {job.attempt}) "
            f"of workflow {options.workflow}"
        ),
        "executors": [executor],
        "resources": map_resources(job.threads, job.resources, options.backend_parameters),
        "tags": task_tags(job, options),
    }


def task_name(job: JobFacts, workflow: str) -> str:
    """A readable, prefix-filterable name: ``snakemake:<workflow>:<rule>:<jobid>``."""
    return f"snakemake:{workflow}:{job.name}:{job.jobid}"


def task_tags(job: JobFacts, options: TaskOptions) -> dict[str, str]:
    """Tags naming the workflow, this run, the rule(s) and the job."""
    tags = {
        f"{TAG_PREFIX}workflow": options.workflow,
        RUN_TAG: options.run_id,
        f"{TAG_PREFIX}rule": ",".join(sorted(job.rules)),
        f"{TAG_PREFIX}jobid": job.jobid,
        f"{TAG_PREFIX}attempt": str(job.attempt),
    }
    if job.is_group:
        tags[f"{TAG_PREFIX}group"] = job.name
    return tags


def map_resources(
    threads: int, resources: Mapping[str, object], extra: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """``tesResources`` for a job: cores, RAM and disk in GB, the rest as backend_parameters.

    Snakemake counts ``mem_mb``/``disk_mb`` in MB (10^6 bytes) and ``mem_mib``/``disk_mib``
    in MiB; TES counts GB. Every other numeric or string resource (``runtime`` in minutes,
    ``gpu``, a partition name, ...) travels as a backend parameter, which servers that do not
    know it ignore (``backend_parameters_strict`` stays false). ``extra`` (from the settings)
    overrides a resource of the same name.
    """
    out: dict[str, Any] = {"cpu_cores": max(1, int(threads))}
    ram = _gigabytes(resources, "mem")
    if ram is not None:
        out["ram_gb"] = ram
    disk = _gigabytes(resources, "disk")
    if disk is not None:
        out["disk_gb"] = disk
    params: dict[str, str] = {}
    for key, value in resources.items():
        if key in _NOT_BACKEND_PARAMETERS or key.startswith("_"):
            continue
        text = _parameter_value(value)
        if text is not None:
            params[key] = text
    params.update(extra or {})
    if params:
        out["backend_parameters"] = params
    return out


def _gigabytes(resources: Mapping[str, object], stem: str) -> float | None:
    mb = _number(resources.get(f"{stem}_mb"))
    if mb is None:
        mib = _number(resources.get(f"{stem}_mib"))
        mb = None if mib is None else mib * 1.048576
    if mb is None or mb <= 0:
        return None
    return round(mb / 1000, 3) or 0.001


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _parameter_value(value: object) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    # Snakemake marks resources it could not evaluate yet with "<TBD>".
    if isinstance(value, str) and value and value != "<TBD>":
        return value
    return None


def parse_backend_parameters(text: str | None) -> dict[str, str]:
    """``"KEY=VALUE,KEY2=VALUE2"`` (from ``--tesp-backend-parameters``) as a dict."""
    params: dict[str, str] = {}
    for item in (text or "").split(","):
        item = item.strip()
        if not item:
            continue
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not _KEY.fullmatch(key):
            raise ValueError(f"backend parameter {item!r} is not KEY=VALUE")
        params[key] = value.strip()
    return params
