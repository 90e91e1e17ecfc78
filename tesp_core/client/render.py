"""Human output of the client commands (rich tables) and their ``--json`` twin.

Every string that came from a task (names, commands, logs) is rendered as plain
:class:`rich.text.Text`, so ``[bold]`` in a task name is shown, not interpreted.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

STATE_STYLES = {
    "COMPLETE": "green",
    "EXECUTOR_ERROR": "red",
    "SYSTEM_ERROR": "bold red",
    "CANCELED": "yellow",
    "CANCELING": "yellow",
    "PREEMPTED": "yellow",
    "RUNNING": "cyan",
    "INITIALIZING": "blue",
    "QUEUED": "blue",
}


def stdout_console() -> Console:
    """The console of human output: stdout, wide enough for a task id when piped."""
    return Console(highlight=False, width=None if sys.stdout.isatty() else 160)


def print_json(value: object) -> None:
    """The machine-readable answer: one JSON document on stdout."""
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=False) + "\n")
    sys.stdout.flush()


def state_text(state: str | None) -> Text:
    """A task state, coloured by what it means."""
    value = state or "UNKNOWN"
    return Text(value, style=STATE_STYLES.get(value, ""))


def task_table(tasks: Iterable[Mapping[str, Any]]) -> Table:
    """One row per task: id, state, name, creation time."""
    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("ID", no_wrap=True)
    table.add_column("STATE", no_wrap=True)
    table.add_column("NAME", overflow="fold")
    table.add_column("CREATED", no_wrap=True)
    for task in tasks:
        table.add_row(
            Text(str(task.get("id", ""))),
            state_text(task.get("state")),
            Text(str(task.get("name") or "")),
            Text(str(task.get("creation_time") or "")),
        )
    return table


def _fields_table(rows: Iterable[tuple[str, str | Text]]) -> Table:
    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for key, value in rows:
        table.add_row(key, value if isinstance(value, Text) else Text(value))
    return table


def _io_rows(task: Mapping[str, Any]) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    for item in task.get("inputs") or []:
        source = item.get("url") or (
            f"(inline, {len(item['content'])} chars)" if item.get("content") else "(inline)"
        )
        rows.append(("input", f"{source} -> {item.get('path', '')}"))
    for item in task.get("outputs") or []:
        rows.append(("output", f"{item.get('path', '')} -> {item.get('url', '')}"))
    return rows


def _executor_rows(task: Mapping[str, Any]) -> list[tuple[str, str]]:
    rows = []
    for i, ex in enumerate(task.get("executors") or []):
        # json.dumps shows the argv exactly (quotes, spaces), never as a joined shell line.
        rows.append((f"executor {i}", f"{ex.get('image', '')} {json.dumps(ex.get('command'))}"))
    return rows


def _log_blocks(task: Mapping[str, Any]) -> list[RenderableType]:
    blocks: list[RenderableType] = []
    for attempt in task.get("logs") or []:
        for i, log in enumerate(attempt.get("logs") or []):
            head = f"executor {i}: exit code {log.get('exit_code')}"
            blocks.append(Text(head, style="bold"))
            for stream in ("stdout", "stderr"):
                if log.get(stream):
                    blocks.append(Text(f"--- {stream} ---", style="dim"))
                    blocks.append(Text(str(log[stream]).rstrip("\n")))
        for line in attempt.get("system_logs") or []:
            blocks.append(Text(f"system: {line}", style="yellow"))
    return blocks


def task_detail(task: Mapping[str, Any]) -> RenderableType:
    """Everything a view of one task holds, readable: fields, I/O, executors, logs."""
    rows: list[tuple[str, str | Text]] = [
        ("id", str(task.get("id", ""))),
        ("state", state_text(task.get("state"))),
    ]
    for key in ("name", "description", "creation_time"):
        if task.get(key):
            rows.append((key, str(task[key])))
    rows.extend(_executor_rows(task))
    rows.extend(_io_rows(task))
    for key, value in (task.get("tags") or {}).items():
        rows.append(("tag", f"{key}={value}"))
    if task.get("resources"):
        rows.append(("resources", json.dumps(task["resources"])))
    return Group(_fields_table(rows), *_log_blocks(task))
