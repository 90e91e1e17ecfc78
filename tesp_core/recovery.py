"""Taking tasks over: re-attach after a restart, adopt a dead replica's tasks, and follow
what other replicas sharing the store did to the tasks this one holds.

:class:`~tesp_core.replicas.LeaseKeeper` calls these while the service holds a lease; a
single process without a lease only re-attaches to its own tasks, once at start.
"""

from __future__ import annotations

import logging

from tesp_core.models import State
from tesp_core.replicas import LeaseKeeper
from tesp_core.store.base import StoredTask
from tesp_core.tracking import ServiceState, Tracked

log = logging.getLogger(__name__)


class TaskRecovery(ServiceState):
    """The restart and replica callbacks of :class:`~tesp_core.service.TaskService`."""

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
                self._active[task_id] = Tracked(
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

    # -- replicas: tasks held elsewhere changed (tesp_core.replicas runs these) -------------

    def _remote_cancel(self, task_ids: list[str]) -> None:
        """Another replica's API set CANCELING on tasks this one holds: cancel them here."""
        for task_id in task_ids:
            with self._lock:
                if self._cancel_waiting(task_id):
                    continue
                tracked = self._active.get(task_id)
            # Not yet submitted: _submit sees CANCELING and does not start it.
            if tracked is not None and tracked.submitted:
                log.info("task %s: cancel requested through another replica", task_id)
                self._pool.submit(self._ask_stop, task_id)

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
