"""The AMQP backend's pure parts: its job-state file and reading result.json from stdout."""

from __future__ import annotations

import json
from pathlib import Path

from tesp_core.backends import pulsar_amqp_launch as launch
from tesp_core.backends.pulsar_amqp import _result_from_stdout, _state_file
from tesp_core.backends.pulsar_amqp_link import key_prefix
from tesp_core.backends.pulsar_amqp_state import JobStateStore


def test_a_finished_job_never_goes_back(tmp_path: Path) -> None:
    store = JobStateStore(tmp_path / "s.sqlite")
    store.create("j1")
    store.mark("j1", "published")
    assert store.update("j1", phase="running", heartbeat="t1")
    assert store.update("j1", phase="complete", heartbeat="t2", returncode=0, result='{"a": 1}')
    # A late answer to a status request, computed before the job ended.
    assert store.update("j1", phase="running", heartbeat="t3", returncode=7, result='{"b": 2}')
    record = store.get("j1")
    assert record is not None
    assert (record.phase, record.returncode, record.result, record.heartbeat) == (
        "complete",
        0,
        '{"a": 1}',
        "t3",
    )
    assert record.published and record.seen and record.terminal
    assert store.active() == []


def test_state_survives_reopening_and_unknown_jobs_are_refused(tmp_path: Path) -> None:
    store = JobStateStore(tmp_path / "s.sqlite")
    store.create("j1")
    store.mark("j1", "published")
    store.mark("j1", "cancel_requested")
    assert not store.update("other", phase="running", heartbeat="t")
    store.close()
    again = JobStateStore(tmp_path / "s.sqlite")
    record = again.get("j1")
    assert record is not None
    assert record.cancel_requested and not record.seen and record.phase == "queued"
    assert [r.job_id for r in again.active()] == ["j1"]
    again.delete("j1")
    assert again.get("j1") is None


def test_result_is_the_json_after_the_last_marker() -> None:
    result = {"state": "COMPLETE", "executor_logs": [{"stdout": "x\n"}]}
    noise = f"worker chatter\n\n{launch.RESULT_MARKER}\nnot json\n"
    stdout = f"{noise}\n{launch.RESULT_MARKER}\n{json.dumps(result)}\n"
    text = _result_from_stdout(stdout)
    assert text is not None and json.loads(text) == result
    assert _result_from_stdout("no marker at all") is None
    assert _result_from_stdout(f"\n{launch.RESULT_MARKER}\n[1, 2]\n") is None


def test_queue_names_and_state_file_follow_pulsar_and_hide_credentials() -> None:
    assert key_prefix("_default_") == "pulsar_"
    assert key_prefix("gpu") == "pulsar_gpu_"
    assert key_prefix("gpu", "site1_") == "site1_"
    name = _state_file("amqp://u:secret@mq.example.org:5671/v", "gpu", None)
    assert "secret" not in name and name.endswith(".sqlite")
    assert name == _state_file("amqp://other:pw@mq.example.org:5671/v", "gpu", None)
    assert name != _state_file("amqp://u:secret@mq.example.org:5671/v", "_default_", None)
