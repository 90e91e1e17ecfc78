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

FAN = """
SAMPLES = [f"s{i}" for i in range(4)]

rule all:
    input: "result/total.txt"

rule make:
    output: "data/{sample}.txt"
    threads: 2
    resources: mem_mb=300, disk_mb=2000, runtime=7, queue="fast"
    shell: "echo {wildcards.sample} > {output}"

rule upper:
    input: "data/{sample}.txt"
    output: "upper/{sample}.txt"
    shell: "tr a-z A-Z < {input} > {output}"

rule total:
    input: expand("upper/{sample}.txt", sample=SAMPLES)
    output: "result/total.txt"
    shell: "cat {input} > {output}"
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

EXPECTED_TOTAL = "S0\nS1\nS2\nS3\n"


def snakemake(workdir: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """``snakemake --executor tesp`` in ``workdir``; output captured."""
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "--executor", "tesp", "--jobs", "8", *args],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )


def workflow(tmp_path: Path, text: str) -> Path:
    (tmp_path / "Snakefile").write_text(text)
    return tmp_path


def run_tasks(api: str, run_tag: str | None = None, **tags: str) -> list[dict]:
    params: list[tuple[str, str]] = [("view", "FULL")]
    for key, value in tags.items():
        params += [("tag_key", key), ("tag_value", value)]
    return requests.get(f"{api}/tasks", params=params, timeout=10).json()["tasks"]


def test_fan_workflow_on_a_server(tmp_path: Path, tesp_host_server: TespProcess) -> None:
    wd = workflow(tmp_path, FAN)
    done = snakemake(wd, "--tesp-url", tesp_host_server.url)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (wd / "result/total.txt").read_text() == EXPECTED_TOTAL
    tasks = run_tasks(tesp_host_server.api, snakemake_workflow=wd.name)
    assert len(tasks) == 9  # 4 make + 4 upper + total; 'all' is local
    assert {t["state"] for t in tasks} == {"COMPLETE"}
    assert len({t["tags"]["snakemake_run"] for t in tasks}) == 1
    make = [t for t in tasks if t["tags"]["snakemake_rule"] == "make"]
    assert len(make) == 4
    for task in make:
        assert task["name"].startswith(f"snakemake:{wd.name}:make:")
        assert task["executors"][0]["workdir"] == str(wd)
        resources = task["resources"]
        assert resources["cpu_cores"] == 2
        assert resources["ram_gb"] == 0.3
        assert resources["disk_gb"] == 2.0
        assert resources["backend_parameters"] == {"runtime": "7", "queue": "fast"}


def test_embedded_mode_needs_no_server(tmp_path: Path) -> None:
    wd = workflow(tmp_path, FAN)
    done = snakemake(wd)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (wd / "result/total.txt").read_text() == EXPECTED_TOTAL
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
