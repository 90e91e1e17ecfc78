"""A real Galaxy server runs a tool on ``TESPJobRunner``, which submits it to a real
``tesp serve`` (embedded Pulsar, ``none`` runtime, shared filesystem).

Everything here is real Galaxy: its config and job configuration loader (``job_conf.yml``
loads ``tesp_galaxy.runner:TESPJobRunner``), database, tool evaluation, job handler, the
runner's worker threads and monitor loop with ``AsynchronousJobState``, job script and
metadata, output collection, job deletion and restart recovery. Only the web client (UI) is
absent, and Galaxy is driven through its REST API.
"""

from __future__ import annotations

import time

import pytest

from .conftest import GalaxyServer, TespServe

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def history(galaxy: GalaxyServer) -> str:
    return str(galaxy.request("POST", "histories", json={"name": "tesp"})["id"])


def test_job_runs_on_tes_and_outputs_come_back(
    galaxy: GalaxyServer, tesp_serve: TespServe, history: str
) -> None:
    job_id, dataset_id = galaxy.run_tool(history, greeting="from TES")
    job = galaxy.wait_job(job_id, {"ok", "error", "failed", "deleted"})
    assert job["state"] == "ok", galaxy.log_tail()
    assert job["exit_code"] == 0
    assert "tool says hi" in job["tool_stdout"]

    text = _display(galaxy, dataset_id)
    assert text == "greeting: from TES\n"
    dataset = galaxy.request("GET", f"datasets/{dataset_id}")
    assert dataset["state"] == "ok"

    # The job really went through TES: its external id is a TES task that ran Galaxy's script.
    task = tesp_serve.task(job["external_id"])
    assert task["state"] == "COMPLETE"
    assert task["tags"]["galaxy_tool_id"] == "tesp_echo"
    assert task["tags"]["origin"] == "galaxy-test"
    assert task["resources"]["cpu_cores"] == 1
    command = task["executors"][0]["command"]
    assert command[0] == "/bin/bash" and command[1].endswith(".sh")


def test_failing_tool_fails_the_job_with_exit_code_and_stderr(
    galaxy: GalaxyServer, tesp_serve: TespServe, history: str
) -> None:
    job_id, dataset_id = galaxy.run_tool(history, fail=True)
    job = galaxy.wait_job(job_id, {"ok", "error", "failed", "deleted"})
    assert job["state"] == "error"
    assert job["exit_code"] == 3
    assert "failing on purpose" in job["tool_stderr"]
    assert galaxy.request("GET", f"datasets/{dataset_id}")["state"] == "error"
    assert tesp_serve.task(job["external_id"])["state"] in {"COMPLETE", "EXECUTOR_ERROR"}


def test_deleting_a_running_job_cancels_the_task(
    galaxy: GalaxyServer, tesp_serve: TespServe, history: str
) -> None:
    job_id, _ = galaxy.run_tool(history, seconds=120)
    job = galaxy.wait_job(job_id, {"running", "ok", "error"})
    assert job["state"] == "running"
    task_id = job["external_id"]
    assert tesp_serve.task(task_id)["state"] == "RUNNING"

    galaxy.request("DELETE", f"jobs/{job_id}")
    deadline = time.monotonic() + 60
    while tesp_serve.task(task_id)["state"] not in {"CANCELED", "COMPLETE", "SYSTEM_ERROR"}:
        assert time.monotonic() < deadline, tesp_serve.task(task_id)
        time.sleep(0.5)
    assert tesp_serve.task(task_id)["state"] == "CANCELED"
    assert galaxy.wait_job(job_id, {"deleted", "deleting"}, timeout=60)["state"] in {
        "deleted",
        "deleting",
    }


def test_job_is_recovered_after_galaxy_restarts(
    galaxy: GalaxyServer, tesp_serve: TespServe, history: str
) -> None:
    job_id, dataset_id = galaxy.run_tool(history, greeting="survived", seconds=15)
    job = galaxy.wait_job(job_id, {"running", "ok", "error"})
    assert job["state"] == "running"
    task_id = job["external_id"]

    galaxy.stop()  # Galaxy goes away; the TES task keeps running
    assert tesp_serve.task(task_id)["state"] in {"RUNNING", "COMPLETE"}
    marker = galaxy.log.stat().st_size
    galaxy.start()  # a new Galaxy process: new runner objects, same database

    job = galaxy.wait_job(job_id, {"ok", "error", "failed", "deleted"}, timeout=180)
    assert job["state"] == "ok", galaxy.log_tail()
    assert job["external_id"] == task_id  # re-attached, not resubmitted
    assert _display(galaxy, dataset_id) == "greeting: survived\n"
    restarted_log = galaxy.log.read_text(errors="replace")[marker:]
    assert f"{task_id}) recovered in state running" in restarted_log


def _display(galaxy: GalaxyServer, dataset_id: str) -> str:
    import requests

    resp = requests.get(
        f"{galaxy.url}/api/datasets/{dataset_id}/display",
        headers={"x-api-key": galaxy.api_key or ""},
        timeout=30,
    )
    resp.raise_for_status()
    return resp.text
