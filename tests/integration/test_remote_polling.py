"""How TESP polls a remote Pulsar while a job starts: its progress file, and its status."""

from __future__ import annotations

import time
from pathlib import Path

import requests

from tests.conftest import TERMINAL, TespProcess, wait_for_state
from tests.servers import PulsarServer


def test_a_worker_that_never_starts_is_noticed_soon_and_asked_little(tmp_path: Path) -> None:
    """No Python at the worker's path on the node: Pulsar runs the job, whose script
    fails and never writes progress.json. Its status is still read every 0.25 s, so the task
    ends at once, after a few requests for the missing file (each is an error on a real
    Pulsar), not after poll_max seconds of them."""
    pulsar = PulsarServer(tmp_path / "pulsar").start()
    server = TespProcess(
        data_dir=tmp_path / "data",
        storage=tmp_path / "storage",
        extra_args=["--pulsar-url", pulsar.url, "--runtime", "none"],
        env={"TESP_WORKER_PYTHON": "/nonexistent/python3", "TESP_LOG_LEVEL": "DEBUG"},
    ).start()
    try:
        body = {"executors": [{"image": "a", "command": ["true"]}]}
        start = time.monotonic()
        task_id = requests.post(f"{server.api}/tasks", json=body, timeout=10).json()["id"]
        task = wait_for_state(server.api, task_id, TERMINAL, timeout=60)
        took = time.monotonic() - start
        full = requests.get(
            f"{server.api}/tasks/{task_id}", params={"view": "FULL"}, timeout=10
        ).json()
    finally:
        server.stop()
        pulsar.stop()
    assert task["state"] == "SYSTEM_ERROR", task
    notes = " ".join(full["logs"][0]["system_logs"])
    assert "/nonexistent/python3: No such file or directory" in notes, notes
    assert took < 5, took
    log = (tmp_path / "data" / "tesp-serve.log").read_text()
    asked = [
        line
        for line in log.splitlines()
        if f"/jobs/{task_id}/files?name=progress.json" in line and '" 404 ' in line
    ]
    # 0.25 s of polls at 10-50 ms apart, plus the status read's own: a few, never hundreds.
    assert 0 < len(asked) <= 40, len(asked)
