"""The ``tesp`` command: ``tesp serve`` runs a TES server with an embedded Pulsar."""

from __future__ import annotations

import argparse
import errno
import ipaddress
import logging
import signal
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tesp_core import __version__

if TYPE_CHECKING:
    from tesp_core.config import Settings

log = logging.getLogger("tesp")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _listen_socket(host: str, port: int) -> socket.socket:
    """A bound socket for ``host:port`` (uvicorn listens on it); OSError when it cannot bind."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


def _bind_error(host: str, port: int, exc: OSError) -> str:
    """The one line ``tesp serve`` prints when it cannot listen."""
    reason = {
        errno.EADDRINUSE: "address already in use",
        errno.EACCES: "permission denied",
        errno.EADDRNOTAVAIL: "address not available on this machine",
    }.get(exc.errno or 0, exc.strerror or str(exc))
    return f"tesp: cannot listen on {host}:{port}: {reason}"


def serve(settings: Settings) -> int:
    """Run the server until SIGINT/SIGTERM; stop Pulsar and the dispatcher cleanly."""
    import uvicorn

    from tesp_core.errors import BackendError, InvalidSettingError
    from tesp_core.logs import setup_logging
    from tesp_core.runtime import Tesp
    from tesp_core.server import create_app
    from tesp_core.server.auth import build_authenticator

    setup_logging(settings.log_format, settings.log_level)
    if settings.auth_mode == "none" and not _is_loopback(settings.host):
        print(
            f"tesp: refusing to listen on {settings.host}: authentication is not configured "
            "(auth_mode 'none'), so only a loopback address (127.0.0.1, ::1, localhost) is "
            "allowed",
            file=sys.stderr,
        )
        return 2
    try:
        build_authenticator(settings)
    except ValueError as exc:
        print(f"tesp: invalid authentication settings: {exc}", file=sys.stderr)
        return 2
    # Bound before anything starts: a busy port is one clear line, not a traceback.
    try:
        sock = _listen_socket(settings.host, settings.port)
    except OSError as exc:
        print(_bind_error(settings.host, settings.port, exc), file=sys.stderr)
        return 2
    try:
        tesp = Tesp(settings).start()
    except (InvalidSettingError, BackendError) as exc:
        # A database_url that cannot connect; a broker that refuses TESP's credentials.
        sock.close()
        print(f"tesp: {exc}", file=sys.stderr)
        return 2
    try:
        app = create_app(tesp.service, settings)
        config = uvicorn.Config(
            app,
            host=settings.host,
            port=settings.port,
            log_level=settings.log_level.lower(),
            log_config=None,  # uvicorn's loggers go to the handler setup_logging installed
            access_log=False,
            timeout_graceful_shutdown=5,
        )
        server = _server_class()(config, _banner(settings.host, sock.getsockname()[1]))
        signal.signal(signal.SIGTERM, lambda *_: setattr(server, "should_exit", True))
        server.run(sockets=[sock])
    finally:
        sock.close()
        tesp.stop()
    return 0


def _banner(host: str, port: int) -> str:
    """What ``tesp serve`` prints once it listens: the API and the dashboard address."""
    where = f"[{host}]" if ":" in host else host
    return (
        f"TESP {__version__} serving TES 1.1 at http://{where}:{port}/ga4gh/tes/v1 "
        f"(dashboard: http://{where}:{port}/dashboard/)"
    )


def _server_class() -> type[Any]:
    import uvicorn

    class _BannerServer(uvicorn.Server):
        """A uvicorn server that prints the banner only once it is listening."""

        def __init__(self, config: uvicorn.Config, banner: str) -> None:
            super().__init__(config)
            self.banner = banner

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if self.started and not self.should_exit:
                print(self.banner, flush=True)

    return _BannerServer


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tesp", description="TESP: GA4GH TES 1.1 on Pulsar")
    parser.add_argument("--version", action="version", version=f"tesp {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    srv = sub.add_parser("serve", help="run the TES server (embedded Pulsar by default)")
    srv.add_argument("--host", help="address to bind (default 127.0.0.1)")
    srv.add_argument("--port", type=int, help="port to bind (default 8000)")
    srv.add_argument("--data-dir", type=Path, help="where tasks and Pulsar jobs are kept")
    srv.add_argument("--config", type=Path, help="a TOML settings file (or TESP_CONFIG)")
    srv.add_argument("--pulsar-url", help="an external Pulsar server (default: embedded)")
    srv.add_argument("--runtime", help="none, bwrap, docker, podman, apptainer or singularity")
    srv.add_argument(
        "--file-root",
        action="append",
        dest="file_roots",
        metavar="DIR",
        help="allow file:// inputs and outputs under DIR (repeatable)",
    )
    srv.add_argument("--max-in-flight", type=int, help="Pulsar jobs kept in flight at once")
    sub.add_parser("hash-password", help="read a password on stdin, print its hash for basic_users")
    from tesp_core.client.parser import add_client_commands

    add_client_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``tesp`` console script."""
    args = _parser().parse_args(argv)
    if args.command == "config":
        from tesp_core.client.settings_view import cmd_config_show

        return cmd_config_show(args.config, args.json)
    from tesp_core.client.parser import CLIENT_COMMANDS

    if args.command in CLIENT_COMMANDS:
        # No logging set-up: client commands speak through stdout/stderr only.
        from tesp_core.client.commands import run_client_command

        return run_client_command(args)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s [%(name)s] %(message)s"
    )
    if args.command == "hash-password":
        from tesp_core.server.auth import hash_password

        password = sys.stdin.readline().rstrip("\n")
        if not password:
            print("tesp: no password on stdin", file=sys.stderr)
            return 2
        print(hash_password(password))
        return 0
    if args.command == "serve":
        overrides: dict[str, Any] = {
            "host": args.host,
            "port": args.port,
            "data_dir": args.data_dir,
            "pulsar_url": args.pulsar_url,
            "runtime": args.runtime,
            "file_roots": [str(Path(r).resolve()) for r in args.file_roots]
            if args.file_roots
            else None,
            "max_in_flight": args.max_in_flight,
        }
        # Imported here: the client commands must not pay for pydantic-settings (~0.2 s).
        from tesp_core.config import load_settings

        try:
            settings = load_settings(args.config, **overrides)
        except (ValueError, OSError) as exc:  # ValidationError, SettingsError, bad TOML
            from tesp_core.client.settings_view import settings_load_error

            line = settings_load_error(exc, args.config)
            if line is None:
                raise
            print(f"tesp: {line}", file=sys.stderr)
            return 2
        return serve(settings)
    return 2


if __name__ == "__main__":
    sys.exit(main())
