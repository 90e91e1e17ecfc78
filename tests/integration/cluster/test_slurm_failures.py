"""What a TES task says when Slurm refuses, stops or loses its job (real Slurm, real Pulsar).

Each test provokes the failure for real: a partition that does not exist, a disk request
no node has, a job script whose worker Python is missing, ``scancel`` from outside TES, a
controller that goes away while the worker runs on, and a worker killed while Pulsar has
already called its job complete.
"""

from __future__ import annotations

import os
import signal
import time

import psutil
import pytest
import requests

from tests.cluster.pulsar import ClusterPulsar
from tests.cluster.slurm import SlurmCluster
from tests.conftest import TERMINAL, TespProcess, wait_for_state
from tests.integration.cluster.conftest import STALE_SECONDS

SUBMIT_FAILED = (
    "Pulsar could not start the job: its submission to the scheduler failed (Pulsar keeps the "
    "scheduler's reason nowhere it reports: its log names the submit command, the scheduler's "
    "log the reason)"
)
NEVER_STARTED = "the worker never started: the job ended"
NEVER_STARTED_HINT = (
    " before the worker's first write (progress.json); check the worker's Python on the "
    "compute node (worker_python) and the Pulsar log; the job's stderr ends with: "
)
UNREQUESTED_STOP = (
    "the job was stopped by a signal TESP did not send (SIGTERM): a scheduler time limit, "
    "preemption, or an operator outside TES"
)


def _submit(api: str, task: dict) -> str:
    response = requests.post(f"{api}/tasks", json=task, timeout=10)
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


def _slurm_job_id(slurm: SlurmCluster, task_id: str) -> str:
    out = slurm.run("squeue", "-h", "-n", f"pulsar_{task_id}", "-o", "%A").stdout.split()
    assert len(out) == 1, out
    return out[0]


def _processes(match: list[str]) -> list[psutil.Process]:
    """Live processes whose command line contains every string of ``match``."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        line = " ".join(proc.info["cmdline"] or [])
        if all(part in line for part in match):
            found.append(proc)
    return found


def _wait_for_log(server: TespProcess, text: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while text not in (server.data_dir / "tesp-serve.log").read_text(errors="replace"):
        assert time.monotonic() < deadline, f"{text!r} never logged: {server.log_text()[-3000:]}"
        time.sleep(0.2)


@pytest.mark.parametrize(
    "resources",
    [
        {"backend_parameters": {"slurm_partition": "nosuch"}},
        {"disk_gb": 1e6},  # more temporary disk than any node has
    ],
    ids=["unknown-partition", "too-much-disk"],
)
def test_a_job_the_scheduler_refuses_says_pulsar_could_not_start_it(
    slurm_tesp: TespProcess, resources: dict
) -> None:
    task_id = _submit(
        slurm_tesp.api,
        {"executors": [{"image": "a", "command": ["true"]}], "resources": resources},
    )
    done = wait_for_state(slurm_tesp.api, task_id, TERMINAL, timeout=60)
    assert done["state"] == "SYSTEM_ERROR"
    assert done["logs"][0]["system_logs"] == [SUBMIT_FAILED]
    assert done["logs"][0]["logs"] == []


def test_a_job_script_failing_before_the_worker_shows_the_jobs_stderr(
    slurm_tesp_backends: TespProcess,
) -> None:
    api = slurm_tesp_backends.api
    task_id = _submit(
        api,
        {
            "executors": [{"image": "a", "command": ["true"]}],
            "resources": {"backend_parameters": {"backend": "broken"}},
        },
    )
    done = wait_for_state(api, task_id, TERMINAL, timeout=60)
    assert done["state"] == "SYSTEM_ERROR"
    [message] = done["logs"][0]["system_logs"]
    assert message.startswith(NEVER_STARTED), message
    assert NEVER_STARTED_HINT in message, message
    # bash's own words, from the job script Slurm ran (its stderr file, via Pulsar's status)
    assert message.endswith("/nonexistent/bin/python3: No such file or directory"), message


def test_more_cores_than_the_backend_fits_is_refused_before_slurm_sees_it(
    slurm_tesp_backends: TespProcess,
) -> None:
    """Slurm would keep cpu_cores=1000 PENDING (reason PartitionConfig) for ever."""
    api = slurm_tesp_backends.api
    response = requests.post(
        f"{api}/tasks",
        json={
            "executors": [{"image": "a", "command": ["true"]}],
            "resources": {"cpu_cores": 1000, "backend_parameters": {"backend": "slurm"}},
        },
        timeout=10,
    )
    assert response.status_code == 400
    assert "resources.cpu_cores" in response.text
    cores = min(2, os.cpu_count() or 1)
    fits = _submit(
        api,
        {
            "executors": [{"image": "a", "command": ["sh", "-c", "echo $SLURM_JOB_CPUS_PER_NODE"]}],
            "resources": {"cpu_cores": cores, "backend_parameters": {"backend": "slurm"}},
        },
    )
    done = wait_for_state(api, fits, TERMINAL, timeout=60)
    assert done["state"] == "COMPLETE", done["logs"]
    assert done["logs"][0]["logs"][0]["stdout"] == f"{cores}\n"


def test_a_signal_tesp_did_not_send_is_named_with_the_time_limit(
    slurm_tesp: TespProcess, slurm: SlurmCluster
) -> None:
    """``scancel`` outside TES: Slurm SIGTERMs the job as a time limit or preemption would."""
    api = slurm_tesp.api
    marker = str(8000 + os.getpid() % 1000)
    task_id = _submit(
        api,
        {
            "executors": [{"image": "a", "command": ["sleep", marker]}],
            "resources": {"backend_parameters": {"slurm_time_limit": "10"}},
        },
    )
    wait_for_state(api, task_id, {"RUNNING"}, timeout=60)
    slurm.run("scancel", _slurm_job_id(slurm, task_id))
    done = wait_for_state(api, task_id, TERMINAL, timeout=60)
    assert done["state"] == "SYSTEM_ERROR"
    assert done["logs"][0]["system_logs"] == [
        UNREQUESTED_STOP
        + "; the task asked for slurm_time_limit '10' (10 minutes as Slurm counts it)",
        "canceled: the worker received SIGTERM",
    ]
    assert _processes(["sleep", marker]) == []


@pytest.mark.parametrize(
    ("with_script", "ended"),
    [
        # The job script outlives the worker and records its exit (128 + SIGKILL).
        (False, "the job then ended with code 137"),
        # Nothing is left to record an exit (as when the node dies): the heartbeat decides.
        (True, f"its heartbeat then stopped for {STALE_SECONDS} s"),
    ],
    ids=["worker-killed", "whole-job-killed"],
)
def test_a_worker_that_dies_after_pulsar_called_its_job_complete_is_a_system_error(
    slurm_tesp_backends: TespProcess, slurm: SlurmCluster, with_script: bool, ended: str
) -> None:
    """The controller goes away (Pulsar calls the job complete), then the worker dies too."""
    api = slurm_tesp_backends.api
    marker = str(9000 + os.getpid() % 1000 + with_script)
    task_id = _submit(
        api,
        {
            "executors": [{"image": "a", "command": ["sleep", marker]}],
            "resources": {"backend_parameters": {"backend": "slurm", "slurm_time_limit": "5"}},
        },
    )
    wait_for_state(api, task_id, {"RUNNING"}, timeout=60)
    slurm.stop_controller()
    try:
        _wait_for_log(slurm_tesp_backends, f"task {task_id}: Pulsar reports the job complete")
        [worker] = _processes([f"{task_id}/tool_files/tesp-spec.json"])
        script = worker.parent()
        assert script is not None and "slurm_script" in " ".join(script.cmdline())
        if with_script:
            script.send_signal(signal.SIGKILL)
        worker.send_signal(signal.SIGKILL)
        for sleeper in _processes(["sleep", marker]):
            sleeper.kill()  # the worker's executor: its own session, not killed with it
        done = wait_for_state(api, task_id, TERMINAL, timeout=STALE_SECONDS + 60)
    finally:
        slurm.start_controller()
        slurm.wait_idle()
    assert done["state"] == "SYSTEM_ERROR"
    [message] = done["logs"][0]["system_logs"]
    assert message.startswith(
        "the worker ended (Pulsar status 'complete') without writing result.json (Pulsar had "
        f"called the job complete while the worker ran on; {ended})"
    ), message


def test_pulsar_server_answers_a_missing_file_with_404_and_no_traceback(
    slurm_pulsar: ClusterPulsar,
) -> None:
    url = slurm_pulsar.url
    requests.post(f"{url}/jobs", params={"job_id": "probe-404"}, timeout=10).raise_for_status()
    before = len(slurm_pulsar.log_text_full())
    missing = requests.get(
        f"{url}/jobs/probe-404/files",
        params={"name": "result.json", "type": "output_workdir"},
        timeout=10,
    )
    assert missing.status_code == 404
    assert "Traceback" not in slurm_pulsar.log_text_full()[before:]
    # A real error (a path out of the job's directory) still fails loudly, with its traceback.
    escape = requests.get(
        f"{url}/jobs/probe-404/files",
        params={"name": "../../../../etc/passwd", "type": "output_workdir"},
        timeout=10,
    )
    assert escape.status_code == 500
    deadline = time.monotonic() + 10
    while "Traceback" not in slurm_pulsar.log_text_full()[before:]:
        assert time.monotonic() < deadline, slurm_pulsar.log_text()
        time.sleep(0.1)
    requests.delete(f"{url}/jobs/probe-404", timeout=10)
