"""Running executors: one process group each, logs streamed to files, tails kept.

Memory stays constant: stdout and stderr always go to files (the TES path when given, else
the job directory's ``logs/``), and the tail for the executor log is read back with a seek.

Processes are started with :func:`os.posix_spawn` and signals set with ``_signal``: the
:mod:`subprocess` and :mod:`signal` modules (with selectors, threading, locale, enum) cost
every task's worker about a sixth of its start-up (issue 8). What ``Popen`` did for us is
done here: the command is looked up on the task's own ``PATH``, the child gets its own
session, only fds 0-2 are inherited, and SIGPIPE/SIGXFSZ are back to their defaults.
"""

from __future__ import annotations

import errno
import os
import time

from tesp_core.worker.runtimes import Invocation, build_invocation
from tesp_core.worker.spec import TYPE_CHECKING

if TYPE_CHECKING:
    import signal as _signal  # the same functions and constants, with type stubs
else:
    import _signal

if TYPE_CHECKING:
    from types import FrameType, TracebackType
    from typing import Any

    from tesp_core.worker.runtimes import Bind, HostFS
    from tesp_core.worker.spec import Executor, WorkerSpec
    from tesp_core.worker.staging import Layout

KILL_GRACE_SECONDS = 5.0
# Set in the environment of executors under `none`: this worker's run, by pid and time.
_RUN_TAG = f"TESP_RUN={os.getpid()}.{time.time_ns()}"
# Pulsar records a cancel as this file in the job directory (the parent of the working
# directory the worker runs in) before it SIGKILLs the job's process tree, which it lists
# once. An executor spawned between that listing and the worker's own SIGKILL would
# outlive the job: so the worker looks for the record before and right after each spawn.
PULSAR_CANCEL_RECORD = "cancelled"
PULSAR_CANCELLED = "Pulsar cancelled the job"
# A cancel through TES: TESP writes this file into the working directory and gives the
# worker time to stop its executor (TERM, then KILL after KILL_GRACE_SECONDS) and report,
# with the interrupted executor's log, before it has Pulsar kill the job.
STOP_REQUEST = "tesp-stop"
TESP_STOPPED = "the task was cancelled through TES"
# bwrap reports a failed exec of the command as exit 1 plus this last line on stderr.
# A string, compiled (and cached by re) only when a bwrap executor exits 1.
_BWRAP_EXEC_FAILED = r"^bwrap: execvp .*: (No such file or directory|Permission denied)$"


class Canceled(BaseException):
    """Raised by the SIGTERM handler; a BaseException so no ``except Exception`` eats it."""


class ExecutorSetupError(Exception):
    """The executor could not be started for a reason outside its command (e.g. stdin)."""


def now() -> str:
    """The current time, RFC 3339 in UTC: ``datetime.now(UTC).isoformat()``'s format.

    Built with :mod:`time`: importing :mod:`datetime` costs every worker ~4M instructions.
    """
    ns = time.time_ns()
    seconds, micros = divmod(ns // 1000, 1_000_000)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    # isoformat() leaves out a zero fraction.
    return f"{stamp}.{micros:06d}+00:00" if micros else f"{stamp}+00:00"


def tail(path: str, limit: int) -> str:
    """The last ``limit`` bytes of ``path`` as text (a cut character becomes U+FFFD)."""
    if limit <= 0 or not os.path.isfile(path):
        return ""
    with open(path, "rb") as fh:
        size = fh.seek(0, os.SEEK_END)
        fh.seek(max(0, size - limit))
        return fh.read(limit).decode("utf-8", errors="replace")


def _bwrap_exec_code(err_path: str) -> int | None:
    """127 or 126 when bwrap could not exec the command (what a shell would return)."""
    lines = [line for line in tail(err_path, 1024).splitlines() if line.strip()]
    import re

    match = re.match(_BWRAP_EXEC_FAILED, lines[-1]) if lines else None
    if match is None:
        return None
    return 127 if match.group(1).startswith("No such") else 126


class ExecutorLog:
    """One TES executor log."""

    __slots__ = ("end_time", "exit_code", "start_time", "stderr", "stdout")

    def __init__(self, start_time: str) -> None:
        self.start_time = start_time
        self.end_time: str | None = None
        self.exit_code: int | None = None
        self.stdout = ""
        self.stderr = ""

    def to_json(self) -> dict[str, Any]:
        """The ``executor_logs`` entry of ``result.json``."""
        return {
            "start_time": self.start_time,
            "end_time": self.end_time,
            "exit_code": self.exit_code,
            "stdout": self.stdout,
            "stderr": self.stderr,
        }


def which(name: str, env: dict[str, str] | os._Environ[str] | None = None) -> str | None:
    """``shutil.which(name)`` for a bare command name, as it does it on POSIX, on the
    ``PATH`` of ``env`` (default: the worker's own environment).

    Written out because importing shutil (with bz2, lzma, fnmatch) cost every bwrap or
    container task's worker ~6M instructions, for this one lookup.
    """
    for directory in _search_path(os.environ if env is None else env):
        candidate = os.path.join(directory, name)
        if (
            os.path.exists(candidate)
            and os.access(candidate, os.X_OK)
            and not os.path.isdir(candidate)
        ):
            return candidate
    return None


def _search_path(env: dict[str, str] | os._Environ[str]) -> list[str]:
    """The directories of ``env``'s PATH (the system default when it has none), each once."""
    path = env.get("PATH")
    if path is None:
        try:
            path = os.confstr("CS_PATH")
        except (AttributeError, ValueError):
            path = os.defpath
    seen: list[str] = []
    for directory in (path or "").split(os.pathsep):
        if directory not in seen:
            seen.append(directory)
    return seen


def resolve_command(name: str, env: dict[str, str]) -> str:
    """The file ``execve`` should run for ``argv[0]``, found on ``env``'s PATH as ``Popen``
    (and ``execvpe``) would: a name with a slash as is; else the first executable match, or
    the first existing non-executable one (its exec then fails with EACCES, exit 126).

    FileNotFoundError when nothing matches (exit 127)."""
    if "/" in name:
        return name
    found = which(name, env)
    if found is not None:
        return found
    for directory in _search_path(env):
        candidate = os.path.join(directory or ".", name)
        if os.path.isfile(candidate):
            return candidate
    raise FileNotFoundError(2, "No such file or directory", name)


def _exit_code(returncode: int) -> int:
    # A signal death is reported the way a shell does: 128 + signal number.
    return 128 - returncode if returncode < 0 else returncode


def _killpg(pid: int, sig: int) -> None:
    try:  # noqa: SIM105 - contextlib is not imported on the start path
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass  # the group is gone already


def _kill(pid: int, sig: int) -> None:
    try:  # noqa: SIM105 - contextlib is not imported on the start path
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _stat(pid: int) -> tuple[int, int, int] | None:
    """``(ppid, pgrp, starttime)`` of a live process, from /proc (None: it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return None
    # pid (comm) state ppid pgrp ... starttime (field 22): comm may hold spaces and ")".
    fields = stat[stat.rindex(b")") + 2 :].split()
    return int(fields[1]), int(fields[2]), int(fields[19])


def _family(pid: int, tag: bytes = b"") -> dict[int, tuple[int, int]]:
    """The processes of ``pid``'s group and all its descendants (those that left the group
    with setsid included), and with ``tag`` those whose environment holds it (a child that
    double-forked away is no descendant any more), ``pid`` itself excluded:
    ``{pid: (pgrp, starttime)}``. Read from /proc, on a cancel path only."""
    table = {}
    tagged = set()
    for name in os.listdir("/proc"):
        if name.isdigit():
            stat = _stat(int(name))
            if stat is not None:
                table[int(name)] = stat
                if tag and _has_in_environ(name, tag):
                    tagged.add(int(name))
    children: dict[int, list[int]] = {}
    for member, (ppid, _pgrp, _start) in table.items():
        children.setdefault(ppid, []).append(member)
    found = {m for m, (_ppid, pgrp, _start) in table.items() if pgrp == pid} | tagged
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    found.discard(pid)
    return {m: (table[m][1], table[m][2]) for m in found}


def _has_in_environ(pid: str, tag: bytes) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            return tag in fh.read().split(b"\0")
    except OSError:
        return False  # gone, or another user's


def _signal_family(family: dict[int, tuple[int, int]], sig: int, *, skip_group: int = 0) -> None:
    """Send ``sig`` to each process of ``family`` still alive as the same process (its
    start time unchanged: a pid reused meanwhile is left alone), but those of process group
    ``skip_group``, which a killpg reaches already."""
    for member, (pgrp, start) in family.items():
        stat = _stat(member)
        if stat is not None and stat[2] == start and pgrp != skip_group:
            _kill(member, sig)


class CancelGate:
    """The SIGTERM handler: raises :class:`Canceled`, except inside :meth:`deferred`.

    Blocking SIGTERM around ``Popen`` instead would be inherited by the executor (a signal
    mask survives exec), which then could not be terminated.
    """

    def __init__(self) -> None:
        self._depth = 0
        self._pending = False
        self.reason = "the worker received SIGTERM"

    def request(self, reason: str) -> None:
        """A cancel found by the worker itself (not a signal): raised like one."""
        self.reason = reason
        if self._depth:
            self._pending = True
            return
        raise Canceled

    def handler(self, signum: int, frame: FrameType | None) -> None:
        """Install with ``_signal.signal(SIGTERM, gate.handler)``."""
        # Repeats are ignored: the first one is already unwinding towards the cleanup.
        _signal.signal(_signal.SIGTERM, _signal.SIG_IGN)
        if self._depth:
            self._pending = True
            return
        raise Canceled

    def deferred(self) -> CancelGate:
        """``with gate.deferred():`` holds a cancel back so it cannot fall between spawning
        and recording a child (the gate is its own context manager: no contextlib)."""
        return self

    def __enter__(self) -> None:
        self._depth += 1

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._depth -= 1
        if not self._depth and self._pending and kind is None:
            raise Canceled


CANCEL = CancelGate()
"""The process-wide gate (signal handlers are process-wide too)."""


class ExecutorRunner:
    """Runs a task's executors one at a time and can kill the one that is running."""

    def __init__(
        self,
        spec: WorkerSpec,
        layout: Layout,
        job_dir: str,
        binds: list[Bind],
        fs: HostFS | None = None,
    ) -> None:
        self._spec = spec
        self._layout = layout
        self._job_dir = job_dir
        self._binds = binds
        self._fs = fs
        # The running executor's pid (its process group), and its status once reaped.
        self._pid: int | None = None
        self._returncode: int | None = None
        self.interrupted: ExecutorLog | None = None
        """The log of an executor that was running when a cancel arrived."""

    def invocation(self, ex: Executor) -> Invocation:
        """The invocation of ``ex`` in this task's runtime."""
        default_cwd = os.path.join(self._job_dir, "work")
        os.makedirs(default_cwd, exist_ok=True)
        inv = build_invocation(
            self._spec.runtime,
            ex,
            self._layout.job_root,
            self._binds,
            os.environ,
            default_cwd,
            self._fs,
        )
        if self._spec.runtime.kind == "none":
            # What the executor starts inherits it: a cancel finds those that left its
            # process tree too (bwrap's and a container's pid namespace end them anyway).
            name, _, value = _RUN_TAG.partition("=")
            inv = Invocation(inv.argv, {**inv.env, name: value}, inv.cwd)
        if inv.cwd is not None:
            # Under `none` the workdir is a host directory; create it as an engine would.
            os.makedirs(inv.cwd, exist_ok=True)
        elif "/" not in inv.argv[0]:
            # The runtime binary (bwrap, docker, ...) is found with the worker's own PATH;
            # the task's env, which may set PATH, is only for the command inside.
            found = which(inv.argv[0])
            if found:
                inv = Invocation([found, *inv.argv[1:]], inv.env, inv.cwd)
        return inv

    def _log_paths(self, index: int, ex: Executor) -> tuple[str, str]:
        logs = os.path.join(self._job_dir, "logs")
        out = self._layout.host(ex.stdout) if ex.stdout else os.path.join(logs, f"{index}.stdout")
        err = self._layout.host(ex.stderr) if ex.stderr else os.path.join(logs, f"{index}.stderr")
        for path in (out, err):
            os.makedirs(os.path.dirname(path), exist_ok=True)
        return out, err

    def run(self, index: int, ex: Executor) -> ExecutorLog:
        """Run executor ``index`` to completion and return its log."""
        reason = cancel_reason(self._job_dir)
        if reason is not None:
            CANCEL.request(reason)  # raises Canceled: nothing was started
        inv = self.invocation(ex)
        out_path, err_path = self._log_paths(index, ex)
        log = ExecutorLog(start_time=now())
        fds: list[int] = []
        try:
            stdin = self._open_stdin(ex, fds)
            out = _open_log(out_path, fds)
            err = out if err_path == out_path else _open_log(err_path, fds)
            try:
                log.exit_code = self._spawn_and_wait(inv, stdin, out, err)
            except Canceled:
                log.exit_code = self._finish_canceled()
                self._fill(log, out_path, err_path)
                self.interrupted = log
                raise
        finally:
            for fd in fds:
                os.close(fd)
        self._fill(log, out_path, err_path)
        failure = self._sandbox_failure(log)
        if failure is not None:
            raise ExecutorSetupError(f"the bwrap sandbox could not be set up: {failure}")
        return log

    def _sandbox_failure(self, log: ExecutorLog) -> str | None:
        """bwrap's own last word when it exited 1 before running the command (a TES path it
        cannot create on this host, say): a system error, not the executor's."""
        if self._spec.runtime.kind != "bwrap" or log.exit_code != 1:
            return None
        lines = [line for line in log.stderr.splitlines() if line.strip()]
        return lines[-1] if lines and lines[-1].startswith("bwrap: ") else None

    def _open_stdin(self, ex: Executor, fds: list[int]) -> int:
        path = self._layout.host(ex.stdin) if ex.stdin else os.devnull
        try:
            fds.append(os.open(path, os.O_RDONLY | os.O_CLOEXEC))
        except OSError as exc:
            raise ExecutorSetupError(f"cannot open stdin {ex.stdin}: {exc.strerror}") from exc
        return fds[-1]

    def _fill(self, log: ExecutorLog, out_path: str, err_path: str) -> None:
        log.end_time = now()
        limit = self._spec.log_tail_bytes
        log.stdout = tail(out_path, limit)
        log.stderr = tail(err_path, limit) if err_path != out_path else ""
        if self._spec.runtime.kind == "bwrap" and log.exit_code == 1:
            log.exit_code = _bwrap_exec_code(err_path) or log.exit_code

    def _spawn_and_wait(self, inv: Invocation, stdin: int, out: int, err: int) -> int:
        with CANCEL.deferred():
            try:
                self._pid, self._returncode = _spawn(inv, stdin, out, err), None
            except OSError as exc:
                # What a shell would say and return; the task goes on as an executor failure.
                code = _SPAWN_FAILED.get(exc.errno or 0)
                if code is None:
                    raise
                os.write(err, f"{inv.argv[0]}: {exc.strerror}\n".encode())
                return code
            reason = cancel_reason(self._job_dir)
            if reason == PULSAR_CANCELLED:
                _killpg(self._pid, _signal.SIGKILL)  # as Pulsar does to the rest of the job
            if reason is not None:
                CANCEL.request(reason)  # a stop request: TERMed on the way out (run)
        pid = self._pid
        # Wait without reaping, then reap with cancellation deferred: a cancel (SIGTERM from
        # a scheduler hits the executor and the worker at once) raised between waitpid's
        # reaping and recording the status would lose the exit code.
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
        with CANCEL.deferred():
            returncode = self._reap(block=True)
        # Whatever the command left running in its group goes with it, as in a container.
        _killpg(pid, _signal.SIGKILL)
        self._pid = None
        assert returncode is not None
        return _exit_code(returncode)

    def _reap(self, *, block: bool) -> int | None:
        """The running executor's return code (Popen's: -N for signal N), reaping it once;
        None while it runs (``block=False``)."""
        if self._returncode is None and self._pid is not None:
            pid, status = os.waitpid(self._pid, 0 if block else os.WNOHANG)
            if pid:
                self._returncode = os.waitstatus_to_exitcode(status)
        return self._returncode

    def _finish_canceled(self) -> int | None:
        if self._pid is None:
            return None
        self.kill_running()
        return _exit_code(self._returncode) if self._returncode is not None else None

    def kill_running(self, grace: float = KILL_GRACE_SECONDS) -> None:
        """TERM the running executor's processes, KILL them after ``grace`` seconds: its
        process group and every descendant, those that left the group with setsid too
        (under ``none`` nothing else would stop them; Pulsar's own kill walks the tree)."""
        pid = self._pid
        if pid is None:
            return
        tag = b"" if self._spec.runtime.kind != "none" else _RUN_TAG.encode()
        family = _family(pid, tag)
        if self._spec.runtime.kind == "bwrap":
            # bwrap itself dies of a TERM (exit 143) while the command's own exit, after its
            # TERM handler, is lost: TERM the command's processes, and bwrap reports it.
            # bwrap's init in the sandbox ignores a TERM from outside its pid namespace.
            _signal_family(family, _signal.SIGTERM)
        else:
            _killpg(pid, _signal.SIGTERM)
            _signal_family(family, _signal.SIGTERM, skip_group=pid)
        deadline = time.monotonic() + grace
        while self._reap(block=False) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        _killpg(pid, _signal.SIGKILL)
        _signal_family(family, _signal.SIGKILL, skip_group=pid)
        self._reap(block=True)
        self._pid = None


def pulsar_cancelled(job_dir: str) -> bool:
    """Whether Pulsar recorded a cancel of the job whose working directory is ``job_dir``."""
    parent = os.path.dirname(os.path.abspath(job_dir))
    return os.path.exists(os.path.join(parent, PULSAR_CANCEL_RECORD))


def stop_requested(job_dir: str) -> bool:
    """Whether TESP asked this worker to stop (a cancel through TES)."""
    return os.path.exists(os.path.join(job_dir, STOP_REQUEST))


def cancel_reason(job_dir: str) -> str | None:
    """Why the task is being cancelled, if it is: Pulsar's record, or TESP's request."""
    if pulsar_cancelled(job_dir):
        return PULSAR_CANCELLED
    if stop_requested(job_dir):
        return TESP_STOPPED
    return None


# Exec failures that are the command's fault, with the exit code a shell gives them: not
# found 127; not executable, a directory, or not a binary or script (no #! line) 126.
_SPAWN_FAILED = {errno.ENOENT: 127, errno.EACCES: 126, errno.EISDIR: 126, errno.ENOEXEC: 126}


def _open_log(path: str, fds: list[int]) -> int:
    fds.append(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666))
    return fds[-1]


# Signals an executor starts with at their defaults, as a container's entrypoint does:
# SIGPIPE and SIGXFSZ, which Python ignores (what Popen's restore_signals resets); SIGINT
# and SIGQUIT, which a shell ignores for the background jobs Pulsar may start workers as;
# SIGTERM, which the worker ignores once a cancel is under way.
_RESTORED = (_signal.SIGPIPE, _signal.SIGXFSZ, _signal.SIGINT, _signal.SIGQUIT, _signal.SIGTERM)


def _spawn(inv: Invocation, stdin: int, out: int, err: int) -> int:
    """Start ``inv`` in its own session with fds 0-2 from ``stdin``/``out``/``err``.

    posix_spawn has no working-directory action, so the worker itself changes directory
    around the call (the worker uses absolute paths throughout, and nothing else runs
    while an executor starts). Inheritable fds above 2 are closed in the child.
    """
    actions: list[tuple[int, ...]] = [
        (os.POSIX_SPAWN_DUP2, stdin, 0),
        (os.POSIX_SPAWN_DUP2, out, 1),
        (os.POSIX_SPAWN_DUP2, err, 2),
    ]
    actions += [(os.POSIX_SPAWN_CLOSE, fd) for fd in _inherited_fds()]
    previous = os.getcwd() if inv.cwd is not None else None
    if inv.cwd is not None:
        os.chdir(inv.cwd)
    try:
        # Looked up from the executor's directory: PATH entries may be relative ("." or "").
        executable = resolve_command(inv.argv[0], inv.env)
        return os.posix_spawn(
            executable,
            inv.argv,
            inv.env,
            file_actions=actions,
            setsid=True,
            setsigdef=_RESTORED,
        )
    finally:
        if previous is not None:
            os.chdir(previous)


def _inherited_fds() -> list[int]:
    """Open fds above 2 that an exec would keep (Popen's ``close_fds=True`` closes them)."""
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return []
    fds = []
    for name in names:
        fd = int(name)
        if fd > 2:
            try:
                if os.get_inheritable(fd):
                    fds.append(fd)
            except OSError:  # the fd listdir itself used, closed meanwhile
                pass
    return fds
