"""The task lifecycle: validate, persist, dispatch, track, cancel, recover.

This is the only module that changes a task's state, and it only moves states forward:
QUEUED -> INITIALIZING -> RUNNING -> a terminal state, with CANCELING possible from any
non-terminal state. A terminal state never changes. The HTTP server, the CLI and the
workflow adapters all drive tasks through :class:`TaskService`.

Dispatch runs in one background thread that hands backend calls to a small thread pool:
new tasks are submitted at once (no idle wait), and each in-flight task is polled on its
own schedule that starts fast and backs off, so short tasks finish quickly and long ones
cost little.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from tesp_core.backends.base import Backend
from tesp_core.backends.pulsar import JobStatus
from tesp_core.backends.router import BackendPool
from tesp_core.backends.scheduler import time_limit_note
from tesp_core.errors import (
    BackendError,
    BackendJobLostError,
    BackendUnavailableError,
    InvalidTaskError,
    TaskNotFoundError,
)
from tesp_core.metrics import TaskHooks
from tesp_core.models import ExecutorLog, OutputFileLog, State, Task, TaskLog
from tesp_core.policy import Policy, check_task
from tesp_core.replicas import LeaseKeeper
from tesp_core.routing import BackendsBusyError, BackendsDownError
from tesp_core.storage.redact import redact_text
from tesp_core.store.base import Lease, ListQuery, StoredTask, TaskStore
from tesp_core.translate import WorkerOptions, worker_spec

log = logging.getLogger(__name__)

RESULT = "result.json"

_RANK = {
    State.UNKNOWN: 0,
    State.QUEUED: 1,
    State.INITIALIZING: 2,
    State.RUNNING: 3,
    State.PAUSED: 3,
    State.CANCELING: 4,
}
_IN_FLIGHT = (State.QUEUED, State.INITIALIZING, State.RUNNING, State.CANCELING)


def now_rfc3339() -> str:
    """The current time, RFC 3339 with a timezone."""
    return datetime.now(UTC).isoformat()


def validation_error(exc: ValidationError) -> InvalidTaskError:
    """The first pydantic error as an InvalidTaskError naming the field (``a.b[0].c``)."""
    err = exc.errors()[0]
    parts: list[str] = []
    for loc in err["loc"]:
        if isinstance(loc, int):
            parts[-1:] = [f"{parts[-1] if parts else ''}[{loc}]"]
        else:
            parts.append(str(loc))
    message = str(err["msg"]).removeprefix("Value error, ")
    return InvalidTaskError(".".join(parts) or "body", message)


@dataclass(frozen=True)
class Limits:
    """How hard the service drives the backend."""

    max_in_flight: int = 8
    poll_min: float = 0.05
    # A backend whose job files are local (the embedded Pulsar) is watched with a stat of
    # result.json, not an HTTP call: that can be done this often.
    poll_min_local: float = 0.01
    poll_max: float = 2.0
    # Poll at poll_min for this long after submission: most tasks are short, and Pulsar
    # only notices a finished job when asked.
    poll_fast_seconds: float = 3.0
    # Liveness of a running worker, from the heartbeat in its progress.json.
    heartbeat_check_seconds: float = 10.0
    heartbeat_stale_seconds: float = 120.0
    # How long Pulsar may lag behind a worker that reported DONE before TESP ends the task.
    done_grace_seconds: float = 5.0
    max_task_seconds: float | None = None
    backend_retry_seconds: float = 300.0
    # Replicas sharing one store (docs/deployment-replicas.md): a replica that does not
    # renew its claims this long is presumed dead. None: this process is the only one.
    lease_seconds: float | None = None


@dataclass
class _Tracked:
    task_id: str
    next_poll: float = 0.0
    interval: float = 0.05
    busy: bool = False
    first_seen: float = field(default_factory=time.monotonic)
    unreachable_since: float | None = None
    running: bool = False
    submitted: bool = False
    # Re-attached after a restart: Pulsar may report the job running forever.
    recovered: bool = False
    progress_read: float = 0.0
    heartbeat: str | None = None
    heartbeat_seen: float = field(default_factory=time.monotonic)
    done_seen: float | None = None
    status_read: float = field(default_factory=time.monotonic)
    # Tasks with several executors show each executor's log as soon as it ended.
    multi_executor: bool = False
    executors_seen: int = 0
    # Waiting for a backend that fits to come back: holds no slot on any backend.
    unplaced: bool = False
    # The task ended from the worker's result.json; the job is polled only to clean it.
    finished: bool = False
    # Pulsar called the job complete while the worker's heartbeat still moved.
    outlived_job: bool = False
    # A cancel that could not reach the backend: sent again at every poll until it does.
    kill_pending: bool = False
    # The backend shows this job's files locally (cheap to watch).
    local: bool = False
    # The backend's fingerprint of the worker's files at the last poll (watch_hint).
    seen_hint: tuple[int, ...] | None = None
    # The backend reported a change while a poll was running: poll again at once.
    nudged: bool = False


class TaskService:
    """Create, read, list and cancel TES tasks, and run them on a backend."""

    def __init__(
        self,
        store: TaskStore,
        backend: Backend | BackendPool,
        *,
        policy: Policy,
        worker_options: WorkerOptions,
        worker_zipapp: Path,
        limits: Limits | None = None,
    ) -> None:
        self.store = store
        # Every backend call goes through the pool: it knows which backend runs which job.
        self.backend = backend if isinstance(backend, BackendPool) else BackendPool.single(backend)
        self.policy = policy
        self.worker_options = worker_options
        self.worker_zipapp = worker_zipapp
        self.limits = limits or Limits()
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._queue: deque[str] = deque()
        # Tasks whose backends are all full; back to the queue when a slot frees.
        self._parked: deque[str] = deque()
        self._slots_freed = 0
        self._active: dict[str, _Tracked] = {}
        self._pool = ThreadPoolExecutor(
            max_workers=min(32, self.limits.max_in_flight + 4), thread_name_prefix="tesp-backend"
        )
        self._thread: threading.Thread | None = None
        # This process's identity towards the store; tasks it creates or adopts are its own.
        self.lease = Lease(uuid.uuid4().hex, self.limits.lease_seconds or 30.0)
        self._keeper: LeaseKeeper | None = None
        self.hooks = TaskHooks()  # metrics (tesp_core.metrics) replace these no-ops

    # -- public API -------------------------------------------------------------------------

    def create_task(self, body: dict[str, Any] | Task, owner: str | None = None) -> str:
        """Validate and store a task, queue it, and return its id.

        The task is readable as soon as this returns.
        """
        try:
            task = Task.from_client(body if isinstance(body, dict) else body.model_dump())
        except ValidationError as exc:
            raise validation_error(exc) from exc
        check_task(task, self.policy)
        self.backend.check(task)
        task.id = str(uuid.uuid4())
        task.state = State.QUEUED
        task.creation_time = now_rfc3339()
        task.logs = None
        # Held by this replica when it dispatches; else any dispatching replica adopts it.
        self.store.insert(StoredTask(task, owner), self.lease if self._thread else None)
        log.info("task %s: created (%d executors)", task.id, len(task.executors))
        with self._lock:
            self._queue.append(task.id)
        self._wake.set()
        return task.id

    def get_task(self, task_id: str, owner: str | None = None) -> Task:
        """The task, if it exists and ``owner`` (None = any) may see it."""
        stored = self.store.get(task_id)
        if stored is None or (owner is not None and stored.owner != owner):
            raise TaskNotFoundError(task_id)
        return stored.task

    def list_tasks(self, query: ListQuery) -> tuple[list[Task], str | None]:
        """One page of tasks, newest first."""
        if not 1 <= query.page_size <= 2047:
            raise InvalidTaskError("page_size", "must be between 1 and 2047")
        return self.store.list_page(query)

    def list_documents(self, query: ListQuery) -> tuple[list[dict[str, Any]], str | None]:
        """One page of tasks as JSON documents, newest first (what the HTTP API serves)."""
        if not 1 <= query.page_size <= 2047:
            raise InvalidTaskError("page_size", "must be between 1 and 2047")
        return self.store.list_documents(query)

    def cancel_task(self, task_id: str, owner: str | None = None) -> None:
        """Cancel a task. Cancelling a task that already ended does nothing."""
        stored = self.store.get(task_id)
        if stored is None or (owner is not None and stored.owner != owner):
            raise TaskNotFoundError(task_id)
        with self._lock:
            waiting = self._queue if task_id in self._queue else self._parked
            if task_id in waiting:
                waiting.remove(task_id)
                self._finish(task_id, State.CANCELED, [])
                return
            if not self._transition(task_id, State.CANCELING):
                return
            tracked = self._active.get(task_id)
        log.info("task %s: cancel requested", task_id)
        if tracked is not None:
            self._pool.submit(self._kill, task_id)

    # -- lifecycle --------------------------------------------------------------------------

    def start(self, *, dispatch: bool = True) -> None:
        """Re-attach to in-flight tasks and start dispatching.

        With ``dispatch=False`` tasks are accepted and stored but nothing is sent to the
        backend (maintenance, or measuring the API alone); they wait QUEUED.
        """
        if not dispatch:
            log.warning("dispatch is off: tasks are stored and stay QUEUED")
            return
        self.store.renew(self.lease)
        log.info("replica %s: starting", self.lease.replica)
        self.backend.listen(self._nudge)
        self._recover()
        self._thread = threading.Thread(target=self._loop, name="tesp-dispatch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop dispatching; in-flight tasks keep running and are recovered on restart."""
        if self._keeper is not None:
            self._keeper.stop()  # adopts nothing more
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(10)
        # Pending backend calls (a cancel among them) are finished, not dropped.
        self._pool.shutdown(wait=True)
        if self._keeper is not None:
            # Other replicas adopt this one's tasks at once instead of after the lease.
            self.store.release(self.lease)

    def _recover(self) -> None:
        self._adopt(self.store.claim_orphans(self.lease))
        if self.limits.lease_seconds is not None:
            self._keeper = LeaseKeeper(
                self.store,
                self.lease,
                adopt=self._adopt,
                cancel=self._remote_cancel,
                drop=self._drop_lost,
            )
            self._keeper.start()

    def _adopt(self, tasks: list[StoredTask]) -> None:
        """Track tasks this replica just claimed: re-attach if submitted, else queue."""
        with self._lock:
            self._adopt_locked(tasks)

    def _adopt_locked(self, tasks: list[StoredTask]) -> None:
        known = {*self._queue, *self._parked, *self._active}
        for stored in tasks:
            task_id = stored.task.id
            assert task_id is not None
            if task_id in known:
                continue
            if stored.backend.get("submitted"):
                self.backend.attach(task_id, stored.backend.get("backend"))
                self._active[task_id] = _Tracked(
                    task_id,
                    recovered=True,
                    submitted=True,
                    multi_executor=len(stored.task.executors) > 1,
                )
            elif stored.task.state is State.CANCELING and not stored.backend.get("submitting"):
                self._finish(task_id, State.CANCELED, [])
            else:
                # Never reached the backend, or we died mid-submit: _submit asks Pulsar
                # first, so a job that did start is attached to, not started twice.
                self._queue.append(task_id)
        if self._active or self._queue:
            log.info(
                "recovered %d running and %d queued tasks", len(self._active), len(self._queue)
            )

    # -- the dispatch loop ------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                delay = self._tick()
            except Exception:  # the loop must survive anything one task does
                log.exception("dispatch loop error")
                delay = 1.0
            self._wake.wait(delay)
            self._wake.clear()

    def _tick(self) -> float:
        now = time.monotonic()
        with self._lock:
            # Tasks waiting for a down backend hold no slot; as many again may wait so
            # before they block tasks that backends which are up could run.
            unplaced = sum(1 for t in self._active.values() if t.unplaced)
            room = self.limits.max_in_flight + min(unplaced, self.limits.max_in_flight)
            while self._queue and len(self._active) < room:
                task_id = self._queue.popleft()
                self._active[task_id] = _Tracked(task_id)
            due = [t for t in self._active.values() if not t.busy and t.next_poll <= now]
            for tracked in due:
                if self._unchanged(tracked, now):
                    tracked.interval = self._next_interval(tracked, now)
                    tracked.next_poll = now + tracked.interval
                    continue
                tracked.busy = True
                self._pool.submit(self._poll if tracked.submitted else self._submit, tracked)
            waiting = [t.next_poll for t in self._active.values() if not t.busy]
        return max(0.0, min(waiting) - now) if waiting else self.limits.poll_max

    def _unchanged(self, tracked: _Tracked, now: float) -> bool:
        """True when a poll of this running task can be skipped: its backend shows the
        worker's files locally, they did not change since the last poll, and the status
        is not due. Checked in the dispatch thread itself (a stat or two): most polls of
        a local job find nothing new, and handing each to the pool cost more than that."""
        if not tracked.local or tracked.finished or tracked.kill_pending or not tracked.submitted:
            return False
        if now - tracked.status_read > self.limits.poll_max:
            return False
        hint = self.backend.watch_hint(tracked.task_id)
        if hint is None or hint != tracked.seen_hint:
            tracked.seen_hint = hint
            return False
        return True

    def _next_interval(self, tracked: _Tracked, now: float, *, reset: bool = False) -> float:
        """Poll at the minimum while the task is young (or after a change), then back off."""
        if reset or now - tracked.first_seen < self.limits.poll_fast_seconds:
            local = tracked.local and not tracked.finished
            return self.limits.poll_min_local if local else self.limits.poll_min
        return min(tracked.interval * 1.5, self.limits.poll_max)

    def _reschedule(self, tracked: _Tracked, *, reset: bool = False) -> None:
        with self._lock:
            now = time.monotonic()
            tracked.interval = self._next_interval(tracked, now, reset=reset)
            tracked.next_poll = now if tracked.nudged else now + tracked.interval
            tracked.busy = tracked.nudged = False
        self._wake.set()

    def _nudge(self, task_id: str) -> None:
        """The backend saw the task's worker write a file: poll the task now (or as soon
        as the poll in progress returns) instead of at its next turn."""
        with self._lock:
            tracked = self._active.get(task_id)
            if tracked is None:
                return
            if tracked.busy:
                tracked.nudged = True
            else:
                tracked.next_poll = 0.0
        self._wake.set()

    def _forget(self, task_id: str) -> None:
        self.backend.forget(task_id)
        with self._lock:
            self._active.pop(task_id, None)
            # The freed slot may fit a task that waits for room on its backends.
            self._slots_freed += 1
            self._queue.extendleft(reversed(self._parked))
            self._parked.clear()
        self._wake.set()

    def _park(self, tracked: _Tracked, freed: int) -> None:
        """Every backend the task fits is full: it waits outside the in-flight count until
        a task leaves (or at once again, if one left while it was being placed)."""
        self.backend.release(tracked.task_id)
        with self._lock:
            self._active.pop(tracked.task_id, None)
            if self._slots_freed != freed:
                self._queue.appendleft(tracked.task_id)
            else:
                self._parked.append(tracked.task_id)
        self._wake.set()

    # -- backend calls (run in the pool) ----------------------------------------------------

    def _submit(self, tracked: _Tracked) -> None:
        task_id = tracked.task_id
        if self._keeper is not None and not self.store.hold(task_id, self.lease):
            log.warning("task %s: now held by another replica, leaving it", task_id)
            self._forget(task_id)
            return
        stored = self.store.get(task_id)
        if stored is None or stored.task.state not in (State.QUEUED, State.CANCELING):
            self._forget(task_id)
            return
        if stored.task.state is State.CANCELING and not stored.backend.get("submitting"):
            self._finish(task_id, State.CANCELED, [])
            self._forget(task_id)
            return
        freed = self._slots_freed
        try:
            name = self._send(task_id, stored)
        except BackendsBusyError:
            self._park(tracked, freed)
            return
        except BackendUnavailableError as exc:
            self.hooks.backend_error("submit", exc)
            tracked.unplaced = isinstance(exc, BackendsDownError)
            if not self._backend_down_too_long(tracked, str(exc)):
                log.warning("task %s: backend unavailable, will retry: %s", task_id, exc)
                self._backoff(tracked)
            return
        except BackendError as exc:
            self.hooks.backend_error("submit", exc)
            self._finish(task_id, State.SYSTEM_ERROR, [f"submitting to the backend failed: {exc}"])
            self._forget(task_id)
            return
        self.store.update_backend(task_id, {"submitted": True, "backend": name})
        tracked.submitted, tracked.unreachable_since, tracked.unplaced = True, None, False
        tracked.local = self.backend.finished_hint(task_id) is not None
        tracked.multi_executor = len(stored.task.executors) > 1
        meta = self.backend.metadata(name, task_id)
        self._transition(task_id, State.QUEUED, lambda t: _start_log(t, meta))
        log.info("task %s: submitted to backend %s", task_id, name)
        current = self.store.get(task_id)
        if current is not None and current.task.state is State.CANCELING:
            self._kill(task_id)
        self._reschedule(tracked, reset=True)

    def _send(self, task_id: str, stored: StoredTask) -> str:
        """Place the task on a backend and submit it there; the backend's name.

        An earlier submission that may have reached its backend (a crash, or an error
        after the connection was made) pins the task there: attach if the job started.
        """
        pinned = stored.backend.get("backend", "") if stored.backend.get("submitting") else None
        where = self.backend.place(task_id, stored.task, pinned)
        if not (where.resumed and self._already_started(task_id)):
            self.store.update_backend(task_id, {"submitting": True, "backend": where.name})
            self.backend.submit(
                task_id,
                worker_spec(stored.task, self.worker_options),
                self.worker_zipapp,
                stored.task,
            )
        return where.name

    def _already_started(self, task_id: str) -> bool:
        """After a crash mid-submit: did the Pulsar job start? (Then attach, never rerun.)"""
        try:
            status = self.backend.status(task_id)
        except BackendJobLostError:
            return False
        if status.phase in ("queued", "running"):
            return True
        # "initializing" is Pulsar's preprocessing: TESP stages nothing through Pulsar, so a
        # job in it was set up and never launched (a replica killed mid-submit). Such a job
        # can also read as "complete". The worker writes progress.json first thing, so its
        # absence means the task never ran: submit it (setting a job up again is harmless).
        return self.backend.read_json(task_id, "progress.json") is not None

    def _backoff(self, tracked: _Tracked) -> None:
        """Retry a backend call later, backing off exponentially up to 30 s."""
        with self._lock:
            tracked.interval = min(max(tracked.interval * 2, 0.5), 30.0)
            tracked.next_poll = time.monotonic() + tracked.interval
            tracked.busy = False
        self._wake.set()

    def _poll(self, tracked: _Tracked) -> None:
        task_id = tracked.task_id
        self._attach(task_id)
        try:
            if tracked.finished:
                self._drain(tracked)
                return
            if tracked.kill_pending:
                self._kill(task_id)
            if self._finished_early(tracked):
                return
            if self._quiet(tracked):
                self._reschedule(tracked)
                return
            tracked.status_read = time.monotonic()
            status = self.backend.status(task_id)
            tracked.unreachable_since = None
            if status.phase in ("queued", "initializing", "running"):
                self._on_running(tracked, status.phase)
                return
            self._on_done(tracked, status)
        except BackendJobLostError as exc:
            self.hooks.backend_error("poll", exc)
            self._finish(task_id, State.SYSTEM_ERROR, [f"the Pulsar job vanished: {exc}"])
            self._forget(task_id)
        except BackendUnavailableError as exc:
            self.hooks.backend_error("poll", exc)
            if not self._backend_down_too_long(tracked, str(exc)):
                self._backoff(tracked)
        except BackendError as exc:
            self.hooks.backend_error("poll", exc)
            self._finish(task_id, State.SYSTEM_ERROR, [f"backend error: {exc}"])
            self._forget(task_id)

    def _finished_early(self, tracked: _Tracked) -> bool:
        """End the task as soon as a backend that sees the job's files shows result.json.

        The worker writes result.json (atomically) after the last upload; the Pulsar job
        then still has to exit and be post-processed, which took 100-150 ms here. The
        task's outcome does not depend on that, so it ends now and the job is drained.
        """
        if not self.backend.finished_hint(tracked.task_id):
            return False
        result = self.backend.read_json(tracked.task_id, RESULT)
        if result is None:
            return False
        self._end_from_result(tracked, result)
        return True

    def _end_from_result(self, tracked: _Tracked, result: dict[str, Any]) -> None:
        """Finish the task from the worker's result; keep the job tracked until it ends."""
        task_id = tracked.task_id
        stored = self.store.get(task_id)
        if stored is not None and stored.task.state is State.CANCELING:
            self._finish(task_id, State.CANCELED, _ran_to_its_end(result), result)
        else:
            result = _explain_result(stored.task if stored else None, result)
            self._finish(task_id, _result_state(result.get("state")), [], result)
        tracked.finished, tracked.done_seen = True, time.monotonic()
        self._reschedule(tracked, reset=True)

    def _drain(self, tracked: _Tracked) -> None:
        """A finished task's job: clean it once Pulsar lets it go (kill it after the grace)."""
        status = self.backend.status(tracked.task_id)
        if status.phase in ("queued", "initializing", "running"):
            waited = time.monotonic() - (tracked.done_seen or 0.0)
            if waited < self.limits.done_grace_seconds:
                self._reschedule(tracked)
                return
            # A restarted Pulsar can report a finished job running forever.
            self._kill(tracked.task_id)
        self._clean(tracked.task_id)

    def _attach(self, task_id: str) -> None:
        """Tell the pool which backend runs a task it has not placed (one adopted later)."""
        if not self.backend.placed(task_id):
            stored = self.store.get(task_id)
            self.backend.attach(task_id, stored.backend.get("backend") if stored else None)

    def _quiet(self, tracked: _Tracked) -> bool:
        """True when a backend that sees the job's files says nothing changed.

        The embedded Pulsar's job directories are local: the worker's progress and result
        files can be watched without asking Pulsar, which is then asked only when the
        worker has finished, or every ``poll_max`` seconds to notice a job that died.
        """
        finished = self.backend.finished_hint(tracked.task_id)
        if finished is None or finished:
            return False
        if time.monotonic() - tracked.status_read > self.limits.poll_max:
            return False
        # Until the executors start, the progress file tells INITIALIZING from RUNNING.
        if not tracked.running and self.backend.read_json(tracked.task_id, "progress.json"):
            self._check_progress(tracked, time.monotonic())
        return True

    def _on_running(self, tracked: _Tracked, phase: str) -> None:
        task_id = tracked.task_id
        now = time.monotonic()
        if phase != "queued" and (
            not tracked.running
            or tracked.recovered
            or tracked.multi_executor
            or now - tracked.progress_read > self.limits.heartbeat_check_seconds
        ):
            tracked.progress_read = now
            if self._check_progress(tracked, now):
                return
        limit = self.limits.max_task_seconds
        if limit is not None and time.monotonic() - tracked.first_seen > limit:
            self.backend.cancel(task_id)
            self._finish(
                task_id,
                State.SYSTEM_ERROR,
                [f"the task ran longer than this server's limit of {limit:g} s"],
            )
            self._clean(task_id)
            return
        self._reschedule(tracked)

    def _check_progress(self, tracked: _Tracked, now: float) -> bool:
        """Read the worker's progress file; True when the task was finished from it.

        Until the executors start it tells INITIALIZING from RUNNING. Later, its heartbeat
        tells a live worker from a dead one, and DONE (result.json written) ends a task
        whose Pulsar was restarted and now reports the job running forever.
        """
        task_id = tracked.task_id
        progress = self.backend.read_json(task_id, "progress.json") or {}
        phase = progress.get("state")
        if phase == "DONE":
            result = self.backend.read_json(task_id, RESULT)
            if result is not None:
                self._end_from_result(tracked, result)
                return True
        if not tracked.running:
            tracked.running = phase in ("RUNNING", "UPLOADING", "DONE")
            self._transition(task_id, State.RUNNING if tracked.running else State.INITIALIZING)
        finished = progress.get("executor_logs")
        if isinstance(finished, list) and len(finished) > tracked.executors_seen:
            tracked.executors_seen = len(finished)
            self._transition(task_id, State.RUNNING, lambda t: _live_logs(t, finished))
        beat = progress.get("heartbeat")
        if beat is not None and beat != tracked.heartbeat:
            tracked.heartbeat, tracked.heartbeat_seen = beat, now
        elif now - tracked.heartbeat_seen > self.limits.heartbeat_stale_seconds:
            self._kill(task_id)
            self._finish(
                task_id,
                State.SYSTEM_ERROR,
                [
                    "the worker stopped reporting (no heartbeat for "
                    f"{self.limits.heartbeat_stale_seconds:g} s) while Pulsar still lists the job "
                    "as running; the compute node or Pulsar was probably restarted"
                ],
            )
            self._clean(task_id)
            return True
        return False

    def _on_done(self, tracked: _Tracked, status: JobStatus) -> None:
        task_id, phase = tracked.task_id, status.phase
        stored = self.store.get(task_id)
        if stored is not None and stored.task.state is State.CANCELING:
            result = self.backend.read_json(task_id, RESULT)
            self._finish(task_id, State.CANCELED, _ran_to_its_end(result), result)
        elif phase == "lost":
            self._finish(
                task_id,
                State.SYSTEM_ERROR,
                [
                    "the Pulsar job vanished: Pulsar lost track of the job (after a Pulsar "
                    "restart, or its job directory is gone)"
                ],
            )
        elif phase == "cancelled":
            self._finish(
                task_id,
                State.SYSTEM_ERROR,
                ["the Pulsar job was cancelled on the Pulsar side, not through TES"],
                self.backend.read_json(task_id, RESULT),
            )
        else:
            result = self.backend.read_json(task_id, RESULT)
            if result is None:
                progress = self.backend.read_json(task_id, "progress.json")
                if self._worker_alive(tracked, status, progress):
                    self._reschedule(tracked)
                    return
                note = ""
                if tracked.outlived_job:
                    stale = self.limits.heartbeat_stale_seconds
                    ended = (
                        f"its heartbeat then stopped for {stale:g} s"
                        if status.returncode is None
                        else f"the job then ended with code {status.returncode}"
                    )
                    note = f" (Pulsar had called the job complete while the worker ran on; {ended})"
                message = _no_result(status, started=progress is not None, note=note)
                self._finish(task_id, State.SYSTEM_ERROR, [message])
            else:
                result = _explain_result(stored.task if stored else None, result)
                self._finish(task_id, _result_state(result.get("state")), [], result)
        self._clean(task_id)

    def _worker_alive(
        self, tracked: _Tracked, status: JobStatus, progress: dict[str, Any] | None
    ) -> bool:
        """Pulsar calls the job complete, but the worker's heartbeat still moves: wait for it.

        Pulsar's Slurm plugin reads a failing ``squeue`` (controller down) as "complete",
        with no return code, while the job runs on under slurmd. The heartbeat's own
        timestamp is on the compute node's clock, so it is not compared with this host's:
        the worker is alive while its heartbeat changed within ``heartbeat_stale_seconds``
        of this host's monotonic clock. A job with a return code really ended.
        """
        beat = progress.get("heartbeat") if progress else None
        if status.phase != "complete" or status.returncode is not None or beat is None:
            return False
        now = time.monotonic()
        if beat != tracked.heartbeat:
            tracked.heartbeat, tracked.heartbeat_seen = beat, now
        if now - tracked.heartbeat_seen >= self.limits.heartbeat_stale_seconds:
            return False
        if not tracked.outlived_job:
            tracked.outlived_job = True
            log.warning(
                "task %s: Pulsar reports the job complete, but its worker still reports a "
                "heartbeat and no result yet: waiting for the worker",
                tracked.task_id,
            )
        return True

    def _kill(self, task_id: str) -> None:
        delivered = True
        try:
            self.backend.cancel(task_id)
        except BackendError as exc:
            delivered = False
            self.hooks.backend_error("cancel", exc)
            log.warning("task %s: cancel on the backend failed, will retry: %s", task_id, exc)
        with self._lock:
            tracked = self._active.get(task_id)
            if tracked is not None:
                tracked.kill_pending = not delivered
                tracked.next_poll = 0.0
        self._wake.set()

    def _clean(self, task_id: str) -> None:
        try:
            self.backend.clean(task_id)
        except BackendError as exc:
            self.hooks.backend_error("clean", exc)
            log.warning("task %s: cleaning the Pulsar job failed: %s", task_id, exc)
        self._forget(task_id)

    def _backend_down_too_long(self, tracked: _Tracked, reason: str) -> bool:
        since = tracked.unreachable_since = tracked.unreachable_since or time.monotonic()
        if time.monotonic() - since < self.limits.backend_retry_seconds:
            return False
        self._finish(
            tracked.task_id,
            State.SYSTEM_ERROR,
            [
                f"the backend was unreachable for over {self.limits.backend_retry_seconds:g} s: "
                f"{reason}"
            ],
        )
        self._forget(tracked.task_id)
        return True

    # -- replicas: tasks held elsewhere changed (tesp_core.replicas runs these) -------------

    def _remote_cancel(self, task_ids: list[str]) -> None:
        """Another replica's API set CANCELING on tasks this one holds: cancel them here."""
        for task_id in task_ids:
            with self._lock:
                waiting = self._queue if task_id in self._queue else self._parked
                if task_id in waiting:
                    waiting.remove(task_id)
                    self._finish(task_id, State.CANCELED, [])
                    continue
                tracked = self._active.get(task_id)
            # Not yet submitted: _submit sees CANCELING and does not start it.
            if tracked is not None and tracked.submitted:
                log.info("task %s: cancel requested through another replica", task_id)
                self._pool.submit(self._kill, task_id)

    def _drop_lost(self, held: set[str]) -> None:
        """Stop driving every tracked task that another replica took over."""
        with self._lock:
            for waiting in (self._queue, self._parked):
                for task_id in [t for t in waiting if t not in held]:
                    log.warning("task %s: adopted by another replica meanwhile", task_id)
                    waiting.remove(task_id)
            for task_id in [t for t in self._active if t not in held]:
                log.warning("task %s: adopted by another replica meanwhile", task_id)
                self._active.pop(task_id)

    # -- state changes (the only place they happen) -----------------------------------------

    def _transition(
        self, task_id: str, state: State, mutate: Callable[[Task], None] | None = None
    ) -> bool:
        """Move a task forward to ``state``; False (and no change) if that is not forward."""
        with self._lock:
            stored = self.store.get(task_id)
            if stored is None:
                return False
            task = stored.task
            current = task.state or State.UNKNOWN
            if current.is_terminal:
                return False
            if not state.is_terminal:
                if current is State.CANCELING and state is not State.CANCELING:
                    return False
                if _RANK[state] < _RANK[current]:
                    return False
            if state is current and mutate is None:
                return False
            task.state = state
            if mutate is not None:
                mutate(task)
            if not self.store.update_task(task, expected=current):
                # Another replica moved the task on meanwhile (a cancel): decide again.
                return self._transition(task_id, state, mutate)
        if state is not current:
            log.info("task %s: %s -> %s", task_id, current.value, state.value)
        return True

    def _finish(
        self,
        task_id: str,
        state: State,
        system_logs: list[str],
        result: dict[str, Any] | None = None,
    ) -> None:
        def apply(task: Task) -> None:
            tlog = task.logs[0] if task.logs else TaskLog()
            if result is not None:
                _apply_result(tlog, result)
            # A task that never reached the backend has no start time.
            tlog.end_time = tlog.end_time or now_rfc3339()
            if system_logs:
                tlog.system_logs = [*(tlog.system_logs or []), *system_logs]
            task.logs = [tlog]
            self.hooks.task_finished(task, result)

        self._transition(task_id, state, apply)


def _ran_to_its_end(result: dict[str, Any] | None) -> list[str]:
    """The system log of a cancelled task whose job finished before the kill reached it
    (the backend was unreachable, or the job was about to end anyway)."""
    if result is None or result.get("state") == "CANCELED":
        return []
    return [
        "the job ended before the cancel reached it: the task ran to its end "
        f"({result.get('state')}; its outputs may have been uploaded)"
    ]


def _result_state(value: object) -> State:
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


def _explain_result(task: Task | None, result: dict[str, Any]) -> dict[str, Any]:
    """The result, with a first system log line that says why a worker-side cancel came.

    A task TESP cancels is CANCELING before its worker is signalled; a worker that reports
    CANCELED otherwise was stopped by someone else, usually the scheduler.
    """
    if result.get("state") != "CANCELED":
        return result
    note = time_limit_note(task) if task is not None else ""
    line = UNREQUESTED_STOP + (f"; {note}" if note else "")
    return {**result, "system_logs": [line, *(result.get("system_logs") or [])]}


def _no_result(status: JobStatus, *, started: bool, note: str = "") -> str:
    """Why a job that ended left no result.json, with what Pulsar kept of its output."""
    if started:
        message = (
            f"the worker ended (Pulsar status {status.phase!r}) without writing {RESULT}{note}"
        )
    else:
        # The worker writes progress.json first thing: it never ran.
        message = (
            "Pulsar could not start the job (its scheduler refused it, or the job script "
            "failed before the worker started); see the Pulsar log"
        )
        if status.launch_failed:
            message += (
                "; Pulsar's submission to the scheduler failed (Pulsar keeps the scheduler's "
                "reason nowhere it reports: its log names the submit command, the scheduler's "
                "log the reason)"
            )
    for what, text in (("its stderr", status.stderr), ("the job's stderr", status.job_stderr)):
        tail = redact_text(text).strip()[-1000:]
        if tail:
            message += f"; {what} ends with: {tail}"
    return message


def _live_logs(task: Task, finished: list[Any]) -> None:
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


def _start_log(task: Task, metadata: dict[str, str]) -> None:
    task.logs = [TaskLog(start_time=now_rfc3339(), metadata=metadata)]


def _apply_result(tlog: TaskLog, result: dict[str, Any]) -> None:
    """Copy the worker's result.json into the task log."""
    tlog.start_time = result.get("start_time") or tlog.start_time
    tlog.end_time = result.get("end_time") or tlog.end_time
    tlog.logs = [ExecutorLog.model_validate(e) for e in result.get("executor_logs", [])]
    tlog.outputs = [OutputFileLog.model_validate(o) for o in result.get("outputs", [])]
    if result.get("system_logs"):
        tlog.system_logs = [str(s) for s in result["system_logs"]]
