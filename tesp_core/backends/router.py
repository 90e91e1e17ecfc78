"""Several named backends behind one :class:`Backend`: placement, load and liveness.

:class:`BackendPool` is what the service talks to. :meth:`BackendPool.place` picks a
backend for a job (:mod:`tesp_core.routing`) and attaches the job to it; every later call
for that job id (status, files, cancel, clean) goes to the same backend. The service keeps
the chosen name in the task's bookkeeping and re-attaches after a restart
(:meth:`BackendPool.attach`), because a backend knows no store.

A backend that raised BackendUnavailableError is *down*: routing skips it until
``recheck_seconds`` passed and its health check answers again. A submission that failed
before anything reached the backend (the connection was refused) is re-routed on the next
attempt; any other failure keeps the job on its backend, which may have launched it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from urllib3.exceptions import ConnectTimeoutError

from tesp_core.backends.base import Backend
from tesp_core.backends.pulsar import JobStatus
from tesp_core.errors import BackendError, BackendUnavailableError
from tesp_core.models import Task
from tesp_core.routing import BackendProfile, check_routable, choose, task_demand

log = logging.getLogger(__name__)

DEFAULT_NAME = "default"

T = TypeVar("T")


@dataclass(frozen=True)
class Placement:
    """Where a job goes: the backend's name, and whether it resumes an earlier attempt
    there (then the backend may already run it)."""

    name: str
    resumed: bool


@dataclass
class PoolMember:
    """One named backend, with what routing and task logs need to know of it."""

    profile: BackendProfile
    backend: Backend
    # Shown in task logs: the backend's URL with credentials redacted.
    display_url: str = ""
    down_until: float = 0.0
    down: bool = False
    # The error that marked it down (shown when a task waits for it).
    reason: str = ""


class BackendPool:
    """Named backends: routes each job to one and sends the job's calls there."""

    def __init__(self, members: Sequence[PoolMember], *, recheck_seconds: float = 5.0) -> None:
        if not members:
            raise ValueError("a backend pool needs at least one backend")
        self._members = {m.profile.name: m for m in members}
        self._profiles = [m.profile for m in members]
        self._recheck = recheck_seconds
        self._lock = threading.Lock()
        self._jobs: dict[str, str] = {}
        # Jobs whose last submission never reached their backend: free to go elsewhere.
        self._unsent: set[str] = set()
        # Jobs whose task ended from the worker's result: only their clean-up is left.
        self._ended: set[str] = set()

    @classmethod
    def single(
        cls, backend: Backend, display_url: str = "", capacity: int = 1 << 30
    ) -> BackendPool:
        """One backend named ``default`` (the single-Pulsar set-up) taking ``capacity``
        jobs at once: tasks that waited for it while it was down are then placed no more
        than that many at a time."""
        profile = BackendProfile(DEFAULT_NAME, capacity=capacity)
        return cls([PoolMember(profile, backend, display_url)])

    @property
    def names(self) -> list[str]:
        """The backends' names, in configuration order."""
        return [p.name for p in self._profiles]

    # -- placement --------------------------------------------------------------------------

    def check(self, task: Task) -> None:
        """InvalidTaskError (naming the field) when no backend could ever run ``task``."""
        check_routable(task, self._profiles)

    def resolve(self, name: str | None) -> str:
        """A stored backend name; none (bookkeeping of a single-backend TESP) is the only
        or the ``default`` backend. BackendError when it is not configured."""
        if not name:
            if DEFAULT_NAME in self._members or len(self._members) != 1:
                name = DEFAULT_NAME
            else:
                name = self._profiles[0].name
        if name not in self._members:
            raise BackendError(
                f"the task was sent to backend {name!r}, which is not configured any more "
                f"(backends: {self.names})"
            )
        return name

    def place(self, job_id: str, task: Task, pinned: str | None = None) -> Placement:
        """Attach ``job_id`` to a backend and say which.

        ``pinned`` is the backend an earlier, unfinished submission went to (``""`` when
        the bookkeeping names none): the job stays there unless that submission never
        reached it. Raises the errors of :func:`tesp_core.routing.choose`.
        """
        with self._lock:
            unsent = job_id in self._unsent
        if pinned is not None and not unsent:
            name = self.resolve(pinned)
            self.attach(job_id, name)
            return Placement(name, resumed=True)
        self._probe_down()
        with self._lock:
            load = Counter(n for j, n in self._jobs.items() if j != job_id and j not in self._ended)
            down = {n: m.reason for n, m in self._members.items() if m.down}
            name = choose(task_demand(task), self._profiles, load, down, down)
            self._jobs[job_id] = name
            self._unsent.discard(job_id)
        level = logging.INFO if len(self._profiles) > 1 else logging.DEBUG
        log.log(
            level, "task %s: routed to backend %s (%d in flight there)", job_id, name, load[name]
        )
        return Placement(name, resumed=False)

    def attach(self, job_id: str, name: str | None) -> None:
        """Send ``job_id``'s calls to backend ``name`` (re-attaching after a restart).

        An unknown name is accepted here and reported by the job's first call.
        """
        with self._lock:
            self._jobs[job_id] = name or ""

    def placed(self, job_id: str) -> bool:
        """True when ``job_id`` is attached to a backend."""
        with self._lock:
            return job_id in self._jobs

    def release(self, job_id: str) -> None:
        """The job waits (unplaced) for room: it no longer counts against its backend."""
        with self._lock:
            self._jobs.pop(job_id, None)
            self._ended.discard(job_id)

    def ended(self, job_id: str) -> None:
        """The job's worker delivered its result; the job only waits to be cleaned. It
        stays attached (its clean-up goes to its backend) but no longer takes room there."""
        with self._lock:
            if job_id in self._jobs:
                self._ended.add(job_id)

    def forget(self, job_id: str) -> None:
        """The job left this TESP's hands: nothing is kept of it."""
        with self._lock:
            self._jobs.pop(job_id, None)
            self._unsent.discard(job_id)
            self._ended.discard(job_id)

    def in_flight(self) -> dict[str, int]:
        """Jobs attached to each backend that still take room there."""
        with self._lock:
            counts = Counter(n for j, n in self._jobs.items() if j not in self._ended)
        return {name: counts.get(name, 0) for name in self.names}

    def metadata(self, name: str, job_id: str) -> dict[str, str]:
        """What a task log records of where the task ran (no credentials)."""
        meta = {"backend": name, "pulsar_job_id": job_id}
        member = self._members.get(name)
        if member is not None and member.display_url:
            meta["pulsar_url"] = member.display_url
        return meta

    # -- liveness ---------------------------------------------------------------------------

    def _probe_down(self) -> None:
        """Ask the health check of each down backend whose recheck time has come."""
        now = time.monotonic()
        with self._lock:
            due = [m for m in self._members.values() if m.down and m.down_until <= now]
            for member in due:
                member.down_until = now + self._recheck  # one prober at a time
        for member in due:
            try:
                ok = member.backend.healthy()
            except BackendError:
                ok = False
            if ok:
                self._mark(member, up=True)

    def _mark(self, member: PoolMember, *, up: bool, reason: str = "") -> None:
        with self._lock:
            was_down = member.down
            member.down = not up
            member.reason = "" if up else reason or member.reason
            if not up:
                member.down_until = time.monotonic() + self._recheck
        if was_down and up:
            log.info("backend %s answers again", member.profile.name)
        elif not was_down and not up:
            log.warning("backend %s is unreachable; routing skips it", member.profile.name)

    def _member(self, job_id: str) -> PoolMember:
        with self._lock:
            name = self._jobs.get(job_id)
        return self._members[self.resolve(name)]

    def _call(self, job_id: str, call: Callable[[Backend], T], *, round_trip: bool = True) -> T:
        member = self._member(job_id)
        try:
            result = call(member.backend)
        except BackendError as exc:
            # Named for the metrics hook (tesp_backend_errors_total{backend=...}).
            exc.backend = exc.backend or member.profile.name
            if isinstance(exc, BackendUnavailableError):
                self._mark(member, up=False, reason=str(exc))
            raise
        # Only a call that reached the backend says it is up: a backend may answer some
        # calls from a local copy (the AMQP one reads its job files from a local store).
        if member.down and round_trip:
            self._mark(member, up=True)
        return result

    # -- the Backend protocol, per job ------------------------------------------------------

    def submit(self, job_id: str, spec: dict[str, Any], worker: Path, task: Task) -> None:
        """Submit to the backend the job was placed on."""
        try:
            self._call(job_id, lambda b: b.submit(job_id, spec, worker, task))
        except BackendUnavailableError as exc:
            if never_sent(exc):
                with self._lock:
                    self._unsent.add(job_id)
            raise

    def status(self, job_id: str) -> JobStatus:
        """The job's status on its backend."""
        return self._call(job_id, lambda b: b.status(job_id))

    def finished_hint(self, job_id: str) -> bool | None:
        """The job's backend's cheap finished check."""
        return self._member(job_id).backend.finished_hint(job_id)

    def watch_hint(self, job_id: str) -> tuple[int, ...] | None:
        """The job's backend's fingerprint of the worker's files (None: not visible)."""
        return self._member(job_id).backend.watch_hint(job_id)

    def read_json(self, job_id: str, name: str) -> dict[str, Any] | None:
        """A JSON file of the job's working directory, from its backend."""
        return self._call(job_id, lambda b: b.read_json(job_id, name), round_trip=False)

    def cancel(self, job_id: str) -> None:
        """Kill the job on its backend."""
        self._call(job_id, lambda b: b.cancel(job_id))

    def request_stop(self, job_id: str) -> bool:
        """Ask the job's worker, through its backend, to stop."""
        return self._call(job_id, lambda b: b.request_stop(job_id))

    def clean(self, job_id: str) -> None:
        """Remove the job from its backend."""
        self._call(job_id, lambda b: b.clean(job_id))

    def healthy(self) -> bool:
        """True when at least one backend answers (tasks can run somewhere)."""
        return any(self.health().values())

    def health(self) -> dict[str, bool]:
        """Each backend's health check, by name (in configuration order)."""
        return {name: _healthy(m.backend) for name, m in self._members.items()}

    def listen(self, on_change: Callable[[str], None]) -> None:
        """Have every backend that can report changed job files report them."""
        for member in self._members.values():
            member.backend.listen(on_change)

    def close(self) -> None:
        """Close every backend's connections."""
        for member in self._members.values():
            member.backend.close()


def never_sent(exc: BaseException) -> bool:
    """True when ``exc`` says the connection was never made (refused, connect timeout),
    so the request, and the submission it was part of, never reached the backend.

    A backend may also set ``exc.never_sent = True`` itself.
    """
    seen: BaseException | None = exc
    while seen is not None:
        if getattr(seen, "never_sent", False) or isinstance(seen, ConnectTimeoutError):
            return True
        reason = getattr(seen.args[0], "reason", None) if seen.args else None
        if isinstance(reason, ConnectTimeoutError):  # urllib3's MaxRetryError inside requests
            return True
        seen = seen.__cause__
    return False


def _healthy(backend: Backend) -> bool:
    try:
        return backend.healthy()
    except BackendError:
        return False
