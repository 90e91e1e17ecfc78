"""The argparse definitions of the client commands (``submit``, ``run``, ``get``, ...).

Connection and output flags sit on every client sub-command (``tesp get ID --json``), not
on ``tesp`` itself, so they may follow the command as users type them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

# Here, not in wait.py (which uses it too): wait.py pulls in requests and rich.
DEFAULT_RETRY_FOR = 30.0

VIEWS = ("MINIMAL", "BASIC", "FULL")
STATES = (
    "UNKNOWN",
    "QUEUED",
    "INITIALIZING",
    "RUNNING",
    "PAUSED",
    "COMPLETE",
    "EXECUTOR_ERROR",
    "SYSTEM_ERROR",
    "CANCELED",
    "CANCELING",
    "PREEMPTED",
)
CLIENT_COMMANDS = ("submit", "run", "get", "list", "cancel", "wait")


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("server and output")
    group.add_argument("--url", help="TESP server URL (or TESP_URL; default http://127.0.0.1:8000)")
    group.add_argument("--user", help="HTTP Basic user (or TESP_USER)")
    group.add_argument(
        "--password",
        help="HTTP Basic password (visible to other users in ps: prefer TESP_PASSWORD "
        "or --password-stdin)",
    )
    group.add_argument(
        "--password-stdin", action="store_true", help="read the password from stdin's first line"
    )
    group.add_argument("--token", help="bearer token (visible in ps: prefer TESP_TOKEN)")
    group.add_argument(
        "--client-config",
        type=Path,
        metavar="FILE",
        help="client TOML file (or TESP_CLIENT_CONFIG; default ~/.config/tesp/client.toml)",
    )
    group.add_argument("--json", action="store_true", help="machine-readable JSON on stdout")
    return common


def _add_wait_flags(parser: argparse.ArgumentParser, *, optional: bool) -> None:
    if optional:
        parser.add_argument("--wait", action="store_true", help="wait until the task ends")
    parser.add_argument(
        "--timeout", type=float, metavar="S", help="stop waiting after S seconds (exit 7)"
    )
    parser.add_argument(
        "--interval", type=float, default=2.0, metavar="S", help="slowest polling (default 2)"
    )
    parser.add_argument(
        "--retry-for",
        type=float,
        default=DEFAULT_RETRY_FOR,
        metavar="S",
        help="keep polling a server that stopped answering for S seconds (default 30)",
    )


def _add_run(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    run = sub.add_parser(
        "run",
        parents=[common],
        help="run one command as a task: tesp run --image IMG [flags] -- CMD ARGS...",
    )
    run.add_argument("--image", required=True, help="the executor's container image")
    run.add_argument(
        "-i", "--input", action="append", default=[], metavar="URL:PATH", dest="inputs"
    )
    run.add_argument(
        "-o", "--output", action="append", default=[], metavar="PATH:URL", dest="outputs"
    )
    run.add_argument("--name", help="task name")
    run.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE", dest="tags")
    run.add_argument("--env", action="append", default=[], metavar="KEY=VALUE")
    run.add_argument("--workdir", metavar="PATH", help="the executor's working directory")
    run.add_argument("--cpu", type=int, metavar="N", help="CPU cores")
    run.add_argument("--ram", type=float, metavar="GB", help="RAM in GB")
    run.add_argument("--disk", type=float, metavar="GB", help="disk in GB")
    _add_wait_flags(run, optional=True)
    run.add_argument(
        "argv", nargs=argparse.REMAINDER, metavar="-- CMD ARGS", help="the command, after --"
    )


def add_client_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the client sub-commands and ``config show`` on ``tesp``'s sub-parsers."""
    common = _common()
    submit = sub.add_parser("submit", parents=[common], help="submit a task JSON file (- = stdin)")
    submit.add_argument("file", help="a tesTask JSON file, or - for stdin")
    _add_wait_flags(submit, optional=True)
    _add_run(sub, common)
    get = sub.add_parser("get", parents=[common], help="show one task")
    get.add_argument("id")
    get.add_argument("--view", choices=VIEWS, default="FULL", type=str.upper)
    lst = sub.add_parser("list", parents=[common], help="list tasks, newest first")
    lst.add_argument("--state", choices=STATES, type=str.upper)
    lst.add_argument("--name-prefix", metavar="P")
    lst.add_argument("--tag", action="append", default=[], metavar="KEY[=VALUE]", dest="tags")
    lst.add_argument("--view", choices=VIEWS, default="BASIC", type=str.upper)
    lst.add_argument("--page-size", type=int, metavar="N")
    lst.add_argument("--page-token", metavar="T")
    lst.add_argument("--all", action="store_true", help="follow every page")
    cancel = sub.add_parser("cancel", parents=[common], help="cancel tasks")
    cancel.add_argument("ids", nargs="+", metavar="ID")
    wait = sub.add_parser("wait", parents=[common], help="wait until tasks end (exit status!)")
    wait.add_argument("ids", nargs="+", metavar="ID")
    _add_wait_flags(wait, optional=False)
    config = sub.add_parser("config", help="inspect the server's configuration")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    show = config_sub.add_parser("show", help="the effective server settings, secrets masked")
    show.add_argument("--config", type=Path, help="a TOML settings file (or TESP_CONFIG)")
    show.add_argument("--json", action="store_true", help="JSON instead of TOML")
