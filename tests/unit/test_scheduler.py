"""TES resources and Slurm backend_parameters -> what Pulsar and Slurm are given."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tesp_core.backends.pulsar import _submit_query
from tesp_core.backends.scheduler import (
    SchedulerRequest,
    native_specification,
    scheduler_request,
    script_directive,
    submit_params,
    time_limit_note,
)
from tesp_core.errors import InvalidTaskError
from tesp_core.models import Task
from tesp_core.policy import SUPPORTED_BACKEND_PARAMETERS

ROOT = Path(__file__).resolve().parents[2]


def _task(**resources: Any) -> Task:
    return Task.model_validate(
        {"executors": [{"image": "a", "command": ["true"]}], "resources": resources}
    )


def test_resources_and_parameters_become_one_request() -> None:
    task = _task(
        cpu_cores=4,
        ram_gb=1.5,
        disk_gb=10,
        backend_parameters={
            "slurm_partition": "short",
            "slurm_time_limit": "1-02:03:04",
            "slurm_account": "lab_a",
            "slurm_qos": "normal",
        },
    )
    assert scheduler_request(task) == SchedulerRequest(
        cpus=4,
        mem_mb=1536,
        tmp_mb=10240,
        partition="short",
        time_minutes=24 * 60 + 2 * 60 + 3 + 1,  # 04 seconds round up to a whole minute
        account="lab_a",
        qos="normal",
    )


def test_memory_rounds_up_to_whole_megabytes() -> None:
    assert scheduler_request(_task(ram_gb=0.0001)).mem_mb == 1
    assert scheduler_request(_task(ram_gb=0.5)).mem_mb == 512
    assert scheduler_request(_task(ram_gb=1.0001)).mem_mb == 1025


def test_zero_memory_or_disk_asks_for_the_default_not_for_everything() -> None:
    # Slurm reads --mem=0 as "all of the node's memory".
    assert scheduler_request(_task(ram_gb=0, disk_gb=0)) == SchedulerRequest()


@pytest.mark.parametrize(
    ("value", "minutes"),
    [
        ("90", 90),
        ("5:30", 6),
        ("01:00:00", 60),
        ("2-0", 2880),
        ("1-1:1", 1501),
        ("0:0:1", 1),
        ("90:30", 91),  # M:S: the minutes are not a clock position
        ("100:00:00", 6000),  # H:M:S: nor are the hours
        ("1-23:59:59", 2880),
    ],
)
def test_slurm_time_formats(value: str, minutes: int) -> None:
    task = _task(backend_parameters={"slurm_time_limit": value})
    assert scheduler_request(task).time_minutes == minutes


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("slurm_partition", "debug; touch /tmp/x"),
        ("slurm_partition", "debug\n#SBATCH --uid=0"),
        ("slurm_partition", "a b"),
        ("slurm_partition", "-p"),
        ("slurm_partition", ""),
        ("slurm_partition", "x" * 65),
        ("slurm_account", "$(id)"),
        ("slurm_account", "a=b"),
        ("slurm_qos", "`id`"),
        ("slurm_qos", "q,r"),
        ("slurm_time_limit", "0"),
        ("slurm_time_limit", "0:00"),
        ("slurm_time_limit", "10m"),
        ("slurm_time_limit", "-5"),
        ("slurm_time_limit", "1:2:3:4"),
        ("slurm_time_limit", "UNLIMITED"),
        ("slurm_time_limit", "\uff11\uff10"),  # fullwidth digits: int() would read 10
        ("slurm_time_limit", "1\u0660"),  # ARABIC-INDIC DIGIT ZERO
        ("slurm_partition", "p\uff11"),
        ("slurm_account", "\u00e9quipe"),
    ],
)
def test_bad_values_are_refused_naming_the_field(key: str, value: str) -> None:
    with pytest.raises(InvalidTaskError) as caught:
        scheduler_request(_task(backend_parameters={key: value}))
    assert caught.value.field == f"resources.backend_parameters.{key}"


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("1:99:99", "minutes must be below 60"),
        ("1:00:60", "seconds must be below 60"),
        ("5:60", "seconds must be below 60"),
        ("1-24", "hours must be below 24"),
        ("1-23:60", "minutes must be below 60"),
        ("1-0:0:75", "seconds must be below 60"),
    ],
)
def test_time_limit_parts_must_fit_the_clock(value: str, problem: str) -> None:
    with pytest.raises(InvalidTaskError) as caught:
        scheduler_request(_task(backend_parameters={"slurm_time_limit": value}))
    assert caught.value.field == "resources.backend_parameters.slurm_time_limit"
    assert problem in str(caught.value)


def test_time_limit_note_names_the_limit_as_slurm_counts_it() -> None:
    note = time_limit_note(_task(backend_parameters={"slurm_time_limit": "0:30"}))
    assert note == "the task asked for slurm_time_limit '0:30' (1 minute as Slurm counts it)"
    note = time_limit_note(_task(backend_parameters={"slurm_time_limit": "1-0"}))
    assert note == "the task asked for slurm_time_limit '1-0' (1440 minutes as Slurm counts it)"
    assert time_limit_note(_task()) == ""
    assert time_limit_note(_task(backend_parameters={"slurm_partition": "p"})) == ""


def test_native_specification_and_submit_params() -> None:
    request = SchedulerRequest(cpus=2, mem_mb=100, tmp_mb=50, partition="p", time_minutes=7)
    spec = "--cpus-per-task=2 --mem=100 --tmp=50 --partition=p --time=7"
    assert native_specification(request) == spec
    assert submit_params(request) == {"native_specification": spec}
    assert submit_params(SchedulerRequest()) == {}
    both = SchedulerRequest(account="acc", qos="q")
    assert native_specification(both) == "--account=acc --qos=q"


def test_script_directive_is_one_comment_line() -> None:
    request = SchedulerRequest(cpus=2, mem_mb=100, partition="tesp-alt", qos="q")
    assert script_directive(request) == "# tesp-slurm: cpus=2 mem=100 partition=tesp-alt qos=q"
    assert script_directive(SchedulerRequest()) == ""


def test_pulsar_gets_the_request_as_params_and_as_a_directive_line() -> None:
    task = _task(cpu_cores=3, backend_parameters={"slurm_partition": "short"})
    query = _submit_query("python3 -S w.pyz spec.json work", task)
    assert query["params"] == '{"native_specification": "--cpus-per-task=3 --partition=short"}'
    assert query["command_line"] == (
        "# tesp-slurm: cpus=3 partition=short\npython3 -S w.pyz spec.json work"
    )
    assert _submit_query("cmd", _task()) == {"command_line": "cmd"}


def test_service_info_advertises_the_parameters() -> None:
    assert {"slurm_partition", "slurm_time_limit", "slurm_account", "slurm_qos"} <= set(
        SUPPORTED_BACKEND_PARAMETERS
    )


def test_the_documented_job_submit_lua_is_the_tested_one() -> None:
    doc = (ROOT / "docs" / "deployment-slurm.md").read_text()
    blocks = re.findall(r"```lua\n(.*?)```", doc, re.S)
    assert blocks == [(ROOT / "tests" / "cluster" / "job_submit.lua").read_text()]
