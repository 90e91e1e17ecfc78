"""The Pulsar backend over RabbitMQ: Pulsar's ``message_queue_url`` mode, no REST call.

For sites where TESP cannot reach Pulsar (a firewall lets both reach a broker, nothing
more). The design, in Pulsar's own terms (docs/deployment-amqp.md has the long version):

- **submit** publishes one ``setup`` message that carries the whole job: three "message"
  staging actions that Pulsar writes into the job's tool files (the launcher
  ``pulsar_amqp_launch``, the worker zipapp in base64, the worker spec) and a command line
  running the launcher. Nothing has to be fetched from TESP.
- **status** comes from ``status_update`` messages that Pulsar pushes; a consumer thread
  writes each to a small SQLite file (:mod:`pulsar_amqp_state`) before acknowledging it, so
  updates sent while TESP was down are read when it comes back. While a job runs, TESP
  publishes a ``status`` request every ``status_interval`` seconds; Pulsar's answers are the
  heartbeat that ``progress.json`` would give over REST.
- **result.json** arrives in the final status update: the launcher prints it after a marker
  line, and Pulsar sends the job's standard output whole (``job_stdout``).
- **cancel** publishes ``kill``, and again whenever Pulsar later reports the job alive
  (Pulsar ignores a kill for a job whose setup it has not read yet). **clean** has no
  message in Pulsar's protocol, so it sets up a one-line job ``<id>-clean`` that removes
  the job's directory (a sibling of its own). Kills and clean-ups that cannot be sent
  while RabbitMQ is down are kept in the state file and sent when it is back
  (:mod:`pulsar_amqp_cancel`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import shlex
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tesp_core.backends import pulsar_amqp_launch as launch
from tesp_core.backends.pulsar import PULSAR_STATUS, RESULT_FILE, JobStatus
from tesp_core.backends.pulsar_amqp_cancel import (
    LOST_CONFIRM_SECONDS,
    STATUS_EXPIRATION,
    Canceller,
)
from tesp_core.backends.pulsar_amqp_link import AmqpLink, key_prefix
from tesp_core.backends.pulsar_amqp_state import TERMINAL_PHASES, JobRecord, JobStateStore
from tesp_core.errors import BackendError, BackendJobLostError, BackendUnavailableError
from tesp_core.models import Task

log = logging.getLogger(__name__)

PROGRESS_FILE = "progress.json"
# Pulsar replaces this token in the command line with the job's absolute directory.
JOB_DIR_TOKEN = "__PULSAR_JOB_DIRECTORY__"  # noqa: S105 - not a password
CLEAN_SUFFIX = "-clean"
STDERR_KEEP = 8000
_JOB_ID = re.compile(r"[A-Za-z0-9._-]{1,200}")


class PulsarAmqpBackend:
    """Submit, track, read back, cancel and clean Pulsar jobs through RabbitMQ.

    Keywords: ``amqp_url`` (``amqp://user:password@host:port/vhost``, or ``amqps://``),
    ``state_dir`` (where the job-state file lives; keep it with TESP's data: one file per
    broker, vhost and queue prefix), ``manager`` (the Pulsar manager, which names the
    queues), ``worker_python`` (the python on the compute node), ``amqp_key_prefix`` (only
    if the manager sets one), ``status_interval`` (seconds between status requests for a
    running job) and ``clean_jobs`` (False leaves finished job directories on the Pulsar
    side). ``url`` and ``token`` (Pulsar's REST address and token) are accepted so that
    this class is built like :class:`PulsarBackend`, and never used: over AMQP no REST call
    is made.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        amqp_url: str,
        state_dir: Path,
        token: str | None = None,
        manager: str = "_default_",
        worker_python: str = "python3",
        amqp_key_prefix: str | None = None,
        status_interval: float = 10.0,
        clean_jobs: bool = True,
    ) -> None:
        del url, token  # see the docstring: no REST call over AMQP
        self.manager = manager
        self._python = worker_python
        self._interval = status_interval
        self._store = JobStateStore(state_dir / _state_file(amqp_url, manager, amqp_key_prefix))
        # When TESP last asked Pulsar about each job (monotonic); empty after a restart,
        # so every job in flight is asked about at once.
        self._asked: dict[str, float] = {}
        self._link = AmqpLink(
            amqp_url, manager=manager, amqp_key_prefix=amqp_key_prefix, on_status=self._on_status
        )
        self._link.check_access()  # wrong credentials or vhost: fail now, with a clear error
        self._cancel = Canceller(
            self._store, self._link, clean_jobs=clean_jobs, clean_message=_clean_message
        )
        self._link.on_connect = self._link.on_tick = self._cancel.flush
        self._link.start()
        log.info("Pulsar over AMQP: manager %s via %s", manager, self._link.shown_url)

    # -- the Backend protocol ---------------------------------------------------------------

    def submit(self, job_id: str, spec: dict[str, Any], worker: Path, task: Task) -> None:
        """Publish the setup message that makes Pulsar write the files and run the worker."""
        _check_job_id(job_id)
        self._store.create(job_id)
        launcher = Path(launch.__file__).read_text(encoding="utf-8")
        actions = [
            _message_action(launch.LAUNCHER, launcher),
            _message_action(launch.WORKER_B64, base64.b64encode(worker.read_bytes()).decode()),
            _message_action(launch.SPEC, json.dumps(spec)),
        ]
        command = " ".join(
            [
                shlex.quote(self._python),
                f"'{JOB_DIR_TOKEN}/tool_files/{launch.LAUNCHER}'",
                f"'{JOB_DIR_TOKEN}'",
            ]
        )
        self._link.publish("setup", _setup_message(job_id, command, actions))
        self._store.mark(job_id, "published")
        self._asked[job_id] = time.monotonic()  # Pulsar will tell; no need to ask yet
        log.debug("task %s: setup published to %s", job_id, self._link.queue_name("setup"))

    def status(self, job_id: str) -> JobStatus:
        """The last status Pulsar sent; asks Pulsar for a fresh one now and then.

        BackendUnavailableError while the status consumer is cut off from RabbitMQ: the
        stored status may be stale then, and a silent job must not look dead.
        """
        record = self._record(job_id)
        if not record.terminal and not self._link.connected.is_set():
            raise BackendUnavailableError(
                self._link.refused
                or f"RabbitMQ at {self._link.shown_url} is unreachable: no status update arrives"
            )
        if not record.terminal:
            if record.cancel_requested:
                interval = 1.0
            elif record.seen:
                interval = self._interval
            else:
                # Pulsar pushes every change; asking about a job it has not mentioned yet
                # only guards against a lost update, so it is rare.
                interval = max(30.0, 3 * self._interval)
            if time.monotonic() - self._asked.get(job_id, float("-inf")) >= interval:
                self._asked[job_id] = time.monotonic()
                self._link.publish(
                    "status", {"job_id": job_id, "request": "status"}, STATUS_EXPIRATION
                )
        return JobStatus(phase=record.phase, returncode=record.returncode, stderr=record.stderr)

    def finished_hint(self, job_id: str) -> bool | None:
        """Whether Pulsar reported the job finished (known locally, so always cheap)."""
        record = self._store.get(job_id)
        return None if record is None else record.terminal

    def listen(self, on_change: Callable[[str], None]) -> None:
        """Nothing: the service polls the locally kept status updates."""

    def watch_hint(self, job_id: str) -> tuple[int, ...] | None:
        """None: the job's files are on the Pulsar host; its status updates say what changed."""
        return None

    def read_json(self, job_id: str, name: str) -> dict[str, Any] | None:
        """``result.json`` from the final status update, or a ``progress.json`` made from
        the last status (its heartbeat is when Pulsar last spoke of the job)."""
        record = self._store.get(job_id)
        if record is None:
            return None
        if name == RESULT_FILE:
            return _loads(record.result)
        if name != PROGRESS_FILE:
            return None
        if record.terminal:
            return {"state": "DONE"} if record.result is not None else None
        if record.phase == "queued":
            return None
        state = "INITIALIZING" if record.phase == "initializing" else "RUNNING"
        return {"state": state, "heartbeat": _later(record.heartbeat, self._link.connected_at)}

    def cancel(self, job_id: str) -> None:
        """Publish ``kill`` (kept and sent later while RabbitMQ is down); Pulsar's answers
        to the next status requests tell the end."""
        self._store.mark(job_id, "cancel_requested")
        self._asked.pop(job_id, None)
        self._cancel.kill(job_id)

    def request_stop(self, job_id: str) -> bool:
        """Pulsar over a message queue takes no files after the launch: a cancel kills."""
        return False

    def clean(self, job_id: str) -> None:
        """Remove the job's directory on the Pulsar side (through a clean-up job)."""
        _check_job_id(job_id)
        self._cancel.clean(job_id)
        self._asked.pop(job_id, None)

    def healthy(self) -> bool:
        """True when RabbitMQ answers and lets this TESP in (Pulsar cannot be asked)."""
        return self._link.ping() and self._link.refused is None

    def close(self) -> None:
        """Stop consuming and close the connections and the state file."""
        self._link.close()
        self._store.close()

    # -- status updates (the consumer thread) -------------------------------------------------

    def _record(self, job_id: str) -> JobRecord:
        record = self._store.get(job_id)
        if record is None or not record.published:
            raise BackendJobLostError(f"no Pulsar job {job_id} was set up through AMQP")
        return record

    def _on_status(self, body: dict[str, Any]) -> None:
        job_id = str(body.get("job_id") or "")
        record = self._store.get(job_id)
        if record is None:
            # Clean-up jobs, health probes, or another client's jobs on a shared manager.
            log.debug("status_update for a job this TESP does not track: %s", job_id[:80])
            return
        raw = str(body.get("status", ""))
        phase = PULSAR_STATUS.get(raw)
        if phase is None:
            log.warning("task %s: unknown Pulsar status %r, treating as running", job_id, raw)
            phase = "running"
        if phase == "lost" and not record.seen:
            # A status request can be handled before the setup message that creates the job
            # (Pulsar reads each queue in its own thread), so "lost" for a job it never
            # reported means "not set up yet". A cancelled job ends only once Pulsar said
            # so for LOST_CONFIRM_SECONDS: its setup message was not coming.
            if record.cancel_requested:
                since = self._store.lost_answer(job_id, time.time())
                if time.time() - since >= LOST_CONFIRM_SECONDS:
                    log.info("task %s: Pulsar never set the cancelled job up", job_id)
                    self._store.finish(job_id, "cancelled")
            return
        if record.cancel_requested or record.cleaned:
            self._cancel.reported(record, phase)
            if record.cleaned:
                return
        result = None
        if phase in TERMINAL_PHASES:
            result = _result_from_stdout(str(body.get("job_stdout") or body.get("stdout") or ""))
        code = body.get("returncode")
        stderr = str(body.get("job_stderr") or body.get("stderr") or "")
        self._store.update(
            job_id,
            phase=phase,
            heartbeat=datetime.now(UTC).isoformat(),
            returncode=_int_or_none(code),
            stderr=stderr[-STDERR_KEEP:],
            result=result,
        )
        log.debug("task %s: Pulsar says %s", job_id, raw)


def _check_job_id(job_id: str) -> None:
    # The id names a directory in a shell command (the clean-up job): keep it plain.
    if not _JOB_ID.fullmatch(job_id) or set(job_id) == {"."}:
        raise BackendError(f"job id {job_id[:80]!r} is not usable as a Pulsar job id")


def _state_file(amqp_url: str, manager: str, amqp_key_prefix: str | None) -> str:
    """A file name for the queues of one broker, vhost and prefix (no credential in it)."""
    parts = urlsplit(amqp_url)
    where = f"{parts.hostname}:{parts.port}{parts.path}|{key_prefix(manager, amqp_key_prefix)}"
    return f"pulsar-amqp-{hashlib.sha256(where.encode()).hexdigest()[:16]}.sqlite"


def _clean_message(job_id: str) -> dict[str, Any]:
    """The setup message of the one-line job that removes ``job_id``'s directory."""
    target = f"'{JOB_DIR_TOKEN}/../{job_id}'"
    return _setup_message(job_id + CLEAN_SUFFIX, f"rm -rf -- {target}", [])


def _message_action(name: str, contents: str) -> dict[str, Any]:
    return {
        "name": name,
        "type": "tool",
        "action": {"action_type": "message", "contents": contents},
    }


def _setup_message(job_id: str, command: str, actions: list[dict[str, Any]]) -> dict[str, Any]:
    message: dict[str, Any] = {
        "job_id": job_id,
        "setup": True,
        "setup_params": {"job_id": job_id},
        "command_line": command,
    }
    if actions:
        message["remote_staging"] = {"setup": actions}
    return message


def _result_from_stdout(stdout: str) -> str | None:
    """The JSON text the launcher printed after its marker line, if it is a JSON object."""
    marker = f"\n{launch.RESULT_MARKER}\n"
    at = stdout.rfind(marker)
    if at < 0:
        return None
    text = stdout[at + len(marker) :].strip()
    return text if _loads(text) is not None else None


def _later(heartbeat: str | None, connected_at: float) -> str | None:
    """The heartbeat, but never before the status consumer (re)connected: while it was
    cut off from RabbitMQ Pulsar could not be heard, which says nothing of the job."""
    if heartbeat is None or not connected_at:
        return heartbeat
    connected = datetime.fromtimestamp(connected_at, UTC)
    try:
        beat = datetime.fromisoformat(heartbeat)
    except ValueError:
        return connected.isoformat()
    return max(beat, connected).isoformat()


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _loads(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
