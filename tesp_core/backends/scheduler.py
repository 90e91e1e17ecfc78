"""What a TES task asks of a cluster scheduler (Slurm), as Pulsar can pass it on.

Pure functions, no I/O. A task's ``resources`` (``cpu_cores``, ``ram_gb``, ``disk_gb``) and
four ``backend_parameters`` (``slurm_partition``, ``slurm_time_limit``, ``slurm_account``,
``slurm_qos``) become one validated :class:`SchedulerRequest`, which is rendered two ways:

- :func:`native_specification` — sbatch options, sent to Pulsar as the job's
  ``submit_params["native_specification"]`` (Pulsar's DRMAA managers hand it to Slurm);
- :func:`script_directive` — one comment line, ``# tesp-slurm: cpus=2 mem=2048 ...``, put at
  the top of the job's command line. Pulsar's ``queued_cli`` manager ignores
  ``submit_params`` (its Slurm plugin takes options from the manager's configuration only),
  so a site that uses it installs the ``job_submit.lua`` from ``docs/deployment-slurm.md``,
  which reads this line from the job script and sets the job's resources.

Both end up in a job script or a scheduler command, so every value is checked against a
strict pattern here and a bad one is refused with the field named.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from tesp_core.errors import InvalidTaskError
from tesp_core.models import Task

PARTITION = "slurm_partition"
TIME_LIMIT = "slurm_time_limit"
ACCOUNT = "slurm_account"
QOS = "slurm_qos"

# backend_parameters this module understands (advertised in service-info).
SCHEDULER_PARAMETERS: tuple[str, ...] = (PARTITION, TIME_LIMIT, ACCOUNT, QOS)

# Slurm names (partitions, accounts, QOS): letters, digits, '_', '.', '-'; nothing a shell,
# an #SBATCH line or the directive's key=value syntax could read as anything else.
# ASCII only, spelled out: ``\d`` and ``\w`` would also take other scripts' digits and
# letters (fullwidth "10"), which int() then reads as numbers Slurm never sees.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", re.ASCII)
# Slurm's time formats: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S.
_TIME = re.compile(r"(?:([0-9]{1,4})-)?([0-9]{1,6})(?::([0-9]{1,2}))?(?::([0-9]{1,2}))?", re.ASCII)
_TIME_FORMATS = "minutes, M:S, H:M:S, D-H, D-H:M or D-H:M:S"
_MB_PER_GB = 1024  # TES's GB is taken as GiB; Slurm's --mem and --tmp count MiB.
DIRECTIVE_PREFIX = "# tesp-slurm:"


@dataclass(frozen=True)
class SchedulerRequest:
    """A task's scheduler request; ``None`` leaves the cluster's default."""

    cpus: int | None = None
    mem_mb: int | None = None
    tmp_mb: int | None = None
    partition: str | None = None
    time_minutes: int | None = None
    account: str | None = None
    qos: str | None = None

    @property
    def empty(self) -> bool:
        """True when the task asks for nothing the scheduler would see."""
        return self == SchedulerRequest()


def scheduler_request(task: Task) -> SchedulerRequest:
    """The task's request; InvalidTaskError naming the field for a value Slurm cannot take."""
    resources = task.resources
    if resources is None:
        return SchedulerRequest()
    params = resources.backend_parameters or {}
    return SchedulerRequest(
        cpus=resources.cpu_cores,
        mem_mb=_megabytes(resources.ram_gb),
        tmp_mb=_megabytes(resources.disk_gb),
        partition=_name(params, PARTITION),
        time_minutes=_time_minutes(params.get(TIME_LIMIT)),
        account=_name(params, ACCOUNT),
        qos=_name(params, QOS),
    )


def check_scheduler_parameters(task: Task) -> None:
    """Raise InvalidTaskError when a scheduler backend parameter has a bad value."""
    scheduler_request(task)


def time_limit_note(task: Task) -> str:
    """What the task asked of the scheduler's clock, for a message about a stopped job.

    '' when the task set no (valid) ``slurm_time_limit``. The value was checked when the task
    was created, so it is digits, ':' and '-' only.
    """
    params = (task.resources.backend_parameters if task.resources else None) or {}
    value = params.get(TIME_LIMIT)
    try:
        minutes = _time_minutes(value)
    except InvalidTaskError:
        return ""
    if value is None or minutes is None:
        return ""
    unit = "minute" if minutes == 1 else "minutes"
    return f"the task asked for {TIME_LIMIT} {value!r} ({minutes} {unit} as Slurm counts it)"


def native_specification(request: SchedulerRequest) -> str:
    """The request as sbatch options (``-c 2 --mem=2048 -p short``); '' when empty."""
    options: list[str] = []
    if request.cpus is not None:
        options.append(f"--cpus-per-task={request.cpus}")
    if request.mem_mb is not None:
        options.append(f"--mem={request.mem_mb}")
    if request.tmp_mb is not None:
        options.append(f"--tmp={request.tmp_mb}")
    if request.partition is not None:
        options.append(f"--partition={request.partition}")
    if request.time_minutes is not None:
        options.append(f"--time={request.time_minutes}")
    if request.account is not None:
        options.append(f"--account={request.account}")
    if request.qos is not None:
        options.append(f"--qos={request.qos}")
    return " ".join(options)


def submit_params(request: SchedulerRequest) -> dict[str, str]:
    """Pulsar's ``submit_params`` for the job: the native specification, if any."""
    spec = native_specification(request)
    return {"native_specification": spec} if spec else {}


def script_directive(request: SchedulerRequest) -> str:
    """The ``# tesp-slurm: key=value ...`` line job_submit.lua reads; '' when empty."""
    fields = {
        "cpus": request.cpus,
        "mem": request.mem_mb,
        "tmp": request.tmp_mb,
        "partition": request.partition,
        "time": request.time_minutes,
        "account": request.account,
        "qos": request.qos,
    }
    pairs = [f"{key}={value}" for key, value in fields.items() if value is not None]
    return f"{DIRECTIVE_PREFIX} {' '.join(pairs)}" if pairs else ""


def _megabytes(gigabytes: float | None) -> int | None:
    if gigabytes is None or gigabytes == 0:
        return None  # 0 would mean "all the node's memory" to Slurm, not "nothing"
    return max(1, math.ceil(gigabytes * _MB_PER_GB))


def _name(params: dict[str, str], key: str) -> str | None:
    value = params.get(key)
    if value is None:
        return None
    if not _NAME.fullmatch(value):
        raise InvalidTaskError(
            f"resources.backend_parameters.{key}",
            "must be a Slurm name: 1-64 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit",
        )
    return value


def _time_minutes(value: str | None) -> int | None:
    if value is None:
        return None
    field = f"resources.backend_parameters.{TIME_LIMIT}"
    match = _TIME.fullmatch(value)
    if match is None:
        raise InvalidTaskError(field, f"must be a Slurm time limit: {_TIME_FORMATS}")
    days, first, second, third = (None if g is None else int(g) for g in match.groups())
    assert first is not None  # the pattern's one mandatory group
    if days is not None:
        # D-H, D-H:M, D-H:M:S
        _check_ranges(field, value, hours=first, minutes=second, seconds=third)
        seconds = days * 86400 + first * 3600 + (second or 0) * 60 + (third or 0)
    elif third is not None:
        _check_ranges(field, value, minutes=second, seconds=third)  # H:M:S
        seconds = first * 3600 + (second or 0) * 60 + third
    else:
        _check_ranges(field, value, seconds=second)  # M or M:S
        seconds = first * 60 + (second or 0)
    if seconds <= 0:
        raise InvalidTaskError(field, "must be longer than zero")
    return math.ceil(seconds / 60)


def _check_ranges(
    field: str,
    value: str,
    *,
    hours: int | None = None,
    minutes: int | None = None,
    seconds: int | None = None,
) -> None:
    """Refuse "1:99:99": a part Slurm reads as a clock position must fit the clock."""
    for name, number, limit in (
        ("hours", hours, 24),
        ("minutes", minutes, 60),
        ("seconds", seconds, 60),
    ):
        if number is not None and number >= limit:
            raise InvalidTaskError(
                field,
                f"{name} must be below {limit} in {value!r} (Slurm's formats: {_TIME_FORMATS})",
            )
