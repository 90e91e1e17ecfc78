"""max_in_flight counts jobs at work: the next task starts while Pulsar finishes the last."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import requests

from tests.conftest import TERMINAL, remote_tesp, wait_for_state
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


class _Peaks:
    """The highest value each probe returned, sampled in a thread until stopped."""

    def __init__(self, **probes: Callable[[], int]) -> None:
        self.most = dict.fromkeys(probes, 0)
        self._probes = probes
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _sample(self) -> None:
        while not self._stop.is_set():
            for name, probe in self._probes.items():
                self.most[name] = max(self.most[name], probe())
            time.sleep(0.003)


def test_a_delivered_job_frees_its_slot_while_pulsar_finishes_it(tmp_path: Path) -> None:
    pulsar = PulsarServer(tmp_path / "pulsar").start()
    server = remote_tesp(tmp_path, pulsar.url, "--max-in-flight", "1")
    marker, body = _sleeper()
    peaks = _Peaks(dirs=lambda: pulsar.jobs, executors=lambda: _at_work(marker))
    peaks.start()
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
        peaks.stop()
        server.stop()
        pulsar.stop()
    assert [t["state"] for t in finals] == ["COMPLETE"] * 6
    assert [t["logs"][0]["logs"][0]["exit_code"] for t in finals] == [0] * 6
    # One job at work at a time; the next one was set up before Pulsar had let the last
    # one go (Pulsar reaps and post-processes a job for 100 ms or more after its worker
    # wrote result.json), and every job was cleaned in the end.
    assert peaks.most == {"dirs": 2, "executors": 1}
    assert pulsar.jobs == 0


def test_tasks_that_waited_for_a_down_pulsar_start_no_more_than_the_limit(
    tmp_path: Path,
) -> None:
    pulsar = PulsarServer(tmp_path / "pulsar")  # down when the tasks come
    server = remote_tesp(tmp_path, pulsar.url, "--max-in-flight", "1")
    marker, body = _sleeper()
    peaks = _Peaks(executors=lambda: _at_work(marker))
    try:
        ids = [
            requests.post(f"{server.api}/tasks", json=body, timeout=10).json()["id"]
            for _ in range(3)
        ]
        time.sleep(2)  # every task tried Pulsar and is waiting for it
        pulsar.start()
        peaks.start()
        finals = [wait_for_state(server.api, t, TERMINAL, timeout=120) for t in ids]
    finally:
        peaks.stop()
        server.stop()
        pulsar.stop()
    assert [t["state"] for t in finals] == ["COMPLETE"] * 3
    assert [t["logs"][0]["logs"][0]["exit_code"] for t in finals] == [0] * 3
    # The tasks that waited were placed one at a time once Pulsar answered.
    assert peaks.most == {"executors": 1}
