"""The client commands of ``tesp``: each takes parsed arguments and returns an exit status.

Expected failures are :class:`ClientError`; :func:`run_client_command` prints them as one
line on stderr (credentials scrubbed) and returns their exit code.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.text import Text

from tesp_core.client.config import ClientConfig, resolve_config
from tesp_core.client.errors import ClientError, ExitCode, UsageError
from tesp_core.client.http import TesClient
from tesp_core.client.render import (
    plain,
    print_json,
    state_text,
    stdout_console,
    task_detail,
    task_table,
)
from tesp_core.client.safe_text import one_line
from tesp_core.client.task_spec import RunSpec, build_task, parse_task_file, split_pair
from tesp_core.client.wait import TERMINAL, Waiter


def _read_secret_line() -> str:
    line = sys.stdin.readline().rstrip("\r\n")
    if not line:
        raise UsageError("--password-stdin: no password on stdin")
    return line


def client_config(args: argparse.Namespace) -> ClientConfig:
    """The effective client configuration of these arguments (flags > env > file)."""
    if args.password is not None or args.token is not None:
        print(
            "tesp: warning: a password or token on the command line is visible to other "
            "users (ps); prefer TESP_PASSWORD / TESP_TOKEN or --password-stdin",
            file=sys.stderr,
        )
    password = args.password
    if args.password_stdin:
        if getattr(args, "file", None) == "-":
            raise UsageError("--password-stdin cannot be used with a task read from stdin (-)")
        password = _read_secret_line()
    flags = {"url": args.url, "user": args.user, "password": password, "token": args.token}
    return resolve_config(flags, config_file=args.client_config)


def _wait_or_print(client: TesClient, args: argparse.Namespace, task_id: str) -> int:
    if not args.wait:
        if args.json:
            print_json({"id": task_id})
        else:
            print(one_line(task_id), flush=True)
        return ExitCode.OK
    if not args.json:
        print(one_line(task_id), flush=True)
    # stdout keeps only the id (id=$(tesp run --wait ...)); the outcome goes to stderr.
    return _wait(client, args, [task_id], summary_to_stderr=True)


def _seconds(flag: str, value: float | None, *, zero_ok: bool) -> None:
    if value is None:
        return
    if not math.isfinite(value):
        raise UsageError(f"{flag}: must be a finite number of seconds (got {value})")
    if value < 0 or (value == 0 and not zero_ok):
        least = "0 or more" if zero_ok else "more than 0"
        raise UsageError(f"{flag}: must be {least} seconds (got {value:g})")


def check_wait_flags(args: argparse.Namespace) -> None:
    """Refuse bad ``--timeout`` / ``--interval`` / ``--retry-for`` before anything is sent."""
    _seconds("--timeout", args.timeout, zero_ok=True)
    _seconds("--interval", args.interval, zero_ok=False)
    _seconds("--retry-for", args.retry_for, zero_ok=True)


def cmd_submit(client: TesClient, args: argparse.Namespace) -> int:
    """``tesp submit FILE|-``: POST the file's tesTask; print the new id."""
    check_wait_flags(args)
    if args.file == "-":
        name, text = "stdin", sys.stdin.read()
    else:
        try:
            name, text = args.file, Path(args.file).read_text(encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"{args.file}: cannot read it ({exc.strerror})") from None
        except UnicodeDecodeError:
            raise UsageError(f"{args.file}: not UTF-8 text") from None
    task = parse_task_file(name, text)
    return _wait_or_print(client, args, client.create_task(task))


def cmd_run(client: TesClient, args: argparse.Namespace) -> int:
    """``tesp run --image IMG ... -- CMD ARGS``: one executor, argv kept as given."""
    check_wait_flags(args)
    command = list(args.argv)
    if command[:1] == ["--"]:
        command = command[1:]
    spec = RunSpec(
        image=args.image,
        command=command,
        inputs=args.inputs,
        outputs=args.outputs,
        tags=args.tags,
        env=args.env,
        name=args.name,
        workdir=args.workdir,
        cpu=args.cpu,
        ram=args.ram,
        disk=args.disk,
    )
    return _wait_or_print(client, args, client.create_task(build_task(spec)))


def cmd_get(client: TesClient, args: argparse.Namespace) -> int:
    """``tesp get ID``: one task (default view FULL)."""
    task = client.get_task(args.id, args.view)
    if args.json:
        print_json(task)
    else:
        stdout_console().print(task_detail(task))
    return ExitCode.OK


def _list_params(args: argparse.Namespace) -> dict[str, Any]:
    params: dict[str, Any] = {"view": args.view}
    if args.state:
        params["state"] = args.state
    if args.name_prefix:
        params["name_prefix"] = args.name_prefix
    if args.page_size is not None:
        if args.page_size < 1:
            raise UsageError(f"--page-size: must be 1 or more (got {args.page_size})")
        params["page_size"] = args.page_size
    if args.page_token:
        params["page_token"] = args.page_token
    pairs = [split_pair("--tag", t, value_required=False) for t in args.tags]
    if pairs:
        params["tag_key"] = [k for k, _ in pairs]
        params["tag_value"] = [v for _, v in pairs]
    return params


def cmd_list(client: TesClient, args: argparse.Namespace) -> int:
    """``tesp list``: one page of tasks (``--all``: every page)."""
    params = _list_params(args)
    if args.all:
        page: dict[str, Any] = {"tasks": list(client.list_all(params))}
    else:
        page = client.list_page(params)
    if args.json:
        print_json(page)
        return ExitCode.OK
    console = stdout_console()
    console.print(task_table(page.get("tasks", [])))
    if page.get("next_page_token"):
        console.print(
            f"more tasks: --page-token {one_line(page['next_page_token'])} (or --all)",
            style="dim",
            markup=False,
        )
    return ExitCode.OK


def _cancel_one(client: TesClient, task_id: str) -> str | None:
    """Cancel one task; the state it had already ended in (left unchanged), else None."""
    before = str(client.get_task(task_id).get("state") or "UNKNOWN")
    if before in TERMINAL:
        return before
    client.cancel_task(task_id)
    # It may have ended between the two requests; the server then left it as it was.
    after = str(client.get_task(task_id).get("state") or "UNKNOWN")
    return after if after in TERMINAL - {"CANCELED"} else None


def cmd_cancel(client: TesClient, args: argparse.Namespace) -> int:
    """``tesp cancel ID...``: cancel each; report every failure, not only the first."""
    canceled: list[str] = []
    unchanged: dict[str, str] = {}
    failed: dict[str, str] = {}
    worst: int = ExitCode.OK
    for task_id in dict.fromkeys(args.ids):
        try:
            ended = _cancel_one(client, task_id)
        except ClientError as exc:
            failed[task_id] = str(exc)
            worst = max(worst, exc.exit_code)
            print(f"tesp: cancel {one_line(task_id)}: {one_line(exc)}", file=sys.stderr)
            continue
        if ended is None:
            canceled.append(task_id)
        else:
            unchanged[task_id] = ended
    if args.json:
        print_json({"canceled": canceled, "unchanged": unchanged, "failed": failed})
    else:
        for task_id in dict.fromkeys(args.ids):
            if task_id in canceled:
                print(f"canceled {one_line(task_id)}")
            elif task_id in unchanged:
                print(f"{one_line(task_id)}: already {one_line(unchanged[task_id])}, unchanged")
    return worst


def cmd_wait(client: TesClient, args: argparse.Namespace) -> int:
    """``tesp wait ID...``: until every task ended; the exit status says how."""
    check_wait_flags(args)
    return _wait(client, args, args.ids)


def _wait(
    client: TesClient,
    args: argparse.Namespace,
    task_ids: list[str],
    *,
    summary_to_stderr: bool = False,
) -> int:
    # The live table goes to stderr, so stdout stays what a script may capture.
    live = Console(stderr=True, highlight=False)
    waiter = Waiter(
        client,
        task_ids,
        interval=args.interval,
        retry_for=args.retry_for,
        # Printed through the live console: rich keeps its table below the notice.
        notice=lambda text: live.print(plain(f"tesp: {text}"), soft_wrap=True),
    )
    code = waiter.run(args.timeout, live if live.is_terminal and not args.json else None)
    states = {w.task_id: w.state for w in waiter.watched}
    if args.json:
        print_json({"tasks": [{"id": i, "state": s} for i, s in states.items()], "exit": code})
    elif not live.is_terminal:
        out = live if summary_to_stderr else stdout_console()
        for task_id, state in states.items():
            out.print(Text.assemble(plain(task_id), " ", state_text(state)))
    return int(code)


HANDLERS: dict[str, Callable[[TesClient, argparse.Namespace], int]] = {
    "submit": cmd_submit,
    "run": cmd_run,
    "get": cmd_get,
    "list": cmd_list,
    "cancel": cmd_cancel,
    "wait": cmd_wait,
}


def run_client_command(args: argparse.Namespace) -> int:
    """Dispatch one client command; expected errors become one line and an exit code."""
    config: ClientConfig | None = None
    try:
        config = client_config(args)
        return HANDLERS[args.command](TesClient(config), args)
    except ClientError as exc:
        message = str(exc)
        for secret in config.secrets if config else []:
            message = message.replace(secret, "***")
        print(f"tesp: {one_line(message)}", file=sys.stderr)
        return int(exc.exit_code)
    except KeyboardInterrupt:
        print("tesp: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `tesp list | head`: the reader left; say nothing more on the closed pipe.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
