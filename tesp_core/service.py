"""The task lifecycle: validate, persist, dispatch, track, cancel, recover.

This is the only module that changes a task's state, and it only moves states forward:
QUEUED -> INITIALIZING -> RUNNING -> a terminal state, with CANCELING possible from any
non-terminal state. A terminal state never changes. The HTTP server, the CLI and the
workflow adapters all drive tasks through :class:`TaskService`.

Dispatch runs in one background thread that hands backend calls to a small thread pool:
new tasks are submitted at once (no idle wait), and each in-flight task is polled on its
own schedule that starts fast and backs off, so short tasks finish quickly and long ones
cost little. The steps that drive one task on its backend are in :mod:`tesp_core.driving`,
taking tasks over (restart, other replicas) in :mod:`tesp_core.recovery`, and reading the
worker's result in :mod:`tesp_core.results`.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from tesp_core.backends.base import Backend
from tesp_core.backends.router import BackendPool
from tesp_core.driving import TaskDriving
from tesp_core.errors import InvalidTaskError, TaskNotFoundError
from tesp_core.hidden import check_not_hidden
from tesp_core.metrics import TaskHooks
from tesp_core.models import State, Task, TaskLog
from tesp_core.policy import Policy, check_task
from tesp_core.recovery import TaskRecovery
from tesp_core.replicas import LeaseKeeper
from tesp_core.results import apply_result, now_rfc3339
from tesp_core.storage.redact import redact_text
from tesp_core.store.base import Lease, ListQuery, StoredTask, TaskStore
from tesp_core.tracking import Limits, Tracked
from tesp_core.translate import WorkerOptions

# Limits moved to tesp_core.tracking; importers keep using tesp_core.service.
__all__ = ["Limits", "TaskService", "now_rfc3339", "validation_error"]

log = logging.getLogger(__name__)

_RANK = {
    State.UNKNOWN: 0,
    State.QUEUED: 1,
    State.INITIALIZING: 2,
    State.RUNNING: 3,
    State.PAUSED: 3,
    State.CANCELING: 4,
}


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


class TaskService(TaskDriving, TaskRecovery):
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
        self._active: dict[str, Tracked] = {}
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
        check_not_hidden(task, self.worker_options.hide)
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
            if self._cancel_waiting(task_id):
                return
            if not self._transition(task_id, State.CANCELING):
                return
            tracked = self._active.get(task_id)
        log.info("task %s: cancel requested", task_id)
        if tracked is not None:
            self._pool.submit(self._ask_stop, task_id)

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
            # before they block tasks that backends which are up could run. Nor do tasks
            # that ended from their result while Pulsar finishes the job (exit, then its
            # post-processing: 100-200 ms) before it may be cleaned: their worker is done.
            unplaced = ended = 0
            for t in self._active.values():
                if t.unplaced:
                    unplaced += 1
                elif t.finished and not (t.cancel_wait or t.abandoned):
                    ended += 1
            cap = self.limits.max_in_flight
            room = cap + min(unplaced, cap) + min(ended, cap)
            while self._queue and len(self._active) < room:
                task_id = self._queue.popleft()
                self._active[task_id] = Tracked(task_id)
            due = [t for t in self._active.values() if not t.busy and t.next_poll <= now]
            for tracked in due:
                if self._unchanged(tracked, now):
                    tracked.interval = self._next_interval(tracked, now)
                    tracked.next_poll = now + tracked.interval
                    continue
                tracked.busy = True
                step = self._poll if tracked.submitted else self._submit
                self._pool.submit(self._guarded, step, tracked)
            waiting = [t.next_poll for t in self._active.values() if not t.busy]
        return max(0.0, min(waiting) - now) if waiting else self.limits.poll_max

    def _guarded(self, step: Callable[[Tracked], None], tracked: Tracked) -> None:
        """One backend step of a task, in the pool. An error no step handles (a bug, an
        answer nobody foresaw) is logged and the step retried with back-off: left in the
        pool's future, it would leave the task busy, and so stuck, without a word."""
        try:
            step(tracked)
        except Exception:
            log.exception("task %s: unexpected error while driving it, will retry", tracked.task_id)
            self._backoff(tracked)

    def _unchanged(self, tracked: Tracked, now: float) -> bool:
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

    def _next_interval(self, tracked: Tracked, now: float, *, reset: bool = False) -> float:
        """Poll at the minimum while the task is young (or after a change), then back off."""
        limits = self.limits
        if reset or now - tracked.first_seen < limits.poll_fast_seconds:
            if tracked.finished:  # only its clean-up is left
                return limits.poll_min
            if tracked.local:
                return limits.poll_min_local
            shared = len(self._active) / limits.poll_rate
            interval = min(limits.poll_min, max(limits.poll_min_local, shared))
            if tracked.launched and not tracked.progress_seen:
                waited = (now - tracked.launched_at) / limits.starting_backoff
                return max(interval, min(waited, limits.status_while_starting))
            return interval
        return min(tracked.interval * 1.5, limits.poll_max)

    def _reschedule(self, tracked: Tracked, *, reset: bool = False) -> None:
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

    def _park(self, tracked: Tracked, freed: int) -> None:
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

    def _note(self, task_id: str, line: str) -> None:
        """Add a line to a task's system logs, its state unchanged (dropped if the task
        moved on meanwhile, or ended)."""

        def add(task: Task) -> None:
            tlog = task.logs[0] if task.logs else TaskLog()
            tlog.system_logs = [*(tlog.system_logs or []), redact_text(line)]
            task.logs = [tlog]

        stored = self.store.get(task_id)
        if stored is not None and stored.task.state is not None:
            self._transition(task_id, stored.task.state, add)

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
                apply_result(tlog, result)
            # A task that never reached the backend has no start time.
            tlog.end_time = tlog.end_time or now_rfc3339()
            if system_logs:
                # What TESP says is redacted here once more: a backend's error may name a
                # URL with a password in it.
                notes = [redact_text(line) for line in system_logs]
                tlog.system_logs = [*(tlog.system_logs or []), *notes]
            task.logs = [tlog]
            self.hooks.task_finished(task, result)

        self._transition(task_id, state, apply)
