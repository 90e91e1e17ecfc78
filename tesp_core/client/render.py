"""Human output of the client commands (rich tables) and their ``--json`` twin.

Every string that came from a task or a server (names, commands, logs) is rendered as
plain :class:`rich.text.Text`, so ``[bold]`` in a task name is shown, not interpreted, and
with its control characters escaped (:mod:`tesp_core.client.safe_text`), so an ``ESC`` in
it cannot drive the terminal.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from tesp_core.client.safe_text import block, one_line

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
    value = one_line(state or "UNKNOWN")
    return Text(value, style=STATE_STYLES.get(value, ""))


def plain(value: object) -> Text:
    """One line of untrusted text, safe to print: markup and control characters shown."""
    return Text(one_line(value))


def task_table(tasks: Iterable[Mapping[str, Any]]) -> Table:
    """One row per task: id, state, name, creation time."""
    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("ID", no_wrap=True)
    table.add_column("STATE", no_wrap=True)
    table.add_column("NAME", overflow="fold")
    table.add_column("CREATED", no_wrap=True)
    for task in tasks:
        table.add_row(
            plain(task.get("id", "")),
            state_text(task.get("state")),
            plain(task.get("name") or ""),
            plain(task.get("creation_time") or ""),
        )
    return table


def _fields_table(rows: Iterable[tuple[str, str | Text]]) -> Table:
    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for key, value in rows:
        table.add_row(key, value if isinstance(value, Text) else plain(value))
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
    for attempt in task.get("logs") or []:
        for out in attempt.get("outputs") or []:
            size = out.get("size_bytes")
            sized = f" ({size} bytes)" if size is not None else ""
            rows.append(("output file", f"{out.get('path', '')} -> {out.get('url', '')}{sized}"))
    return rows


def _argv(command: object) -> str:
    # json.dumps shows the argv exactly (quotes, spaces), never as a joined shell line; the
    # caller escapes the control characters it keeps raw (DEL, C1) with ensure_ascii off.
    return json.dumps(command, ensure_ascii=False)


def _executor_rows(task: Mapping[str, Any]) -> list[tuple[str, str]]:
    rows = []
    for i, ex in enumerate(task.get("executors") or []):
        rows.append((f"executor {i}", f"{ex.get('image', '')} {_argv(ex.get('command'))}"))
        if ex.get("workdir"):
            rows.append(("  workdir", str(ex["workdir"])))
        # Values as the server gives them: TESP masks secret ones.
        for key, value in (ex.get("env") or {}).items():
            rows.append(("  env", f"{key}={value}"))
    return rows


def _log_blocks(task: Mapping[str, Any]) -> list[RenderableType]:
    blocks: list[RenderableType] = []
    for attempt in task.get("logs") or []:
        for i, log in enumerate(attempt.get("logs") or []):
            head = f"executor {i}: exit code {one_line(log.get('exit_code'))}"
            blocks.append(Text(head, style="bold"))
            for stream in ("stdout", "stderr"):
                if log.get(stream):
                    blocks.append(Text(f"--- {stream} ---", style="dim"))
                    blocks.append(Text(block(log[stream]).rstrip("\n")))
        for line in attempt.get("system_logs") or []:
            blocks.append(Text(f"system: {block(line)}", style="yellow"))
    return blocks


def task_detail(task: Mapping[str, Any]) -> RenderableType:
    """Everything a view of one task holds, readable: fields, I/O, executors, logs."""
    rows: list[tuple[str, str | Text]] = [
        ("id", str(task.get("id", ""))),
        ("state", state_text(task.get("state"))),
    ]
    for key in ("name", "description", "creation_time"):
        if task.get(key):
            # A description may span lines; the other fields are one line each.
            value = Text(block(task[key])) if key == "description" else str(task[key])
            rows.append((key, value))
    rows.extend(_executor_rows(task))
    rows.extend(_io_rows(task))
    for key, value in (task.get("tags") or {}).items():
        rows.append(("tag", f"{key}={value}"))
    if task.get("resources"):
        rows.append(("resources", json.dumps(task["resources"], ensure_ascii=False)))
    return Group(_fields_table(rows), *_log_blocks(task))
