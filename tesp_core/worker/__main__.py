"""``python3 tesp-worker.pyz SPEC_JSON JOB_DIR``: run one TES task on the compute node.

Phases: stage inputs -> run executors in order -> stage outputs -> ``result.json``.
The exit status is 0 whenever ``result.json`` was written, whatever the task's outcome.
"""

from __future__ import annotations

import _thread
import os
import posixpath
import sys
import time

from tesp_core.worker import jsonlite
from tesp_core.worker.executors import (
    CANCEL,
    TESP_STOPPED,
    Canceled,
    ExecutorRunner,
    ExecutorSetupError,
    cancel_reason,
    now,
    stop_requested,
)
from tesp_core.worker.logshim import get_logger
from tesp_core.worker.runtimes import RealFS, plan_binds, static_dir
from tesp_core.worker.spec import TYPE_CHECKING, SpecError, parse_spec
from tesp_core.worker.staging import Layout, StagingError, stage_inputs, stage_outputs

# Every task pays for the worker's imports (issue 8): no typing, dataclasses or pathlib at
# run time, paths are strings, logging only once something is transferred (logshim.py),
# no json/re, subprocess, threading, signal or contextlib (jsonlite.py, executors.py);
# tests/unit/test_worker_imports.py keeps it that way.
if TYPE_CHECKING:
    import signal as _signal
    from collections.abc import Sequence
    from typing import Any

    from tesp_core.worker.runtimes import Bind
    from tesp_core.worker.spec import WorkerSpec
else:
    import _signal

log = get_logger("tesp_core.worker")


def redact_text(text: str) -> str:
    """``text`` with credentials removed (the storage package is loaded for it only on this
    error path, or at the task's first transfer: a task without any never loads it)."""
    from tesp_core.storage import redact_text as redact

    return redact(text)


USAGE = "usage: python3 tesp-worker.pyz SPEC_JSON JOB_DIR"

# progress.json is rewritten at least this often, so the service can tell a live worker
# from one that died with its Pulsar (whose job then looks "running" forever).
HEARTBEAT_SECONDS = 10.0
# The heartbeat thread looks for TESP's stop request (a cancel through TES) this often.
STOP_CHECK_SECONDS = 0.25


def write_json_atomic(path: str, data: dict[str, Any], *, durable: bool = True) -> None:
    """Write ``data`` so that a reader sees either the old file or the whole new one."""
    head, name = os.path.split(path)
    tmp = os.path.join(head, f".{name}.{os.getpid()}.{_thread.get_ident()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(jsonlite.dumps(data, indent=1))
        if durable:
            fh.flush()
            os.fsync(fh.fileno())
    os.replace(tmp, path)


class TaskRun:
    """The state of one run, turned into ``result.json`` at the end."""

    def __init__(self, job_dir: str) -> None:
        self.job_dir = job_dir
        self.state = "COMPLETE"
        self.start_time = now()
        self.executor_logs: list[dict[str, Any]] = []
        self.inputs: list[dict[str, str]] = []
        self.outputs: list[dict[str, str]] = []
        self.system_logs: list[str] = []
        self.runner: ExecutorRunner | None = None
        self._phase: dict[str, Any] = {}
        self._lock = _thread.allocate_lock()

    def progress(self, state: str, **extra: Any) -> None:
        """Record the phase in ``progress.json`` (with a heartbeat time)."""
        with self._lock:
            self._phase = {"state": state, **extra}
            self._write_progress()

    def heartbeat(self, stop: _thread.LockType) -> None:
        """Rewrite progress.json every HEARTBEAT_SECONDS until ``stop`` is released (a
        held lock is the stop event: the threading module is not imported), and turn
        TESP's stop request into a SIGTERM of this worker: the main thread then stops
        the running executor (TERM, then KILL after its grace) and reports CANCELED."""
        beat_due = time.monotonic() + HEARTBEAT_SECONDS
        asked = False
        while not stop.acquire(timeout=STOP_CHECK_SECONDS):
            if not asked and stop_requested(self.job_dir):
                asked = True
                CANCEL.reason = TESP_STOPPED
                os.kill(os.getpid(), _signal.SIGTERM)
            if time.monotonic() < beat_due:
                continue
            beat_due = time.monotonic() + HEARTBEAT_SECONDS
            with self._lock:
                # A failed beat is retried by the next one; the task itself is unaffected.
                try:
                    if self._phase:
                        self._write_progress()
                except OSError:
                    pass

    def _write_progress(self) -> None:
        # No fsync: readers need atomicity, not durability, and this is on the hot path.
        data = {**self._phase, "heartbeat": now()}
        write_json_atomic(os.path.join(self.job_dir, "progress.json"), data, durable=False)

    def finished_logs(self) -> list[dict[str, Any]]:
        """The executors that ended so far, without their output (kept small: progress.json
        is rewritten often; the full logs go to result.json)."""
        keys = ("start_time", "end_time", "exit_code")
        return [{k: log[k] for k in keys} for log in self.executor_logs]

    def fail(self, state: str, message: str) -> None:
        """Move to ``state`` (first failure wins) and add a system log line."""
        if self.state == "COMPLETE":
            self.state = state
        self.system_logs.append(message)

    def result(self) -> dict[str, Any]:
        """The ``result.json`` document."""
        return {
            "state": self.state,
            "start_time": self.start_time,
            "end_time": now(),
            "executor_logs": self.executor_logs,
            "inputs": self.inputs,
            "outputs": self.outputs,
            "system_logs": self.system_logs,
        }


def load_spec(path: str) -> WorkerSpec:
    """Read and parse the spec file; every failure is a :class:`SpecError`."""
    try:
        with open(path, encoding="utf-8") as fh:
            raw = jsonlite.loads(fh.read())
    except OSError as exc:
        raise SpecError(f"cannot read the spec: {exc.strerror}") from exc
    except ValueError as exc:
        raise SpecError(f"the spec is not valid JSON: {exc}") from exc
    return parse_spec(raw)


def output_parents(spec: WorkerSpec) -> set[str]:
    """Directories the executors can expect: volumes, and the parents of outputs and logs."""
    dirs = set(spec.volumes)
    for out in spec.outputs:
        dirs.add(static_dir(out.path) if out.wildcard else posixpath.dirname(out.path))
    for ex in spec.executors:
        dirs.update(posixpath.dirname(p) for p in (ex.stdout, ex.stderr) if p)
    return dirs


def prepare_job_root(spec: WorkerSpec, layout: Layout, binds: Sequence[Bind]) -> None:
    """Create every bind source (and, under ``none``, the volumes) before anything runs."""
    for bind in binds:
        path = layout.host(bind.path)
        if bind.is_file:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            _touch(path)
        else:
            os.makedirs(path, exist_ok=True)
    # Output directories exist before the executors run, as an engine's mount points would.
    for tes_dir in output_parents(spec):
        os.makedirs(layout.host(tes_dir), exist_ok=True)


def _touch(path: str) -> None:
    """``Path.touch()``: update the times of an existing file, else create it empty."""
    try:
        os.utime(path)
    except OSError:
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o666))


def run_executors(spec: WorkerSpec, run: TaskRun, runner: ExecutorRunner) -> None:
    """Run the executors strictly in order; stop at the first unignored failure."""
    for index, ex in enumerate(spec.executors):
        run.progress("RUNNING", executor=index, executor_logs=run.finished_logs())
        try:
            exlog = runner.run(index, ex)
        except (ExecutorSetupError, SpecError) as exc:
            run.fail("SYSTEM_ERROR", f"executor {index}: {exc}")
            return
        except OSError as exc:
            run.fail("SYSTEM_ERROR", f"executor {index}: {redact_text(str(exc))}")
            return
        run.executor_logs.append(exlog.to_json())
        log.info("task %s: executor %d exited %s", spec.task_id, index, exlog.exit_code)
        if exlog.exit_code != 0 and not ex.ignore_error:
            run.fail("EXECUTOR_ERROR", f"executor {index} exited with code {exlog.exit_code}")
            return


def run_task(spec_path: str, run: TaskRun) -> None:
    """All phases of one task; failures are recorded in ``run``, never raised."""
    run.progress("INITIALIZING")
    reason = cancel_reason(run.job_dir)
    if reason is not None:
        CANCEL.request(reason)  # raises Canceled: a job cancelled before it started
    try:
        spec = load_spec(spec_path)
        layout = Layout(spec.runtime.kind, os.path.join(run.job_dir, "root"))
        fs = RealFS() if spec.runtime.kind == "bwrap" else None
        binds = [] if spec.runtime.kind == "none" else plan_binds(spec, fs)
        prepare_job_root(spec, layout, binds)
        stage_inputs(spec, layout, run.inputs)
    except (SpecError, StagingError) as exc:
        run.fail("SYSTEM_ERROR", str(exc))
        return
    except OSError as exc:
        run.fail("SYSTEM_ERROR", f"preparing the job directory: {redact_text(str(exc))}")
        return
    run.runner = ExecutorRunner(spec, layout, run.job_dir, binds, fs)
    run_executors(spec, run, run.runner)
    reason = cancel_reason(run.job_dir)
    if reason is not None:
        CANCEL.request(reason)  # nothing is uploaded for a cancelled task
    run.progress("UPLOADING", executor_logs=run.finished_logs())
    report = stage_outputs(spec, layout, strict=run.state == "COMPLETE")
    run.outputs.extend(report.outputs)
    for message in report.errors:
        run.fail("SYSTEM_ERROR", message)


def _cancel(run: TaskRun) -> None:
    """Kill whatever executor is running and mark the task CANCELED."""
    if run.runner is not None:
        run.runner.kill_running()
        if run.runner.interrupted is not None:
            run.executor_logs.append(run.runner.interrupted.to_json())
    run.state = "CANCELED"
    run.system_logs.append(f"canceled: {CANCEL.reason}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns 0 when ``result.json`` was written, 1 when not, 2 on usage."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2:
        print(USAGE, file=sys.stderr)
        return 2
    # Log lines go to stderr as "%(asctime)s %(levelname)s %(message)s" (logshim.FORMAT).
    # Absolute: the worker changes directory while it starts an executor (executors.py).
    spec_path, job_dir = (os.path.abspath(arg) for arg in args)
    if not os.path.isdir(os.path.dirname(job_dir)):
        # A job's working directory is made by Pulsar with the job; its parent gone means
        # the job was cleaned away (cancelled) before this worker started: do nothing.
        print(f"tesp-worker: {os.path.dirname(job_dir)} does not exist", file=sys.stderr)
        return 1
    run = TaskRun(job_dir=job_dir)
    _signal.signal(_signal.SIGTERM, CANCEL.handler)
    beating = _thread.allocate_lock()
    beating.acquire()
    _thread.start_new_thread(run.heartbeat, (beating,))
    try:
        os.makedirs(job_dir, exist_ok=True)
        run_task(spec_path, run)
    except Canceled:
        _cancel(run)
    except Exception as exc:  # the last line of defence: a bug must still give a result
        log.exception("worker failed")
        run.fail("SYSTEM_ERROR", f"worker error: {redact_text(f'{type(exc).__name__}: {exc}')}")
    _signal.signal(_signal.SIGTERM, _signal.SIG_IGN)
    beating.release()
    try:
        result = run.result()
        write_json_atomic(os.path.join(job_dir, "result.json"), result)
        # DONE tells the service that result.json is final even if the Pulsar that launched
        # this worker is gone and its successor still reports the job as running. It carries
        # the result too: a service that polls progress.json over HTTP needs no second call.
        run.progress("DONE", result=result)
    except OSError as exc:
        print(f"tesp-worker: cannot write result.json: {exc.strerror}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
