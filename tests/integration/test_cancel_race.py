"""A task cancelled right after it is created never runs its executor.

Found by trying the product: with creates and cancels overlapping, Pulsar sometimes starts
a job it was just told to cancel (its queue thread is past its cancel check), and TESP then
deleted the job directory, Pulsar's cancel record with it, while the worker started. 1 to 4
of 40 such tasks ran their executor to the end although they read CANCELED. Later, a fresh
user found 9 of 40 such job directories left on disk for good (see below).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tesp_core.config import Settings
from tesp_core.models import State
from tesp_core.runtime import Tesp


def test_tasks_cancelled_as_they_are_created_never_run(tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    with Tesp(Settings(data_dir=tmp_path / "data", runtime="none")) as tesp:
        service = tesp.service

        def create_and_cancel(n: int) -> str:
            script = f"sleep 1; echo ran > {markers}/{n}"
            task_id = service.create_task(
                {"executors": [{"image": "a", "command": ["sh", "-c", script]}]}
            )
            service.cancel_task(task_id)
            return task_id

        with ThreadPoolExecutor(8) as pool:
            ids = list(pool.map(create_and_cancel, range(80)))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            states = [service.get_task(t).state for t in ids]
            if all(s is not None and s.is_terminal for s in states):
                break
            time.sleep(0.1)
        # Long enough for any executor that did start to have written its marker.
        time.sleep(4)
        # Every job directory is deleted, in the end: a clean while Pulsar's launcher still
        # wrote into a cancelled job's directory was undone (its spec, which can carry
        # storage credentials, stayed on disk for ever).
        staging = tmp_path / "data" / "pulsar" / "staging"
        deadline = time.monotonic() + 20
        while list(staging.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = sorted(p.name for p in staging.iterdir())
    assert states == [State.CANCELED] * 80
    assert sorted(p.name for p in markers.iterdir()) == []
    assert left == []
