"""TES tasks on a real Slurm: TESP -> Pulsar (queued_cli, Slurm plugin) -> sbatch.

The cluster, the Pulsar and the TESP are session fixtures (``conftest.py``); each task proves
what Slurm did from inside the job: its SLURM_* environment and ``scontrol show job`` of
its own job id, run by the task on the compute node.
"""

from __future__ import annotations

import os
import time

import psutil
import pytest
import requests

from tests.cluster.slurm import SlurmCluster
from tests.conftest import TERMINAL, TespProcess, wait_for_state

# What the task prints: its Slurm environment, then the controller's view of its job.
REPORT = (
    'echo "job=$SLURM_JOB_ID partition=$SLURM_JOB_PARTITION '
    'cpus=$SLURM_JOB_CPUS_PER_NODE mem=$SLURM_MEM_PER_NODE"; '
    'scontrol -o show job "$SLURM_JOB_ID"'
)


def _fields(stdout: str) -> tuple[dict[str, str], dict[str, str]]:
    """The task's ``echo`` line and its ``scontrol`` line, each as key=value pairs."""
    echo, scontrol = stdout.splitlines()[:2]
    pairs = [
        dict(w.partition("=")[::2] for w in line.split() if "=" in w) for line in (echo, scontrol)
    ]
    return pairs[0], pairs[1]


def _run(api: str, task: dict) -> dict:
    task_id = requests.post(f"{api}/tasks", json=task, timeout=10).json()["id"]
    return wait_for_state(api, task_id, TERMINAL, timeout=120)


def _job_name(task_id: str) -> str:
    return f"pulsar_{task_id}"  # Pulsar's job_name_template; the Pulsar job id is the task id


def _slurm_jobs_named(slurm: SlurmCluster, name: str) -> list[str]:
    out = slurm.run("squeue", "-h", "-n", name, "-o", "%A %T").stdout
    return [line for line in out.splitlines() if line.strip()]


def test_task_runs_as_a_slurm_job_with_the_resources_it_asked_for(
    slurm_tesp: TespProcess, slurm: SlurmCluster
) -> None:
    cpus = min(2, os.cpu_count() or 1)
    done = _run(
        slurm_tesp.api,
        {
            "executors": [{"image": "a", "command": ["sh", "-c", REPORT]}],
            "resources": {
                "cpu_cores": cpus,
                "ram_gb": 0.25,
                "disk_gb": 0.5,
                "backend_parameters": {
                    "slurm_partition": "tesp-alt",
                    "slurm_time_limit": "0:10:30",
                },
            },
        },
    )
    assert done["state"] == "COMPLETE", done["logs"]
    env, job = _fields(done["logs"][0]["logs"][0]["stdout"])
    assert env["job"].isdigit()
    assert job["JobId"] == env["job"]
    assert job["JobName"] == _job_name(done["id"])
    assert env["partition"] == job["Partition"] == "tesp-alt"
    assert env["cpus"] == job["NumCPUs"] == job["CPUs/Task"] == str(cpus)
    assert env["mem"] == "256"  # 0.25 GiB in MiB
    assert job["MinMemoryNode"] == "256M"
    assert job["MinTmpDiskNode"] == "512M"
    assert job["TimeLimit"] == "00:11:00"  # Slurm counts whole minutes: 10:30 rounds up


def test_task_without_resources_gets_the_cluster_defaults(
    slurm_tesp: TespProcess,
) -> None:
    done = _run(slurm_tesp.api, {"executors": [{"image": "a", "command": ["sh", "-c", REPORT]}]})
    assert done["state"] == "COMPLETE", done["logs"]
    env, job = _fields(done["logs"][0]["logs"][0]["stdout"])
    assert env["partition"] == job["Partition"] == "debug"
    assert job["CPUs/Task"] == "1"
    assert job["TimeLimit"] == "UNLIMITED"


def test_cancel_removes_the_slurm_job(slurm_tesp: TespProcess, slurm: SlurmCluster) -> None:
    api = slurm_tesp.api
    marker = str(7000 + os.getpid() % 1000)
    task_id = requests.post(
        f"{api}/tasks",
        json={"executors": [{"image": "a", "command": ["sleep", marker]}]},
        timeout=10,
    ).json()["id"]
    wait_for_state(api, task_id, {"RUNNING"}, timeout=60)
    running = _slurm_jobs_named(slurm, _job_name(task_id))
    assert len(running) == 1 and running[0].endswith("RUNNING"), running
    assert requests.post(f"{api}/tasks/{task_id}:cancel", timeout=10).ok
    assert wait_for_state(api, task_id, TERMINAL, timeout=60)["state"] == "CANCELED"
    deadline = time.monotonic() + 30
    while _slurm_jobs_named(slurm, _job_name(task_id)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _slurm_jobs_named(slurm, _job_name(task_id)) == []
    sleepers = [
        p
        for p in psutil.process_iter(["cmdline"])
        if (p.info["cmdline"] or [])[:2] == ["sleep", marker]
    ]
    assert sleepers == []


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("slurm_partition", "debug; touch /tmp/owned"),
        ("slurm_partition", "debug\n#SBATCH --uid=0"),
        ("slurm_account", "$(id)"),
        ("slurm_qos", "a b"),
        ("slurm_time_limit", "10 minutes"),
    ],
)
def test_a_bad_scheduler_parameter_is_refused_naming_the_field(
    slurm_tesp: TespProcess, key: str, value: str
) -> None:
    response = requests.post(
        f"{slurm_tesp.api}/tasks",
        json={
            "executors": [{"image": "a", "command": ["true"]}],
            "resources": {"backend_parameters": {key: value}},
        },
        timeout=10,
    )
    assert response.status_code == 400
    assert f"resources.backend_parameters.{key}" in response.text


def test_service_info_advertises_the_scheduler_parameters(slurm_tesp: TespProcess) -> None:
    info = requests.get(f"{slurm_tesp.api}/service-info", timeout=10).json()
    assert {"slurm_partition", "slurm_time_limit", "slurm_account", "slurm_qos"} <= set(
        info["tesResources_backend_parameters"]
    )


def test_an_unreachable_controller_never_reads_as_complete(
    slurm_tesp: TespProcess, slurm: SlurmCluster
) -> None:
    """With slurmctld down, squeue fails and Pulsar's Slurm plugin calls the job done.

    The worker runs on under slurmd and keeps its heartbeat going, so TESP waits for its
    result.json instead of believing Pulsar, and the task ends as the job really did.
    """
    api = slurm_tesp.api
    task_id = requests.post(
        f"{api}/tasks",
        json={"executors": [{"image": "a", "command": ["sh", "-c", "sleep 30; echo finished"]}]},
        timeout=10,
    ).json()["id"]
    wait_for_state(api, task_id, {"RUNNING"}, timeout=60)
    slurm.stop_controller()
    try:
        final = wait_for_state(api, task_id, TERMINAL, timeout=120)
    finally:
        slurm.start_controller()
        slurm.wait_idle()
    assert final["state"] == "COMPLETE", final
    assert final["logs"][0]["logs"][0]["stdout"] == "finished\n"
    assert final["logs"][0]["logs"][0]["exit_code"] == 0
    log = (slurm_tesp.data_dir / "tesp-serve.log").read_text()
    assert f"task {task_id}: Pulsar reports the job complete, but its worker still" in log
