"""Driving one task on its backend: submit, poll, end, kill and clean its job.

These steps run in the service's thread pool, one task at a time each; the dispatch loop
(:mod:`tesp_core.service`) decides when. A step reads what the backend and the worker's
files say and moves the task on through the service's state-transition core
(``_transition``/``_finish``), the only place a task's state changes.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from tesp_core.backends.pulsar import JobStatus
from tesp_core.errors import BackendError, BackendJobLostError, BackendUnavailableError
from tesp_core.models import State
from tesp_core.results import (
    RESULT,
    explain_result,
    live_logs,
    no_result,
    now_rfc3339,
    ran_to_its_end,
    result_state,
    start_log,
)
from tesp_core.routing import BackendsBusyError, BackendsDownError
from tesp_core.store.base import StoredTask
from tesp_core.tracking import ServiceState, Tracked
from tesp_core.translate import worker_spec

log = logging.getLogger(__name__)


class TaskDriving(ServiceState):
    """The backend calls of :class:`~tesp_core.service.TaskService` (run in its pool)."""

    # -- backend calls (run in the pool) ----------------------------------------------------

    def _submit(self, tracked: Tracked) -> None:
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
        waited = self._reached(tracked)
        tracked.submitted, tracked.unplaced = True, False
        note = (
            None
            if waited is None
            else f"{now_rfc3339()} submitted to backend {name} after waiting {waited:.0f} s"
        )
        tracked.local = self.backend.finished_hint(task_id) is not None
        tracked.multi_executor = len(stored.task.executors) > 1
        meta = self.backend.metadata(name, task_id)
        self._transition(task_id, State.QUEUED, lambda t: start_log(t, meta, note))
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

    def _backoff(self, tracked: Tracked) -> None:
        """Retry a backend call later, backing off exponentially up to 30 s."""
        with self._lock:
            tracked.interval = min(max(tracked.interval * 2, 0.5), 30.0)
            tracked.next_poll = time.monotonic() + tracked.interval
            tracked.busy = False
        self._wake.set()

    def _poll(self, tracked: Tracked) -> None:
        task_id = tracked.task_id
        self._attach(task_id)
        try:
            if tracked.finished:
                self._drain(tracked)
                return
            if tracked.kill_pending:
                self._kill(task_id)
            if tracked.stop_pending:
                self._ask_stop(task_id)
            asked = tracked.stop_asked
            grace = self.limits.stop_grace_seconds
            if asked is not None and time.monotonic() - asked > grace:
                log.warning("task %s: the worker did not stop when asked: killing it", task_id)
                tracked.stop_asked = None
                tracked.kill_note = f"its worker did not answer TESP's stop request in {grace:g} s"
                self._kill(task_id)
            if self._finished_early(tracked):
                return
            if self._quiet(tracked):
                self._reschedule(tracked)
                return
            if self._progress_instead_of_status(tracked):
                return
            tracked.status_read = time.monotonic()
            status = self.backend.status(task_id)
            self._reached(tracked)
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

    def _finished_early(self, tracked: Tracked) -> bool:
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

    def _end_from_result(self, tracked: Tracked, result: dict[str, Any]) -> None:
        """Finish the task from the worker's result; keep the job tracked until it ends."""
        task_id = tracked.task_id
        stored = self.store.get(task_id)
        if stored is not None and stored.task.state is State.CANCELING:
            self._finish(task_id, State.CANCELED, ran_to_its_end(result), result)
        else:
            result = explain_result(stored.task if stored else None, result)
            self._finish(task_id, result_state(result.get("state")), [], result)
        tracked.finished, tracked.done_seen = True, time.monotonic()
        self.backend.ended(task_id)
        self._reschedule(tracked, reset=True)

    def _drain(self, tracked: Tracked) -> None:
        """A finished task's job: clean it once Pulsar lets it go (kill it after the grace).

        Pulsar calls a job ``cancelled`` the moment it is told to, while its process may
        run on (or start: its queue thread can be past its cancel check) and write into the
        job directory. A clean then was undone: Pulsar swallows the error of a delete that
        finds new files, and writes the return code after. So a cancelled job is cleaned
        once its launcher is done with it (its return code known), or after the grace.
        """
        task_id = tracked.task_id
        if tracked.cleanings:
            self._recheck_cleaned(tracked)
            return
        waited = time.monotonic() - (tracked.done_seen or 0.0)
        within = waited < self.limits.done_grace_seconds
        if tracked.cancel_wait and within and self.backend.read_json(task_id, RESULT) is None:
            self._reschedule(tracked)
            return
        status = self.backend.status(task_id)
        if status.phase in ("queued", "initializing", "running"):
            if within:
                self._reschedule(tracked)
                return
            # A restarted Pulsar can report a finished job running forever.
            self._kill(task_id)
        elif status.phase == "cancelled" and within and not status.launcher_done:
            self._reschedule(tracked)
            return
        if status.phase == "cancelled" or tracked.cancel_wait:
            self._clean_cancelled(tracked)
        else:
            self._clean(task_id)

    def _clean_cancelled(self, tracked: Tracked) -> None:
        """Delete a cancelled job's directory, and look again 1, 2, 4 and 8 s later: a
        launch Pulsar's queue thread had under way when the cancel came (seen under load,
        80 cancels at once) writes into it after the grace, and makes it again."""
        try:
            self.backend.clean(tracked.task_id)
        except BackendError as exc:
            self.hooks.backend_error("clean", exc)
            log.warning("task %s: cleaning the Pulsar job failed: %s", tracked.task_id, exc)
        tracked.cleanings += 1
        tracked.cancel_wait = False  # what is left holds no slot
        with self._lock:
            tracked.interval = float(2 ** (tracked.cleanings - 1))
            tracked.next_poll = time.monotonic() + tracked.interval
            tracked.busy = False
        self._wake.set()

    def _recheck_cleaned(self, tracked: Tracked) -> None:
        """A cancelled job's directory was deleted: forget the job once it stays gone."""
        task_id = tracked.task_id
        try:
            gone = self.backend.status(task_id).phase == "lost"
        except BackendJobLostError:
            gone = True
        if gone or tracked.cleanings >= 5:
            if not gone:
                log.warning(
                    "task %s: Pulsar keeps making the cancelled job's directory again", task_id
                )
            self._forget(task_id)
            return
        log.info("task %s: the cancelled job's directory came back: deleting it again", task_id)
        self._clean_cancelled(tracked)

    def _attach(self, task_id: str) -> None:
        """Tell the pool which backend runs a task it has not placed (one adopted later)."""
        if not self.backend.placed(task_id):
            stored = self.store.get(task_id)
            self.backend.attach(task_id, stored.backend.get("backend") if stored else None)

    def _quiet(self, tracked: Tracked) -> bool:
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

    def _progress_instead_of_status(self, tracked: Tracked) -> bool:
        """Poll a started task's progress.json rather than its job's status; True if done.

        For a backend that cannot see the job's files cheaply (a remote Pulsar): the worker
        says DONE there the moment result.json is written, while Pulsar moves the job on
        only after it exited and was post-processed (65 ms later for a `true` task here).
        It is one call instead of two (status, then progress) from the moment Pulsar
        launched the job. The status is still read to notice a worker that died without a
        word: every ``status_while_starting`` seconds until the worker's first
        progress.json (a worker that never starts, no Python on the node, is noticed as
        soon, and a Pulsar that serves a missing file as an error, 500 with a traceback in
        its log, is asked for one only for the worker's start-up), then every
        ``heartbeat_check_seconds`` or two slowest polls: a long task polled every
        ``poll_max`` still has most polls read its progress, and its DONE.
        """
        if tracked.recovered or not (tracked.progress_seen or tracked.launched):
            return False
        if tracked.outlived_job:
            # Pulsar called the job complete while the worker ran on: the status path
            # (_on_done, _worker_alive) decides from now on, with the job's own exit.
            return False
        if self.backend.finished_hint(tracked.task_id) is not None:
            return False
        now = time.monotonic()
        limits = self.limits
        due = (
            max(limits.heartbeat_check_seconds, 2 * limits.poll_max)
            if tracked.progress_seen
            else limits.status_while_starting
        )
        if now - tracked.status_read > due:
            return False
        tracked.progress_read = now
        if not self._check_progress(tracked, now):
            self._reschedule(tracked)
        return True

    def _on_running(self, tracked: Tracked, phase: str) -> None:
        task_id = tracked.task_id
        now = time.monotonic()
        if phase != "queued" and not tracked.launched:
            tracked.launched, tracked.launched_at = True, now
            # The worker's silence counts from here, not from when TESP took the task: it
            # may have waited long for its backend, or in a scheduler's queue.
            tracked.heartbeat_seen = now
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

    def _check_progress(self, tracked: Tracked, now: float) -> bool:
        """Read the worker's progress file; True when the task was finished from it.

        Until the executors start it tells INITIALIZING from RUNNING. Later, its heartbeat
        tells a live worker from a dead one, and DONE (result.json written) ends a task
        whose Pulsar was restarted and now reports the job running forever.
        """
        task_id = tracked.task_id
        progress = self.backend.read_json(task_id, "progress.json") or {}
        self._reached(tracked)
        tracked.progress_seen = tracked.progress_seen or bool(progress)
        phase = progress.get("state")
        if phase == "DONE":
            result = progress.get("result")
            if not isinstance(result, dict):  # a worker from before DONE carried it
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
            self._transition(task_id, State.RUNNING, lambda t: live_logs(t, finished))
        beat = progress.get("heartbeat")
        if beat is not None and beat != tracked.heartbeat:
            tracked.heartbeat, tracked.heartbeat_seen = beat, now
        elif now - tracked.heartbeat_seen > self.limits.heartbeat_stale_seconds:
            self._kill(task_id)
            self._finish(task_id, State.SYSTEM_ERROR, [self._silence(tracked)])
            self._clean(task_id)
            return True
        return False

    def _silence(self, tracked: Tracked) -> str:
        """Why a job Pulsar lists as running was given up: its worker went silent."""
        stale = self.limits.heartbeat_stale_seconds
        if tracked.heartbeat is None:
            return (
                f"the worker never reported: no progress.json {stale:g} s after Pulsar launched "
                "the job, which it still lists as running; the job is stuck before the worker "
                "(the job script's set-up, or the worker's Python on the compute node: "
                "worker_python)"
            )
        return (
            f"the worker stopped reporting (no heartbeat for {stale:g} s) while Pulsar still "
            "lists the job as running; the compute node or Pulsar was probably restarted"
        )

    def _on_done(self, tracked: Tracked, status: JobStatus) -> None:
        task_id, phase = tracked.task_id, status.phase
        stored = self.store.get(task_id)
        if stored is not None and stored.task.state is State.CANCELING:
            result = self.backend.read_json(task_id, RESULT)
            notes = ran_to_its_end(result)
            if result is None:
                why = tracked.kill_note or "on TESP's cancel"
                notes = [f"canceled: Pulsar killed the job ({why}); it left no executor log"]
            self._finish(task_id, State.CANCELED, notes, result)
            if result is None:
                # Pulsar may start a job it was just told to cancel (its queue thread can
                # be past its cancel check), and it will not kill a job it calls cancelled.
                # Such a worker finds Pulsar's cancel record and stops: keep the job
                # directory (with the record) until it does, or the grace runs out.
                tracked.finished, tracked.cancel_wait = True, True
                tracked.done_seen = time.monotonic()
                self._reschedule(tracked)
                return
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
                message = no_result(status, started=progress is not None, note=note)
                self._finish(task_id, State.SYSTEM_ERROR, [message])
            else:
                result = explain_result(stored.task if stored else None, result)
                self._finish(task_id, result_state(result.get("state")), [], result)
        self._clean(task_id)

    def _worker_alive(
        self, tracked: Tracked, status: JobStatus, progress: dict[str, Any] | None
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

    def _ask_stop(self, task_id: str) -> None:
        """A cancel through TES: ask a running worker to stop, so that its executor is
        TERMed (KILLed after 5 s) and the task ends CANCELED with the executor's log and
        what it printed. Pulsar's own kill (SIGKILL of the whole job, no log) is what a
        job gets that has not launched, whose backend cannot take the request, or whose
        worker does not answer within ``stop_grace_seconds``."""
        with self._lock:
            tracked = self._active.get(task_id)
        if tracked is None or tracked.finished:
            self._kill(task_id)
            return
        tracked.stop_pending = False
        if not (tracked.launched or tracked.progress_seen):
            tracked.kill_note = "it was not seen running yet when the cancel came"
            self._kill(task_id)
            return
        try:
            asked = self.backend.request_stop(task_id)
        except BackendUnavailableError as exc:
            # Sent again at the next poll, once the backend answers: the worker may well
            # be running on out there, and can still stop with its executor's log.
            log.info("task %s: the stop request waits for the backend: %s", task_id, exc)
            tracked.stop_pending = True
            return
        except BackendError as exc:
            log.info("task %s: no stop request (%s): killing the job", task_id, exc)
            asked = False
        if not asked:
            tracked.kill_note = "the backend takes no stop request"
            self._kill(task_id)
            return
        log.info("task %s: asked the worker to stop", task_id)
        with self._lock:
            tracked.stop_asked = time.monotonic()
            tracked.interval, tracked.next_poll = self.limits.poll_min, 0.0
        self._wake.set()

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

    def _reached(self, tracked: Tracked) -> float | None:
        """The backend answered: end the outage this task saw, if any, and say so in its
        system logs once it was submitted. How long the outage lasted, or None."""
        since = tracked.unreachable_since
        if since is None or tracked.abandoned:
            return None
        tracked.unreachable_since = None
        if tracked.submitted:
            # When it came back is known only to within the back-off between two tries.
            least = tracked.unreachable_last - since
            line = f"{now_rfc3339()} the backend answered again"
            if least >= 1:
                line += (
                    f"; it was unreachable for at least {least:.0f} s (TESP's tries back off "
                    "up to 30 s apart)"
                )
            self._note(tracked.task_id, line)
        return time.monotonic() - since

    def _backend_down_too_long(self, tracked: Tracked, reason: str) -> bool:
        """True when the task was given up (or already had been) for its backend's outage.

        A task whose job was submitted keeps being tracked after it ended: its job may run
        on out there (Pulsar down, its jobs alive), and is killed and cleaned when the
        backend answers again. Until then it still takes its slot.
        """
        if tracked.abandoned:
            self._backoff(tracked)
            return True
        retry = self.limits.backend_retry_seconds
        tracked.unreachable_last = time.monotonic()
        if tracked.unreachable_since is None:
            tracked.unreachable_since = tracked.unreachable_last
            # Said in the task itself: a client sees why it waits (QUEUED, or RUNNING
            # with no news) without the server's log.
            line = (
                f"{now_rfc3339()} lost contact with the backend, its job may run on: {reason}"
                if tracked.submitted
                else f"{now_rfc3339()} waiting for a backend: {reason}"
            )
            self._note(tracked.task_id, f"{line}; TESP retries for up to {retry:g} s")
        if time.monotonic() - tracked.unreachable_since < retry:
            return False
        line = f"the backend was unreachable for over {retry:g} s: {reason}"
        stored = self.store.get(tracked.task_id)
        if stored is not None and stored.task.state is State.CANCELING:
            # The user's cancel stands: the task ends CANCELED, and its job, if it runs on
            # out there, is killed when the backend answers again (below).
            if tracked.submitted:
                line += "; its job, if it still runs there, is killed when the backend answers"
            self._finish(tracked.task_id, State.CANCELED, [line])
        else:
            self._finish(tracked.task_id, State.SYSTEM_ERROR, [line])
        if tracked.submitted:
            # _drain kills the job (its grace long over) and cleans it, once it can.
            tracked.finished = tracked.abandoned = True
            tracked.done_seen = 0.0
            self._backoff(tracked)
        else:
            self._forget(tracked.task_id)
        return True
