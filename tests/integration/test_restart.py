"""Tasks survive a restart of ``tesp serve`` (SQLite under the data directory)."""

from __future__ import annotations

from pathlib import Path

import requests

from tests.conftest import TERMINAL, TespProcess, wait_for_state


def test_tasks_survive_restart_and_in_flight_tasks_finish(tmp_path: Path) -> None:
    server = TespProcess(data_dir=tmp_path / "data", storage=tmp_path / "storage").start()
    try:
        done_id = requests.post(
            f"{server.api}/tasks",
            json={
                "name": "before-restart",
                "executors": [{"image": "a", "command": ["echo", "first life"]}],
            },
            timeout=10,
        ).json()["id"]
        wait_for_state(server.api, done_id, TERMINAL)
        # A task still running when the server stops is picked up by the next one.
        running_id = requests.post(
            f"{server.api}/tasks",
            json={
                "executors": [{"image": "a", "command": ["sh", "-c", "sleep 2; echo survived"]}],
            },
            timeout=10,
        ).json()["id"]
        wait_for_state(server.api, running_id, {"RUNNING"})
    finally:
        server.stop()
    again = TespProcess(
        data_dir=tmp_path / "data", storage=tmp_path / "storage", port=server.port
    ).start()
    try:
        task = requests.get(
            f"{again.api}/tasks/{done_id}", params={"view": "FULL"}, timeout=10
        ).json()
        assert task["state"] == "COMPLETE"
        assert task["name"] == "before-restart"
        assert task["logs"][0]["logs"][0]["stdout"] == "first life\n"
        resumed = wait_for_state(again.api, running_id, TERMINAL, timeout=60)
        assert resumed["state"] == "COMPLETE", resumed
        assert resumed["logs"][0]["logs"][0]["stdout"] == "survived\n"
        listed = requests.get(f"{again.api}/tasks", timeout=10).json()["tasks"]
        assert [t["id"] for t in listed] == [running_id, done_id]
    finally:
        again.stop()
