"""``staging: tes`` end to end: a real Galaxy runs ``tesp_cat`` on ``TESPJobRunner``, whose
environment ``tes_staged`` sends it to a second real ``tesp serve`` with runtime ``bwrap``.

Under bwrap every TES path is bound from the task's own directory (a file's parent directory
holds only the staged files) and the rest of the host is read-only, ``/tmp`` a fresh tmpfs:
the job only sees what the runner staged as TES inputs (job directory, tool directory, input
dataset, the empty output Galaxy created), and Galaxy only gets back what the task returned
as TES outputs (job directory with exit code and streams, output dataset). Metadata is set
by Galaxy after the task (``embed_metadata_in_job`` defaults to false with ``staging: tes``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import DATA, GalaxyServer, TespServe

pytestmark = pytest.mark.timeout(600)

TEXT = "greeting: staged in\n"


@pytest.fixture(scope="module")
def staged_history(galaxy: GalaxyServer) -> str:
    return str(galaxy.request("POST", "histories", json={"name": "tesp staged"})["id"])


@pytest.fixture(scope="module")
def staged_input(galaxy: GalaxyServer, staged_history: str) -> dict[str, str]:
    """A dataset (made by ``tesp_echo`` in environment ``tes``, the quickest way to one),
    with a file next to it on Galaxy's host that is never staged."""
    job_id, dataset_id = galaxy.run_tool(staged_history, greeting="staged in")
    assert galaxy.wait_job(job_id, {"ok", "error", "failed", "deleted"})["state"] == "ok"
    dataset = galaxy.wait_dataset(dataset_id)
    path = Path(dataset["file_name"])
    (path.parent / "sibling.txt").write_text("not staged\n")
    return {"id": dataset["id"], "path": str(path)}


def test_staged_job_runs_under_bwrap_and_its_output_comes_back(
    galaxy: GalaxyServer, tesp_bwrap: TespServe, staged_history: str, staged_input: dict[str, str]
) -> None:
    marker = galaxy.log.stat().st_size
    job_id, dataset_id = galaxy.run_tool(
        staged_history, "tesp_cat", input={"src": "hda", "id": staged_input["id"]},
        probe="sibling.txt",
    )  # fmt: skip
    job = galaxy.wait_job(job_id, {"ok", "error", "failed", "deleted"})
    assert job["state"] == "ok", galaxy.log_tail()
    assert job["exit_code"] == 0
    # The script beside the tool XML ran: the tool directory was staged.
    assert job["tool_stdout"] == "tool script ran from data\n"
    assert job["tool_stderr"] == ""

    db_id = _db_id(galaxy, job["id"])
    task = tesp_bwrap.task(job["external_id"])
    assert task["state"] == "COMPLETE"
    assert task["tags"] == {"galaxy_job_id": str(db_id), "galaxy_tool_id": "tesp_cat"}
    job_dir = task["executors"][0]["workdir"]
    output = galaxy.request("GET", f"datasets/{dataset_id}", admin=True)["file_name"]
    assert [(i["path"], i["type"]) for i in task["inputs"]] == [
        (job_dir, "DIRECTORY"),
        (str(DATA), "DIRECTORY"),
        *sorted([(staged_input["path"], "FILE"), (output, "FILE")]),
    ]
    extra = output.removesuffix(".dat") + "_file[s]"
    assert [(o["path"], o["type"]) for o in task["outputs"]] == [
        (job_dir, "DIRECTORY"),
        (output, "FILE"),
        (extra, "DIRECTORY"),
    ]
    assert all(u["url"].startswith("file://") for u in task["inputs"] + task["outputs"])
    # The job script and the exit code file came back with the job directory.
    uploaded = {o["path"] for o in task["logs"][0]["outputs"]}
    assert {output, f"{job_dir}/galaxy_{db_id}.ec"} <= uploaded

    # The output came back through TES; the sibling of the input was not visible to the job.
    assert _display(galaxy, dataset_id) == TEXT + "probe sibling.txt: hidden\n"
    assert Path(staged_input["path"]).with_name("sibling.txt").is_file()  # it is, on the host
    dataset = galaxy.wait_dataset(dataset_id)
    assert (dataset["state"], dataset["metadata_data_lines"]) == ("ok", 2)
    # Galaxy set the metadata itself, after the task (the job script did not).
    log = galaxy.log.read_text(errors="replace")[marker:]
    assert f"execution of external set_meta for job {db_id} finished" in log


def test_staged_failing_job_reports_exit_code_and_stderr(
    galaxy: GalaxyServer, tesp_bwrap: TespServe, staged_history: str, staged_input: dict[str, str]
) -> None:
    job_id, dataset_id = galaxy.run_tool(
        staged_history, "tesp_cat", input={"src": "hda", "id": staged_input["id"]}, fail=True
    )
    job = galaxy.wait_job(job_id, {"ok", "error", "failed", "deleted"})
    assert job["state"] == "error"
    assert job["exit_code"] == 3
    assert job["tool_stderr"] == "failing on purpose\n"
    assert galaxy.request("GET", f"datasets/{dataset_id}")["state"] == "error"
    # Galaxy's job script itself ends well: the tool's exit code travels in the .ec file.
    assert tesp_bwrap.task(job["external_id"])["state"] == "COMPLETE"


def _db_id(galaxy: GalaxyServer, encoded_id: str) -> int:
    """A database id (the API shows encoded ones)."""
    return int(
        galaxy.request("GET", f"configuration/decode/{encoded_id}", admin=True)["decoded_id"]
    )


def _display(galaxy: GalaxyServer, dataset_id: str) -> str:
    import requests

    resp = requests.get(
        f"{galaxy.url}/api/datasets/{dataset_id}/display",
        headers={"x-api-key": galaxy.api_key or ""},
        timeout=30,
    )
    resp.raise_for_status()
    return resp.text
