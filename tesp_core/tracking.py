"""What the dispatcher keeps about tasks in flight, and the limits it drives them by.

:class:`TaskService` (:mod:`tesp_core.service`) is assembled from parts by concept: the
public API, the state-transition core and the dispatch loop (``service``), the backend
calls that drive one task (:mod:`tesp_core.driving`), and taking tasks over after a restart
or from another replica (:mod:`tesp_core.recovery`). :class:`ServiceState` declares what
those parts share, so each part type-checks on its own.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tesp_core.backends.router import BackendPool
from tesp_core.metrics import TaskHooks
from tesp_core.models import State, Task
from tesp_core.replicas import LeaseKeeper
from tesp_core.store.base import Lease, TaskStore
from tesp_core.translate import WorkerOptions


@dataclass(frozen=True)
class Limits:
    """How hard the service drives the backend."""

    max_in_flight: int = 8
    poll_min: float = 0.05
    # Young tasks on a remote backend share this many polls a second (one HTTP call each),
    # no closer than poll_min_local and no further apart than poll_min: a lone task is
    # watched every 10 ms, eight or more every 50 ms, so a busy Pulsar is asked no more
    # often than before and an idle one answers a short task sooner.
    poll_rate: float = 160.0
    # A backend whose job files are local (the embedded Pulsar) is watched with a stat of
    # result.json, not an HTTP call: that can be done this often.
    poll_min_local: float = 0.01
    poll_max: float = 2.0
    # Poll at poll_min for this long after submission: most tasks are short, and Pulsar
    # only notices a finished job when asked.
    poll_fast_seconds: float = 3.0
    # A launched job whose worker has not written progress.json yet: its status is read
    # this often. Its progress file is asked for at the poll interval, but no more often
    # than every 1/starting_backoff of the time since launch (up to the status's period):
    # a worker starts in 50-100 ms, and one that starts slowly, or never, is not asked for
    # a missing file (an error on Pulsar's side) hundreds of times.
    status_while_starting: float = 0.25
    starting_backoff: float = 8.0
    # Liveness of a running worker, from the heartbeat in its progress.json.
    heartbeat_check_seconds: float = 10.0
    heartbeat_stale_seconds: float = 120.0
    # A cancel through TES asks a running worker to stop its executor (TERM, then KILL after
    # 5 s) and report, with the executor's log; Pulsar kills the job if it has not within
    # this long (a worker that cannot see the request, on a lagging shared file system).
    stop_grace_seconds: float = 10.0
    # How long Pulsar may lag behind a worker that reported DONE before TESP ends the task.
    done_grace_seconds: float = 5.0
    max_task_seconds: float | None = None
    backend_retry_seconds: float = 300.0
    # Replicas sharing one store (docs/deployment-replicas.md): a replica that does not
    # renew its claims this long is presumed dead. None: this process is the only one.
    lease_seconds: float | None = None


@dataclass
class Tracked:
    """What the dispatcher knows of one task in flight (in memory only; rebuilt on restart)."""

    task_id: str
    next_poll: float = 0.0
    interval: float = 0.05
    busy: bool = False
    first_seen: float = field(default_factory=time.monotonic)
    unreachable_since: float | None = None
    # The last try that found it unreachable (tries back off up to 30 s apart).
    unreachable_last: float = 0.0
    running: bool = False
    # Pulsar took the job out of its queue (its status moved past "queued"), and when.
    launched: bool = False
    launched_at: float = 0.0
    # The worker's progress.json was read once: from then on it is polled instead of the
    # job's status (which is still read every poll_max seconds).
    progress_seen: bool = False
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
    # The task ended because its backend stayed unreachable, while its job may still run
    # there: the job is killed and cleaned once the backend answers (it keeps its slot).
    abandoned: bool = False
    # Cancelled, and Pulsar calls the job so, but a worker it started anyway may still be
    # stopping: the job directory is kept until its result or the grace (driving._drain).
    cancel_wait: bool = False
    # A cancelled job's directory was deleted this many times: it is looked at again
    # later, as Pulsar may make it again (driving._clean_cancelled).
    cleanings: int = 0
    # Pulsar called the job complete while the worker's heartbeat still moved.
    outlived_job: bool = False
    # A cancel through TES asked the worker to stop, at this time: the job is killed if
    # no result came within stop_grace_seconds.
    stop_asked: float | None = None
    # A stop request that could not reach the backend: sent again at every poll until it does.
    stop_pending: bool = False
    # Why a cancelled task's job was killed instead (shown in its system logs).
    kill_note: str = ""
    # A cancel that could not reach the backend: sent again at every poll until it does.
    kill_pending: bool = False
    # The backend shows this job's files locally (cheap to watch).
    local: bool = False
    # The backend's fingerprint of the worker's files at the last poll (watch_hint).
    seen_hint: tuple[int, ...] | None = None
    # The backend reported a change while a poll was running: poll again at once.
    nudged: bool = False


class ServiceState:
    """The state and the core steps the parts of :class:`~tesp_core.service.TaskService`
    share; ``TaskService.__init__`` sets the attributes up and defines the steps."""

    store: TaskStore
    backend: BackendPool
    worker_options: WorkerOptions
    worker_zipapp: Path
    limits: Limits
    hooks: TaskHooks
    lease: Lease
    _keeper: LeaseKeeper | None
    _lock: threading.RLock
    _wake: threading.Event
    _queue: deque[str]
    _parked: deque[str]
    _slots_freed: int
    _active: dict[str, Tracked]
    _pool: ThreadPoolExecutor

    def _cancel_waiting(self, task_id: str) -> bool:
        """End a task that waits to be dispatched CANCELED; False if it does not wait.
        The caller holds ``_lock``."""
        waiting = self._queue if task_id in self._queue else self._parked
        if task_id not in waiting:
            return False
        waiting.remove(task_id)
        self._finish(task_id, State.CANCELED, [])
        return True

    if TYPE_CHECKING:
        # Defined in tesp_core.service (the state-transition core and the scheduling) and
        # tesp_core.driving (the kill); declared here only for the type checker.

        def _transition(
            self, task_id: str, state: State, mutate: Callable[[Task], None] | None = None
        ) -> bool: ...

        def _finish(
            self,
            task_id: str,
            state: State,
            system_logs: list[str],
            result: dict[str, Any] | None = None,
        ) -> None: ...

        def _note(self, task_id: str, line: str) -> None: ...

        def _reschedule(self, tracked: Tracked, *, reset: bool = False) -> None: ...

        def _forget(self, task_id: str) -> None: ...

        def _park(self, tracked: Tracked, freed: int) -> None: ...

        def _kill(self, task_id: str) -> None: ...

        def _ask_stop(self, task_id: str) -> None: ...
