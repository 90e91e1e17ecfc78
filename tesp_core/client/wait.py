"""``tesp wait``: poll tasks until they end, with a live table on a terminal.

The exit status says how they ended (docs/cli.md): 0 when all are COMPLETE, else the
worst outcome — SYSTEM_ERROR (and PREEMPTED) over EXECUTOR_ERROR over CANCELED over a
timeout. A server that stops answering (a restart) is polled again with back-off for
``retry_for`` seconds before the wait gives up (exit 2).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

from rich.console import Console
from rich.live import Live
from rich.table import Table

from tesp_core.client.errors import ClientError, ExitCode, HttpError, UnreachableError
from tesp_core.client.http import TesClient
from tesp_core.client.parser import DEFAULT_RETRY_FOR
from tesp_core.client.render import plain, state_text

TERMINAL = frozenset({"COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR", "CANCELED", "PREEMPTED"})

# Statuses a proxy answers while the server behind it restarts.
_TRANSIENT_STATUS = frozenset({502, 503, 504})

# Worst first: the first outcome any task had decides the exit status.
_SEVERITY: list[tuple[str, ExitCode]] = [
    ("SYSTEM_ERROR", ExitCode.SYSTEM_ERROR),
    ("PREEMPTED", ExitCode.SYSTEM_ERROR),
    ("EXECUTOR_ERROR", ExitCode.EXECUTOR_ERROR),
    ("CANCELED", ExitCode.CANCELED),
]


@dataclass
class Watched:
    """One task being waited for and what was last seen of it."""

    task_id: str
    state: str = "UNKNOWN"
    since: float = 0.0

    @property
    def done(self) -> bool:
        return self.state in TERMINAL


def is_transient(exc: ClientError) -> bool:
    """Whether polling again later may succeed (the server restarting, a proxy's 503)."""
    if isinstance(exc, UnreachableError):
        return exc.transient
    return isinstance(exc, HttpError) and exc.status in _TRANSIENT_STATUS


def retry_pause(failures: int) -> float:
    """Seconds before the next try after ``failures`` failed polls in a row: 0.5 s to 5 s."""
    return float(min(5.0, 0.5 * 2 ** max(failures - 1, 0)))


def exit_code_for(states: Sequence[str], timed_out: bool) -> ExitCode:
    """The exit status of a wait that ended with these states."""
    for state, code in _SEVERITY:
        if state in states:
            return code
    if timed_out or any(s not in TERMINAL for s in states):
        return ExitCode.TIMEOUT
    return ExitCode.OK


def progress_table(watched: Sequence[Watched], started: float, now: float) -> Table:
    """The live view: each task's state and how long it has been waited for."""
    done = sum(w.done for w in watched)
    table = Table(title=f"{done}/{len(watched)} tasks ended  {now - started:5.1f} s", box=None)
    table.add_column("ID", no_wrap=True)
    table.add_column("STATE", no_wrap=True)
    table.add_column("IN STATE", justify="right", no_wrap=True)
    for w in watched:
        spinner = "" if w.done else " …"
        table.add_row(plain(w.task_id), state_text(w.state) + spinner, f"{now - w.since:.0f} s")
    return table


class Waiter:
    """Polls each unfinished task's MINIMAL view; ``live`` draws the table on ``console``."""

    def __init__(
        self,
        client: TesClient,
        task_ids: Sequence[str],
        *,
        interval: float = 1.0,
        retry_for: float = DEFAULT_RETRY_FOR,
        notice: Callable[[str], None] = lambda _: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.clock = clock
        self.interval = interval
        self.retry_for = retry_for
        self.notice = notice
        self.failures = 0
        self.failing_since = 0.0
        now = clock()
        # Keep the order given, but each id once.
        self.watched = [Watched(t, since=now) for t in dict.fromkeys(task_ids)]

    def poll(self) -> None:
        """Fetch the state of every task that has not ended yet."""
        for w in self.watched:
            if w.done:
                continue
            state = str(self.client.get_task(w.task_id, "MINIMAL").get("state") or "UNKNOWN")
            if state != w.state:
                w.state, w.since = state, self.clock()

    def try_poll(self) -> bool:
        """Poll once; False after a transient failure inside the retry window (else raise)."""
        try:
            self.poll()
        except ClientError as exc:
            now = self.clock()
            if not is_transient(exc) or self.retry_for <= 0:
                raise
            if self.failures == 0:
                self.failing_since = now
                self.notice(f"{exc}; trying again for up to {self.retry_for:g} s")
            elif now - self.failing_since >= self.retry_for:
                raise
            self.failures += 1
            return False
        if self.failures:
            self.notice(f"reached TESP again after {self.failures} failed polls")
            self.failures = 0
        return True

    def run(self, timeout: float | None, console: Console | None) -> ExitCode:
        """Wait until all ended or ``timeout`` passed; draw live on ``console`` if given."""
        started = self.clock()
        deadline = None if timeout is None else started + timeout
        live: AbstractContextManager[object] = nullcontext()
        if console is not None:
            live = Live(
                progress_table(self.watched, started, started),
                console=console,
                refresh_per_second=4,
                transient=False,
            )
        polls = 0
        with live as shown:
            while True:
                polled = self.try_poll()
                now = self.clock()
                if isinstance(shown, Live):
                    shown.update(progress_table(self.watched, started, now), refresh=True)
                if all(w.done for w in self.watched):
                    break
                if deadline is not None and now >= deadline:
                    break
                # Short tasks end within a second: poll fast first, then back off.
                pause = min(self.interval, 0.1 * 1.5**polls)
                polls += 1
                if not polled:
                    left = self.failing_since + self.retry_for - now
                    pause = max(min(retry_pause(self.failures), left), 0.05)
                if deadline is not None:
                    pause = min(pause, deadline - now)
                time.sleep(max(pause, 0.0))
        timed_out = not all(w.done for w in self.watched)
        return exit_code_for([w.state for w in self.watched], timed_out)
