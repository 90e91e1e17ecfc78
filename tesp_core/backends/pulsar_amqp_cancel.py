"""Kills and clean-ups of Pulsar jobs over AMQP that survive a broker outage and a restart.

Three facts of Pulsar's message-queue mode shape this:

- Pulsar reads its ``setup`` and ``kill`` queues in separate threads and ignores a kill for
  a job it does not know. A kill sent while the setup message still waits in RabbitMQ
  (Pulsar down) is lost, and the job runs when Pulsar comes back. So TESP remembers every
  job it cancelled (``cancel_requested`` in the state file) and sends the kill again
  whenever Pulsar reports that job alive.
- A kill or clean-up that cannot be published (RabbitMQ down) is kept in the state file
  and published when the link is back, even after a restart of TESP.
- The clean-up is a job of its own (``<id>-clean``, on the setup queue) and Pulsar kills
  through the job's ``pid`` file: a clean-up that overtakes the kill removes the file and
  leaves the process running. A job that may still run is killed first and cleaned
  ``KILL_GRACE_SECONDS`` later.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from tesp_core.backends.pulsar_amqp_link import AmqpLink
from tesp_core.backends.pulsar_amqp_state import TERMINAL_PHASES, JobRecord, JobStateStore
from tesp_core.errors import BackendUnavailableError

log = logging.getLogger(__name__)

# How long Pulsar must keep answering "lost" for a cancelled job it never reported
# before TESP takes it that the setup message is not coming (Pulsar reads its queues in
# parallel; a backlog of setups is read within seconds of its start).
LOST_CONFIRM_SECONDS = 30.0
# Seconds between the kill and the clean-up of a job that may still run.
KILL_GRACE_SECONDS = 5.0
# A status request nobody read within this many seconds is dropped by RabbitMQ, so a
# Pulsar that was down does not answer a pile of stale questions.
STATUS_EXPIRATION = 30.0
# At most one kill per job this often (Pulsar may report a job many times a second).
KILL_REPEAT_SECONDS = 2.0


class Canceller:
    """Sends (and keeps, until sent) the kill and clean-up messages of jobs."""

    def __init__(
        self,
        store: JobStateStore,
        link: AmqpLink,
        *,
        clean_jobs: bool,
        clean_message: Callable[[str], dict[str, Any]],
    ) -> None:
        self._store = store
        self._link = link
        self._clean_jobs = clean_jobs
        self._clean_message = clean_message
        self._killed: dict[str, float] = {}
        self._flushing = threading.Lock()

    def kill(self, job_id: str) -> None:
        """Publish ``kill`` now, or keep it for when RabbitMQ is back."""
        self._killed[job_id] = time.monotonic()
        try:
            if not self._link.connected.is_set():
                # Cut off from the broker: do not block the caller on a connect timeout.
                raise BackendUnavailableError(f"RabbitMQ at {self._link.shown_url} is unreachable")
            self._link.publish("kill", {"job_id": job_id})
        except BackendUnavailableError as exc:
            self._store.add_pending(job_id, "kill")
            log.warning("task %s: kill kept until RabbitMQ is back: %s", job_id, exc)
            return
        log.info("task %s: kill published", job_id)

    def clean(self, job_id: str) -> None:
        """Clean the job up (after a kill if it may still run), or keep it as a tombstone
        when Pulsar may still set it up later."""
        record = self._store.get(job_id)
        if record is not None and record.cancel_requested and not record.seen:
            # Cancelled before Pulsar ever reported it: its setup may still be queued.
            # Keep the row; a report of the job later kills and cleans it (reported()).
            self._store.mark(job_id, "cleaned")
            return
        due = 0.0
        if (
            record is not None
            and record.published
            and (record.phase == "lost" or not record.terminal)
        ):
            # Running, or lost after a Pulsar restart (its process may still be alive).
            self.kill(job_id)
            due = time.time() + KILL_GRACE_SECONDS
        if self._clean_jobs:
            self._store.add_pending(job_id, "clean", due)
        self._store.delete(job_id)
        self._try_flush()

    def reported(self, record: JobRecord, phase: str) -> None:
        """Pulsar reported ``phase`` for a job TESP cancelled: kill again while it lives;
        clean a tombstoned one once it ended."""
        job_id = record.job_id
        if phase not in TERMINAL_PHASES:
            last = self._killed.get(job_id, float("-inf"))
            if time.monotonic() - last >= KILL_REPEAT_SECONDS:
                log.info(
                    "task %s: Pulsar reports the cancelled job %s, killing again", job_id, phase
                )
                self.kill(job_id)
        elif record.cleaned:
            log.info("task %s: the cancelled job ended (%s), cleaning it", job_id, phase)
            if self._clean_jobs:
                self._store.add_pending(job_id, "clean")
            self._store.delete(job_id)
            self._try_flush()

    def flush(self) -> None:
        """Publish every kept kill and clean-up that is due; BackendUnavailableError at the
        first that fails (the rest stay kept)."""
        with self._flushing:
            for job_id, kind in self._store.due_pending(time.time()):
                if kind == "kill":
                    self._link.publish("kill", {"job_id": job_id})
                    log.info("task %s: kept kill published", job_id)
                else:
                    self._link.publish("setup", self._clean_message(job_id))
                    log.debug("task %s: clean-up job published", job_id)
                self._store.done_pending(job_id, kind)

    def _try_flush(self) -> None:
        if not self._link.connected.is_set():
            return  # the link's reconnect flushes
        try:
            self.flush()
        except BackendUnavailableError as exc:
            log.warning("kills and clean-ups kept until RabbitMQ is back: %s", exc)
