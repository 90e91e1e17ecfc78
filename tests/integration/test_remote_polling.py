"""How TESP talks to a remote Pulsar: polling while a job starts, and answers that are not
Pulsar's."""

from __future__ import annotations

import shlex
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests

from tests.conftest import TERMINAL, TespProcess, remote_tesp, wait_for_state
from tests.servers import PulsarServer


def _run(server: TespProcess, command: list[str]) -> tuple[str, dict[str, Any]]:
    """Run one task to its end; its id and its FULL view."""
    body = {"executors": [{"image": "a", "command": command}]}
    task_id = requests.post(f"{server.api}/tasks", json=body, timeout=10).json()["id"]
    wait_for_state(server.api, task_id, TERMINAL, timeout=60)
    view = requests.get(f"{server.api}/tasks/{task_id}", params={"view": "FULL"}, timeout=10)
    return task_id, view.json()


@dataclass
class _Ran:
    task_id: str
    full: dict[str, Any]
    log: str
    took: float

    def missing_progress_asks(self) -> int:
        """How often TESP asked for the task's progress.json before it existed."""
        wanted = f"/jobs/{self.task_id}/files?name=progress.json"
        return sum(wanted in line and '" 404 ' in line for line in self.log.splitlines())


def _run_on_a_pulsar(tmp_path: Path, command: list[str], **env: str) -> _Ran:
    """One task to its end through a fresh ``tesp serve`` (its log at DEBUG: every Pulsar
    call) driving a fresh Pulsar over HTTP."""
    pulsar = PulsarServer(tmp_path / "pulsar").start()
    server = remote_tesp(tmp_path, pulsar.url, TESP_LOG_LEVEL="DEBUG", **env)
    try:
        start = time.monotonic()
        task_id, full = _run(server, command)
        took = time.monotonic() - start
    finally:
        server.stop()
        pulsar.stop()
    return _Ran(task_id, full, (tmp_path / "data" / "tesp-serve.log").read_text(), took)


def test_a_worker_that_never_starts_is_noticed_soon_and_asked_little(tmp_path: Path) -> None:
    """No Python at the worker's path on the node: Pulsar runs the job, whose script
    fails and never writes progress.json. Its status is still read every 0.25 s, so the task
    ends at once, after a few requests for the missing file (each is an error on a real
    Pulsar), not after poll_max seconds of them."""
    ran = _run_on_a_pulsar(tmp_path, ["true"], TESP_WORKER_PYTHON="/nonexistent/python3")
    assert ran.full["state"] == "SYSTEM_ERROR", ran.full
    notes = " ".join(ran.full["logs"][0]["system_logs"])
    assert notes.startswith("the worker never started: the job ended with code 127 before"), notes
    assert "/nonexistent/python3: No such file or directory" in notes, notes
    assert ran.took < 5, ran.took
    # Pulsar needs one or two status reads (0.25 s apart) to see the script's exit. The
    # missing file is asked for ever more rarely after launch (every 1/8 of the time since,
    # 10 ms at first): about 25 requests in 0.5 s, 34 in 2 s; at 10 ms apart it was 45.
    assert 0 < ran.missing_progress_asks() <= 30, ran.missing_progress_asks()


def test_a_worker_that_starts_slowly_is_asked_for_its_progress_ever_more_rarely(
    tmp_path: Path,
) -> None:
    """A node whose Python takes 1.5 s to start (a cold shared file system): the task ends
    COMPLETE, and its missing progress.json was asked for a few dozen times, not every
    10 ms (150 times) as before."""
    slow = tmp_path / "slow-python"
    slow.write_text(f'#!/bin/sh\nsleep 1.5\nexec {shlex.quote(sys.executable)} "$@"\n')
    slow.chmod(0o755)
    ran = _run_on_a_pulsar(tmp_path, ["echo", "late but here"], TESP_WORKER_PYTHON=str(slow))
    assert ran.full["state"] == "COMPLETE", ran.full
    assert ran.full["logs"][0]["logs"][0]["stdout"] == "late but here\n"
    # 10 ms apart for 80 ms, then every 1/8 of the time since launch: 8 + 8 ln(1.5/0.08).
    assert 10 <= ran.missing_progress_asks() <= 45, ran.missing_progress_asks()


class _MaintenancePage(BaseHTTPRequestHandler):
    """A proxy in front of Pulsar that answers everything with a 200 HTML page."""

    def _page(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        body = b"<html>maintenance</html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = _page

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_a_page_that_is_not_pulsar_s_json_is_an_outage_not_a_stuck_task(tmp_path: Path) -> None:
    page = ThreadingHTTPServer(("127.0.0.1", 0), _MaintenancePage)
    threading.Thread(target=page.serve_forever, daemon=True).start()
    server = TespProcess(
        data_dir=tmp_path / "data",
        storage=tmp_path / "storage",
        extra_args=[
            "--pulsar-url",
            f"http://127.0.0.1:{page.server_address[1]}",
            "--runtime",
            "none",
            "--max-in-flight",
            "1",
        ],
        env={"TESP_BACKEND_RETRY_SECONDS": "3"},
    ).start()
    try:
        body = {"executors": [{"image": "a", "command": ["true"]}]}
        ids = [
            requests.post(f"{server.api}/tasks", json=body, timeout=10).json()["id"]
            for _ in range(2)
        ]
        finals = [wait_for_state(server.api, t, TERMINAL, timeout=60) for t in ids]
        full = requests.get(f"{server.api}/tasks/{ids[0]}", params={"view": "FULL"}, timeout=10)
        # The page is no Pulsar to the health check either: not ready, and not up again.
        ready = requests.get(f"{server.url}/readyz", timeout=10)
        log = server.log_text()
    finally:
        server.stop()
        page.shutdown()
        page.server_close()
    # Retried as an outage, then given up after backend_retry_seconds, each with the reason;
    # the first task's slot did not keep the second one waiting for ever.
    assert [t["state"] for t in finals] == ["SYSTEM_ERROR", "SYSTEM_ERROR"]
    notes = " ".join(full.json()["logs"][0]["system_logs"])
    assert "not Pulsar's JSON (text/html)" in notes, notes
    assert ready.status_code == 503, ready.text
    assert ready.json()["checks"]["backend"] == "not healthy", ready.text
    assert "answers again" not in log, log


def test_a_long_task_polled_at_the_slowest_rate_ends_from_its_progress(tmp_path: Path) -> None:
    """At poll_max, a running task's polls still read its progress.json (the job status
    only every heartbeat_check_seconds): its end is the worker's DONE, not Pulsar's
    post-processed status, so result.json is never fetched separately."""
    # poll_max 0.5 s: reached within 5 s of the start.
    command = ["sh", "-c", "sleep 7; echo late"]
    ran = _run_on_a_pulsar(tmp_path, command, TESP_POLL_INTERVAL_MAX="0.5")
    assert ran.full["state"] == "COMPLETE", ran.full
    assert ran.full["logs"][0]["logs"][0]["stdout"] == "late\n"
    mine = [line for line in ran.log.splitlines() if f"/jobs/{ran.task_id}/" in line]
    assert not [line for line in mine if "name=result.json" in line], "ended from the status"
    assert [line for line in mine if "name=progress.json" in line and '" 200 ' in line]
