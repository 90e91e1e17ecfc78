"""What a failed TES task tells the Snakemake user: a short message and a full log. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

TAIL_LINES = 20


@dataclass(frozen=True)
class Failure:
    """A failed task as Snakemake reports it."""

    message: str
    """State, exit code and the tail of stderr / system logs, for the error report."""
    log: str
    """Everything the TES returned about the run, for the log file."""
    exit_code: int | None


def describe_failure(task: dict[str, Any], tail_lines: int = TAIL_LINES) -> Failure:
    """Summarise a terminal, unsuccessful task in its FULL view."""
    state = str(task.get("state", "UNKNOWN"))
    attempts = task.get("logs") or []
    last = attempts[-1] if attempts else {}
    executor_logs = last.get("logs") or []
    failing = next(
        (e for e in reversed(executor_logs) if e.get("exit_code") not in (0, None)),
        executor_logs[-1] if executor_logs else {},
    )
    exit_code = failing.get("exit_code")
    system_logs = [str(s) for s in last.get("system_logs") or []]
    parts = [f"TES task {task.get('id')} ended {state}"]
    if exit_code is not None:
        parts[0] += f" (exit code {exit_code})"
    parts[0] += "."
    stderr = str(failing.get("stderr") or "")
    if stderr.strip():
        parts.append(f"Last lines of stderr:\n{_tail(stderr, tail_lines)}")
    if system_logs:
        parts.append(f"System logs:\n{_tail(chr(10).join(system_logs), tail_lines)}")
    return Failure("\n".join(parts) + "\n", full_log(task), exit_code)


def full_log(task: dict[str, Any]) -> str:
    """Every executor's stdout and stderr and the system logs of every attempt, as text."""
    lines = [f"task {task.get('id')}  name {task.get('name')}  state {task.get('state')}"]
    for n, attempt in enumerate(task.get("logs") or []):
        start, end = attempt.get("start_time") or "?", attempt.get("end_time") or "?"
        lines.append(f"== attempt {n}: {start} .. {end}")
        for i, exlog in enumerate(attempt.get("logs") or []):
            lines.append(f"-- executor {i}: exit code {exlog.get('exit_code')}")
            for stream in ("stdout", "stderr"):
                text = str(exlog.get(stream) or "")
                lines.append(f"---- {stream} ({len(text)} characters)")
                if text:
                    lines.append(text.rstrip("\n"))
        for entry in attempt.get("system_logs") or []:
            lines.append(f"-- system log: {entry}")
    return "\n".join(lines) + "\n"


def _tail(text: str, lines: int) -> str:
    kept = text.rstrip("\n").splitlines()[-lines:]
    return "\n".join(f"    {line}" for line in kept)
