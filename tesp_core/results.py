"""What the worker's files say, turned into the task's log and end state.

The worker writes ``progress.json`` while it runs and ``result.json`` when it ends (see
docs/worker-protocol.md). These pure helpers read those documents for the service
(:mod:`tesp_core.driving`): which state a result names, why a job left no result, and how
the executor and output logs are copied into the task's :class:`~tesp_core.models.TaskLog`.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from tesp_core.backends.pulsar import JobStatus
from tesp_core.backends.scheduler import time_limit_note
from tesp_core.models import ExecutorLog, OutputFileLog, State, Task, TaskLog
from tesp_core.storage.redact import redact_text

log = logging.getLogger(__name__)

RESULT = "result.json"


def now_rfc3339() -> str:
    """The current time, RFC 3339 with a timezone."""
    return datetime.now(UTC).isoformat()


def ran_to_its_end(result: dict[str, Any] | None) -> list[str]:
    """The system log of a cancelled task whose job finished before the kill reached it
    (the backend was unreachable, or the job was about to end anyway)."""
    if result is None or result.get("state") == "CANCELED":
        return []
    return [
        "the job ended before the cancel reached it: the task ran to its end "
        f"({result.get('state')}; its outputs may have been uploaded)"
    ]


def result_state(value: object) -> State:
    """The task state a worker result names; a worker-side cancel we did not ask for (or
    anything unexpected) is a system error."""
    if value in ("COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR"):
        return State(str(value))
    return State.SYSTEM_ERROR


# The worker's result when it was SIGTERMed while TESP had not asked for a cancel.
UNREQUESTED_STOP = (
    "the job was stopped by a signal TESP did not send (SIGTERM): a scheduler time limit, "
    "preemption, or an operator outside TES"
)


def explain_result(task: Task | None, result: dict[str, Any]) -> dict[str, Any]:
    """The result, with a first system log line that says why a worker-side cancel came.

    A task TESP cancels is CANCELING before its worker is signalled; a worker that reports
    CANCELED otherwise was stopped by someone else, usually the scheduler.
    """
    if result.get("state") != "CANCELED":
        return result
    note = time_limit_note(task) if task is not None else ""
    line = UNREQUESTED_STOP + (f"; {note}" if note else "")
    return {**result, "system_logs": [line, *(result.get("system_logs") or [])]}


def no_result(status: JobStatus, *, started: bool, note: str = "") -> str:
    """Why a job that ended left no result.json, with what Pulsar kept of its output."""
    if started:
        message = (
            f"the worker ended (Pulsar status {status.phase!r}) without writing {RESULT}{note}"
        )
    elif status.launch_failed:
        message = (
            "Pulsar could not start the job: its submission to the scheduler failed (Pulsar "
            "keeps the scheduler's reason nowhere it reports: its log names the submit "
            "command, the scheduler's log the reason)"
        )
    else:
        # The worker writes progress.json first thing: it never ran.
        code = "" if status.returncode is None else f" with code {status.returncode}"
        message = (
            f"the worker never started: the job ended{code} before the worker's first "
            "write (progress.json); check the worker's Python on the compute node "
            "(worker_python) and the Pulsar log"
        )
    for what, text in (("its stderr", status.stderr), ("the job's stderr", status.job_stderr)):
        tail = redact_text(text).strip()[-1000:]
        if tail:
            message += f"; {what} ends with: {tail}"
    return message


def live_logs(task: Task, finished: list[Any]) -> None:
    """Executor logs (exit code and times) of the executors that ended so far."""
    tlog = task.logs[0] if task.logs else TaskLog(start_time=now_rfc3339())
    done = []
    for entry in finished:
        try:
            done.append(ExecutorLog.model_validate(entry))
        except ValidationError:
            log.warning("task %s: ignoring a malformed executor log in progress.json", task.id)
    tlog.logs = done
    task.logs = [tlog]


def start_log(task: Task, metadata: dict[str, str], note: str | None = None) -> None:
    """A new task log, started now: the task just reached its backend. It keeps what the
    service noted while the task waited (an outage), and ``note``."""
    notes = [*(task.logs[0].system_logs or [] if task.logs else []), *([note] if note else [])]
    task.logs = [TaskLog(start_time=now_rfc3339(), metadata=metadata, system_logs=notes or None)]


def apply_result(tlog: TaskLog, result: dict[str, Any]) -> None:
    """Copy the worker's result.json into the task log."""
    tlog.start_time = result.get("start_time") or tlog.start_time
    tlog.end_time = result.get("end_time") or tlog.end_time
    tlog.logs = [ExecutorLog.model_validate(e) for e in result.get("executor_logs", [])]
    tlog.outputs = [OutputFileLog.model_validate(o) for o in result.get("outputs", [])]
    if result.get("system_logs"):
        # After what the service noted while the task ran (an outage), if anything.
        tlog.system_logs = [*(tlog.system_logs or []), *(str(s) for s in result["system_logs"])]
