"""max_in_flight counts jobs at work: the next task starts while Pulsar finishes the last."""

from __future__ import annotations

import random
import sys
import threading
import time
from pathlib import Path

import psutil
import requests

from tests.conftest import TERMINAL, TespProcess, wait_for_state
from tests.servers import PulsarServer


def _sleeper() -> tuple[str, dict[str, object]]:
    """A marker no other process uses, and a task whose one executor sleeps that long."""
    marker = f"0.3{random.randrange(10**6):06d}"
    return marker, {"executors": [{"image": "a", "command": ["sleep", marker]}]}


def _at_work(marker: str) -> int:
    """Executors of ``_sleeper`` tasks running right now."""
    count = 0
    for proc in psutil.process_iter(["cmdline", "status"]):
        if proc.info["status"] != psutil.STATUS_ZOMBIE and proc.info["cmdline"] == [
            "sleep",
            marker,
        ]:
            count += 1
    return count


def test_a_delivered_job_frees_its_slot_while_pulsar_finishes_it(tmp_path: Path) -> None:
    pulsar = PulsarServer(tmp_path / "pulsar").start()
    server = TespProcess(
        data_dir=tmp_path / "data",
        storage=tmp_path / "storage",
        extra_args=["--pulsar-url", pulsar.url, "--runtime", "none", "--max-in-flight", "1"],
        env={"TESP_WORKER_PYTHON": sys.executable},
    ).start()
    most = {"dirs": 0, "executors": 0}
    stop = threading.Event()
    marker, body = _sleeper()

    def watch() -> None:
        while not stop.is_set():
            most["dirs"] = max(most["dirs"], pulsar.jobs)
            most["executors"] = max(most["executors"], _at_work(marker))
            time.sleep(0.003)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        ids = [
            requests.post(f"{server.api}/tasks", json=body, timeout=10).json()["id"]
            for _ in range(6)
        ]
        finals = [wait_for_state(server.api, t, TERMINAL, timeout=120) for t in ids]
        deadline = time.monotonic() + 30
        while pulsar.jobs and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        watcher.join()
        server.stop()
        pulsar.stop()
    assert [t["state"] for t in finals] == ["COMPLETE"] * 6
    assert [t["logs"][0]["logs"][0]["exit_code"] for t in finals] == [0] * 6
    # One job at work at a time; the next one was set up before Pulsar had let the last
    # one go (Pulsar reaps and post-processes a job for 100 ms or more after its worker
    # wrote result.json), and every job was cleaned in the end.
    assert most["executors"] == 1, most
    assert most["dirs"] == 2, most
    assert pulsar.jobs == 0


def test_tasks_that_waited_for_a_down_pulsar_start_no_more_than_the_limit(
    tmp_path: Path,
) -> None:
    pulsar = PulsarServer(tmp_path / "pulsar")  # down when the tasks come
    server = TespProcess(
        data_dir=tmp_path / "data",
        storage=tmp_path / "storage",
        extra_args=["--pulsar-url", pulsar.url, "--runtime", "none", "--max-in-flight", "1"],
        env={"TESP_WORKER_PYTHON": sys.executable},
    ).start()
    most = {"executors": 0}
    stop = threading.Event()
    marker, body = _sleeper()

    def watch() -> None:
        while not stop.is_set():
            most["executors"] = max(most["executors"], _at_work(marker))
            time.sleep(0.005)

    watcher = threading.Thread(target=watch)
    try:
        ids = [
            requests.post(f"{server.api}/tasks", json=body, timeout=10).json()["id"]
            for _ in range(3)
        ]
        time.sleep(2)  # every task tried Pulsar and is waiting for it
        pulsar.start()
        watcher.start()
        finals = [wait_for_state(server.api, t, TERMINAL, timeout=120) for t in ids]
    finally:
        stop.set()
        if watcher.is_alive():
            watcher.join()
        server.stop()
        pulsar.stop()
    assert [t["state"] for t in finals] == ["COMPLETE"] * 3
    assert [t["logs"][0]["logs"][0]["exit_code"] for t in finals] == [0] * 3
    # The tasks that waited were placed one at a time once Pulsar answered.
    assert most["executors"] == 1, most
