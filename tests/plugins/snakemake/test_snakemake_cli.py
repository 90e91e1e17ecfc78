"""Real ``snakemake --executor tesp`` runs (the CLI in a subprocess) on a server and embedded."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import TERMINAL, TespProcess

SAMPLES = [f"s{i:02d}" for i in range(18)]

# 20 TES tasks: 18 per-sample jobs fan out, one aggregate fans in, one final; 'all' is local.
FAN = """
SAMPLES = [f"s{i:02d}" for i in range(18)]

localrules: all

rule all:
    input: "result/final.txt"

rule make:
    output: "data/{sample}.txt"
    threads: 2
    resources: mem_mb=300, disk_mb=2000, runtime=7, queue="fast"
    shell: "echo {wildcards.sample} > {output}"

rule aggregate:
    input: expand("data/{sample}.txt", sample=SAMPLES)
    output: "result/all.txt"
    shell: "cat {input} > {output}"

rule final:
    input: "result/all.txt"
    output: "result/final.txt"
    shell: "tr a-z A-Z < {input} > {output}"
"""

SMALL = """
rule all:
    input: "b.txt"

rule a:
    output: "a.txt"
    shell: "echo embedded > {output}"

rule b:
    input: "a.txt"
    output: "b.txt"
    shell: "tr a-z A-Z < {input} > {output}"
"""

FAILING = """
rule boom:
    output: "never.txt"
    shell: "echo the-boom-went-off >&2; exit 3"
"""

SLEEPY = """
rule all:
    input: expand("z{i}.txt", i=range(2))

rule sleepy:
    output: "z{i}.txt"
    shell: "sleep 600; touch {output}"
"""


def snakemake(
    workdir: Path, *args: str, timeout: float = 280, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``snakemake --executor tesp --jobs 4`` in ``workdir``; output captured.

    Four at a time: every job is a Python Snakemake process (2-4 s of CPU), so more
    would only queue on a small CI machine.
    """
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "--executor", "tesp", "--jobs", "4", *args],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})},
    )


def workflow(tmp_path: Path, text: str) -> Path:
    (tmp_path / "Snakefile").write_text(text)
    return tmp_path


def run_tasks(api: str, run_tag: str | None = None, **tags: str) -> list[dict]:
    params: list[tuple[str, str]] = [("view", "FULL")]
    for key, value in tags.items():
        params += [("tag_key", key), ("tag_value", value)]
    return requests.get(f"{api}/tasks", params=params, timeout=10).json()["tasks"]


def test_fan_out_fan_in_workflow_of_20_jobs_on_a_server(
    tmp_path: Path, tesp_host_server: TespProcess
) -> None:
    wd = workflow(tmp_path, FAN)
    done = snakemake(wd, "--tesp-url", tesp_host_server.url)
    assert done.returncode == 0, done.stderr[-3000:]
    for sample in SAMPLES:
        assert (wd / f"data/{sample}.txt").read_text() == f"{sample}\n"
    expected_all = "".join(f"{sample}\n" for sample in SAMPLES)
    assert (wd / "result/all.txt").read_text() == expected_all
    assert (wd / "result/final.txt").read_text() == expected_all.upper()
    tasks = run_tasks(tesp_host_server.api, snakemake_workflow=wd.name)
    assert len(tasks) == 20
    assert {t["state"] for t in tasks} == {"COMPLETE"}
    assert len({t["tags"]["snakemake_run"] for t in tasks}) == 1
    rules = sorted(t["tags"]["snakemake_rule"] for t in tasks)
    assert rules == ["aggregate", "final", *["make"] * 18]
    make = [t for t in tasks if t["tags"]["snakemake_rule"] == "make"]
    for task in make:
        assert task["name"] == f"snakemake:{wd.name}:make:{task['tags']['snakemake_jobid']}"
        assert task["executors"][0]["workdir"] == str(wd)
        assert task["resources"] == {
            "cpu_cores": 2,
            "ram_gb": 0.3,
            "disk_gb": 2.0,
            "backend_parameters": {"runtime": "7", "queue": "fast"},
            "backend_parameters_strict": False,
        }
    assert len({t["tags"]["snakemake_jobid"] for t in tasks}) == 20


def test_embedded_mode_needs_no_server(tmp_path: Path) -> None:
    wd = workflow(tmp_path, SMALL)
    done = snakemake(wd)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (wd / "a.txt").read_text() == "embedded\n"
    assert (wd / "b.txt").read_text() == "EMBEDDED\n"
    assert (wd / ".snakemake/tesp/tasks.sqlite").exists()


def test_a_failing_rule_reports_exit_code_and_stderr(
    tmp_path: Path, tesp_host_server: TespProcess
) -> None:
    wd = workflow(tmp_path, FAILING)
    done = snakemake(wd, "--tesp-url", tesp_host_server.url)
    assert done.returncode != 0
    out = done.stdout + done.stderr
    assert "ended EXECUTOR_ERROR (exit code 1)" in out
    assert "the-boom-went-off" in out
    assert "exit status 3" in out  # the rule's own exit code, from the job's stderr
    logs = list((wd / ".snakemake/tesp/logs").glob("*.log"))
    assert len(logs) == 1
    assert "the-boom-went-off" in logs[0].read_text()
    assert str(logs[0]) in out


def test_ctrl_c_cancels_the_running_tasks(tmp_path: Path, tesp_host_server: TespProcess) -> None:
    wd = workflow(tmp_path, SLEEPY)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "snakemake",
            "--executor",
            "tesp",
            "--jobs",
            "4",
            "--tesp-url",
            tesp_host_server.url,
        ],
        cwd=wd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    try:
        deadline = time.monotonic() + 120
        tasks: list[dict] = []
        while time.monotonic() < deadline:
            tasks = run_tasks(tesp_host_server.api, snakemake_workflow=wd.name)
            if len(tasks) == 2 and all(t["state"] == "RUNNING" for t in tasks):
                break
            time.sleep(0.2)
        else:
            pytest.fail(f"tasks never ran: {tasks}")
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode != 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        tasks = run_tasks(tesp_host_server.api, snakemake_workflow=wd.name)
        if all(t["state"] in TERMINAL for t in tasks):
            break
        time.sleep(0.2)
    assert [t["state"] for t in tasks] == ["CANCELED", "CANCELED"], output[-3000:]
