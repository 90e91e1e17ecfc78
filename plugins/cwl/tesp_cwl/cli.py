"""``tesp-cwl``: cwltool with every CommandLineTool run as a TES task.

``tesp-cwl [--tes URL] [cwltool options] tool-or-workflow.cwl job.yml`` behaves like
``cwl-runner``: the output object as JSON on stdout, exit 0 on success, 33 for an
unsupported requirement, non-zero on any other failure. Without ``--tes`` an embedded TESP
(store, Pulsar and service in this process) runs the tasks.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import cwltool.main
from cwltool.argparser import arg_parser
from cwltool.context import LoadingContext
from cwltool.executors import JobExecutor, MultithreadedJobExecutor, SingleJobExecutor

from tesp_cwl.client import EmbeddedTes, RemoteTes, TaskClient
from tesp_cwl.paths import DEFAULT_IMAGE, OUTDIR, STAGEDIR, TMPDIR
from tesp_cwl.tool import make_tool_factory


def parser() -> argparse.ArgumentParser:
    """cwltool's argument parser plus the TES options."""
    parser = arg_parser()
    parser.prog = "tesp-cwl"
    parser.description = "Run CWL tools and workflows with each CommandLineTool as a TES task."
    group = parser.add_argument_group("TES")
    group.add_argument(
        "--tes",
        metavar="URL",
        default=os.environ.get("TESP_CWL_TES"),
        help="TES server base URL (default: an embedded TESP in this process)",
    )
    group.add_argument(
        "--tes-token",
        metavar="TOKEN",
        default=os.environ.get("TES_TOKEN"),
        help="bearer token for --tes (default: $TES_TOKEN)",
    )
    group.add_argument(
        "--tesp-data-dir",
        type=Path,
        default=None,
        help="data directory of the embedded TESP (default: a temporary directory)",
    )
    group.add_argument(
        "--tesp-file-root",
        action="append",
        default=None,
        help="file:// root the embedded TESP allows (repeatable; default: /)",
    )
    group.add_argument(
        "--tesp-runtime",
        choices=["none", "bwrap", "docker", "podman", "apptainer", "singularity"],
        default=None,
        help="executor runtime of the embedded TESP (default: bwrap where installed)",
    )
    return parser


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Parse ``CWLTOOL_OPTIONS`` and ``argv``; force the container-path layout we rely on."""
    extra = [opt for opt in os.environ.get("CWLTOOL_OPTIONS", "").split(" ") if opt]
    args = parser().parse_args(extra + argv)
    if getattr(args, "record_container_id", False):
        args.cidfile_dir = args.cidfile_dir or os.getcwd()
    if hasattr(args, "record_container_id"):
        del args.record_container_id
    # Every tool is a "container" job for cwltool, so the command line it builds uses the
    # TES paths; the image only matters on container runtimes.
    args.use_container = True
    args.default_container = args.default_container or DEFAULT_IMAGE
    args.singularity = False
    args.podman = False
    args.user_space_docker_cmd = None
    args.docker_outdir = OUTDIR
    args.docker_tmpdir = TMPDIR
    args.docker_stagedir = STAGEDIR
    return args


def make_client(args: argparse.Namespace) -> TaskClient:
    """The TES server named by ``--tes``, or a started embedded TESP."""
    if args.tes:
        return RemoteTes(args.tes, token=args.tes_token)
    return EmbeddedTes(
        args.tesp_data_dir,
        file_roots=args.tesp_file_root,
        runtime=args.tesp_runtime,
        max_in_flight=max(8, args.parallel_max or 0) if args.parallel else 8,
    )


def main(argv: list[str] | None = None) -> int:
    """Run cwltool with the TES job class; return the cwl-runner exit code."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    if args.version or args.print_supported_versions or not args.workflow:
        return int(cwltool.main.main(args=args))
    # Our job lines then go through cwltool's handler and obey --quiet/--debug like its own.
    logging.getLogger("tesp_cwl").parent = logging.getLogger("cwltool")
    client = make_client(args)
    try:
        loading = LoadingContext(vars(args))
        loading.construct_tool_object = make_tool_factory(client)  # type: ignore[assignment]
        executor: JobExecutor = (
            MultithreadedJobExecutor(max_parallel=args.parallel_max)
            if args.parallel
            else SingleJobExecutor()
        )
        return int(cwltool.main.main(args=args, loadingContext=loading, executor=executor))
    finally:
        close = getattr(client, "close", None)
        if close is not None:
            close()


if __name__ == "__main__":
    sys.exit(main())
