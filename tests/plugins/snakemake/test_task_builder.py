"""The pure job -> TES task builder and failure summary."""

from __future__ import annotations

import pytest
from snakemake_executor_plugin_tesp.failure import describe_failure
from snakemake_executor_plugin_tesp.task_builder import (
    JobFacts,
    TaskOptions,
    build_task,
    map_resources,
    parse_backend_parameters,
)

JOB = JobFacts(
    name="align",
    jobid="7",
    rules=("align",),
    threads=4,
    resources={
        "_cores": 4,
        "_nodes": 1,
        "tmpdir": "/tmp",
        "mem_mb": 2000,
        "mem_mib": 1908,
        "mem": "2 GB",
        "disk_mb": 10000,
        "disk_mib": 9537,
        "runtime": 30,
        "slurm_partition": "short",
        "unknown": "<TBD>",
    },
    command="python -m snakemake --target-jobs 'align:sample=a'",
    attempt=2,
)
OPTIONS = TaskOptions(image="snakemake/snakemake:v9", workflow="wf", run_id="r1", workdir="/w")


def test_executor_runs_the_command_through_sh_in_the_workdir() -> None:
    task = build_task(JOB, OPTIONS)
    (executor,) = task["executors"]
    assert executor == {
        "image": "snakemake/snakemake:v9",
        "command": ["/bin/sh", "-c", JOB.command],
        "workdir": "/w",
    }


def test_resources_map_to_tes_fields_and_backend_parameters() -> None:
    resources = build_task(JOB, OPTIONS)["resources"]
    assert resources == {
        "cpu_cores": 4,
        "ram_gb": 2.0,
        "disk_gb": 10.0,
        "backend_parameters": {"runtime": "30", "slurm_partition": "short"},
    }


def test_mib_only_and_extra_parameters() -> None:
    out = map_resources(0, {"mem_mib": 1024, "runtime": 5}, {"runtime": "60", "queue": "q"})
    assert out["cpu_cores"] == 1
    assert out["ram_gb"] == pytest.approx(1.074, abs=0.001)
    assert "disk_gb" not in out
    assert out["backend_parameters"] == {"runtime": "60", "queue": "q"}


def test_tags_and_name_identify_workflow_run_rule_and_job() -> None:
    task = build_task(JOB, OPTIONS)
    assert task["name"] == "snakemake:wf:align:7"
    assert task["tags"] == {
        "snakemake_workflow": "wf",
        "snakemake_run": "r1",
        "snakemake_rule": "align",
        "snakemake_jobid": "7",
        "snakemake_attempt": "2",
    }


def test_group_job_tags_every_rule_and_the_group() -> None:
    group = JobFacts(
        name="foo",
        jobid="u-1",
        rules=("b", "a"),
        threads=2,
        resources={},
        command="x",
        is_group=True,
    )
    tags = build_task(group, OPTIONS)["tags"]
    assert tags["snakemake_rule"] == "a,b"
    assert tags["snakemake_group"] == "foo"


def test_no_workdir_and_env_without_shared_fs() -> None:
    options = TaskOptions(image="i", workflow="wf", run_id="r", env={"A": "1"})
    (executor,) = build_task(JOB, options)["executors"]
    assert "workdir" not in executor
    assert executor["env"] == {"A": "1"}


def test_the_task_is_valid_for_tesp_core() -> None:
    from tesp_core.models import Task

    Task.from_client(build_task(JOB, OPTIONS))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, {}),
        ("", {}),
        ("a=1", {"a": "1"}),
        (" a = 1 , b.c=x=y ,", {"a": "1", "b.c": "x=y"}),
    ],
)
def test_parse_backend_parameters(text: str | None, expected: dict[str, str]) -> None:
    assert parse_backend_parameters(text) == expected


@pytest.mark.parametrize("text", ["novalue", "=1", "a b=1"])
def test_parse_backend_parameters_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_backend_parameters(text)


def test_failure_summary_carries_exit_code_and_stderr_tail() -> None:
    task = {
        "id": "t1",
        "state": "EXECUTOR_ERROR",
        "logs": [
            {
                "logs": [
                    {"exit_code": 0, "stderr": "fine"},
                    {
                        "exit_code": 3,
                        "stdout": "out",
                        "stderr": "\n".join(f"l{i}" for i in range(50)),
                    },
                ],
                "system_logs": ["executor 1 exited with code 3"],
            }
        ],
    }
    failure = describe_failure(task, tail_lines=5)
    assert failure.exit_code == 3
    assert "ended EXECUTOR_ERROR (exit code 3)" in failure.message
    assert "l49" in failure.message and "l44" not in failure.message
    assert "executor 1 exited with code 3" in failure.message
    assert "l0" in failure.log and "out" in failure.log


def test_failure_summary_of_a_system_error_without_executor_logs() -> None:
    failure = describe_failure(
        {"id": "t", "state": "SYSTEM_ERROR", "logs": [{"system_logs": ["x"]}]}
    )
    assert failure.exit_code is None
    assert "ended SYSTEM_ERROR." in failure.message
    assert "x" in failure.message
