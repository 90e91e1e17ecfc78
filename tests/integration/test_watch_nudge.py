"""With the embedded Pulsar the worker's own writes drive a task, not the poll schedule.

The service is slowed to one poll a minute; only the watcher's reports of progress.json
and result.json can then move the task through RUNNING to COMPLETE within the wait.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from tesp_core.config import Settings
from tesp_core.models import State
from tesp_core.runtime import Tesp


def test_a_local_task_is_driven_by_its_worker_writes_not_by_polls(tmp_path: Path) -> None:
    with Tesp(Settings(data_dir=tmp_path / "data", runtime="none")) as tesp:
        service = tesp.service
        service.limits = dataclasses.replace(
            service.limits, poll_min=60.0, poll_min_local=60.0, poll_fast_seconds=0.0
        )
        body = {"executors": [{"image": "a", "command": ["sh", "-c", "sleep 0.3; echo done"]}]}
        task_id = service.create_task(body)
        seen: list[State] = []
        deadline = time.monotonic() + 30  # half the poll interval
        while time.monotonic() < deadline:
            task = service.get_task(task_id)
            assert task.state is not None
            if not seen or seen[-1] is not task.state:
                seen.append(task.state)
            if task.state.is_terminal:
                break
            time.sleep(0.01)
    assert seen[-1] is State.COMPLETE, seen
    assert State.RUNNING in seen, seen
    assert task.logs is not None and task.logs[0].logs is not None
    assert task.logs[0].logs[0].stdout == "done\n"
