"""Running executors: one process group each, logs streamed to files, tails kept.

Memory stays constant: stdout and stderr always go to files (the TES path when given, else
the job directory's ``logs/``), and the tail for the executor log is read back with a seek.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time

from tesp_core.worker.runtimes import Invocation, build_invocation
from tesp_core.worker.spec import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator
    from types import FrameType
    from typing import IO, Any

    from tesp_core.worker.runtimes import Bind, HostFS
    from tesp_core.worker.spec import Executor, WorkerSpec
    from tesp_core.worker.staging import Layout

KILL_GRACE_SECONDS = 5.0
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


def which(name: str) -> str | None:
    """``shutil.which(name)`` for a bare command name, as it does it on POSIX.

    Written out because importing shutil (with bz2, lzma, fnmatch) cost every bwrap or
    container task's worker ~6M instructions, for this one lookup.
    """
    path = os.environ.get("PATH")
    if path is None:
        try:
            path = os.confstr("CS_PATH")
        except (AttributeError, ValueError):
            path = os.defpath
    if not path:
        return None
    seen: set[str] = set()
    for directory in path.split(os.pathsep):
        if directory in seen:
            continue
        seen.add(directory)
        candidate = os.path.join(directory, name)
        if (
            os.path.exists(candidate)
            and os.access(candidate, os.X_OK)
            and not os.path.isdir(candidate)
        ):
            return candidate
    return None


def _exit_code(returncode: int) -> int:
    # A signal death is reported the way a shell does: 128 + signal number.
    return 128 - returncode if returncode < 0 else returncode


def _killpg(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


class CancelGate:
    """The SIGTERM handler: raises :class:`Canceled`, except inside :meth:`deferred`.

    Blocking SIGTERM around ``Popen`` instead would be inherited by the executor (a signal
    mask survives exec), which then could not be terminated.
    """

    def __init__(self) -> None:
        self._depth = 0
        self._pending = False

    def handler(self, signum: int, frame: FrameType | None) -> None:
        """Install with ``signal.signal(SIGTERM, gate.handler)``."""
        # Repeats are ignored: the first one is already unwinding towards the cleanup.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if self._depth:
            self._pending = True
            return
        raise Canceled

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """Hold a cancel back so it cannot fall between spawning and recording a child."""
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
        if not self._depth and self._pending:
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
        self._proc: subprocess.Popen[bytes] | None = None
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
        inv = self.invocation(ex)
        out_path, err_path = self._log_paths(index, ex)
        log = ExecutorLog(start_time=now())
        with contextlib.ExitStack() as stack:
            stdin = self._open_stdin(ex, stack)
            out = stack.enter_context(open(out_path, "wb"))
            err = out if err_path == out_path else stack.enter_context(open(err_path, "wb"))
            try:
                log.exit_code = self._spawn_and_wait(inv, stdin, out, err)
            except Canceled:
                log.exit_code = self._finish_canceled()
                self._fill(log, out_path, err_path)
                self.interrupted = log
                raise
        self._fill(log, out_path, err_path)
        return log

    def _open_stdin(self, ex: Executor, stack: contextlib.ExitStack) -> IO[bytes] | int:
        if not ex.stdin:
            return subprocess.DEVNULL
        try:
            return stack.enter_context(open(self._layout.host(ex.stdin), "rb"))
        except OSError as exc:
            raise ExecutorSetupError(f"cannot open stdin {ex.stdin}: {exc.strerror}") from exc

    def _fill(self, log: ExecutorLog, out_path: str, err_path: str) -> None:
        log.end_time = now()
        limit = self._spec.log_tail_bytes
        log.stdout = tail(out_path, limit)
        log.stderr = tail(err_path, limit) if err_path != out_path else ""
        if self._spec.runtime.kind == "bwrap" and log.exit_code == 1:
            log.exit_code = _bwrap_exec_code(err_path) or log.exit_code

    def _spawn_and_wait(
        self, inv: Invocation, stdin: IO[bytes] | int, out: IO[bytes], err: IO[bytes]
    ) -> int:
        with CANCEL.deferred():
            try:
                self._proc = subprocess.Popen(
                    inv.argv,
                    stdin=stdin,
                    stdout=out,
                    stderr=err,
                    env=inv.env,
                    cwd=inv.cwd,
                    start_new_session=True,
                    close_fds=True,
                )
            except (FileNotFoundError, PermissionError) as exc:
                # What a shell would say and return; the task goes on as an executor failure.
                code = 127 if isinstance(exc, FileNotFoundError) else 126
                err.write(f"{inv.argv[0]}: {exc.strerror}\n".encode())
                return code
        proc = self._proc
        # Wait without reaping, then reap with cancellation deferred: a cancel (SIGTERM from
        # a scheduler hits the executor and the worker at once) raised between waitpid's
        # reaping and Popen recording the status would lose the exit code (read as 0).
        os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
        with CANCEL.deferred():
            returncode = proc.wait()
        # Whatever the command left running in its group goes with it, as in a container.
        _killpg(proc.pid, signal.SIGKILL)
        self._proc = None
        return _exit_code(returncode)

    def _finish_canceled(self) -> int | None:
        proc = self._proc
        if proc is None:
            return None
        self.kill_running()
        return _exit_code(proc.returncode) if proc.returncode is not None else None

    def kill_running(self, grace: float = KILL_GRACE_SECONDS) -> None:
        """TERM the running executor's process group, KILL it after ``grace`` seconds."""
        proc = self._proc
        if proc is None:
            return
        _killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        _killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        self._proc = None
