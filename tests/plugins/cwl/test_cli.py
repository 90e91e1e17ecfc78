"""``tesp-cwl`` end to end: the real CLI in a subprocess, against a real ``tesp serve``
(embedded Pulsar, default runtime) and in embedded mode."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TespProcess

DATA = Path(__file__).parent / "data"


@dataclass
class Run:
    returncode: int
    output: dict[str, Any]
    stderr: str


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cwl-work")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, workdir: Path) -> Iterator[TespProcess]:
    """A tesp serve whose file roots cover the test data and the CWL work directories."""
    base = tmp_path_factory.mktemp("cwl-tesp")
    proc = TespProcess(
        data_dir=base / "data", storage=workdir, extra_args=["--file-root", str(DATA)]
    ).start()
    yield proc
    proc.stop()


def tesp_cwl(
    workdir: Path, name: str, tool: str, job: dict[str, Any], *options: str, tes: str | None
) -> Run:
    """Run ``python -m tesp_cwl`` with its outputs and temporary files under ``workdir``."""
    run_dir = workdir / name
    tmp = run_dir / "tmp"
    tmp.mkdir(parents=True)
    job_file = run_dir / "job.json"
    job_file.write_text(json.dumps(job))
    target = ["--tes", tes] if tes else ["--tesp-data-dir", str(run_dir / "tesp")]
    cmd = [
        sys.executable,
        "-m",
        "tesp_cwl",
        *target,
        "--outdir",
        str(run_dir / "out"),
        "--tmpdir-prefix",
        f"{tmp}/",
        "--tmp-outdir-prefix",
        f"{tmp}/",
        *options,
        str(DATA / tool),
        str(job_file),
    ]
    proc = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "TMPDIR": str(tmp)},
        cwd=run_dir,
    )
    output = json.loads(proc.stdout) if proc.stdout.strip() else {}
    return Run(proc.returncode, output, proc.stderr)


def file_at(location: str) -> Path:
    assert location.startswith("file://"), location
    return Path(location.removeprefix("file://"))


def data_file(name: str) -> dict[str, str]:
    return {"class": "File", "location": (DATA / name).as_uri()}


# -- against a real tesp serve ---------------------------------------------------------------


def test_stdin_stdout_stderr_env(server: TespProcess, workdir: Path) -> None:
    run = tesp_cwl(
        workdir,
        "cat-env",
        "cat-env.cwl",
        {"text": data_file("lower.txt"), "greeting": "hello"},
        tes=server.url,
    )
    assert run.returncode == 0, run.stderr
    shout = run.output["shout"]
    assert shout["basename"] == "shout.txt"
    assert file_at(shout["location"]).read_text() == (
        "hello from /cwl/outdir with tmp /cwl/tmp\nSHOUT ME\n"
    )
    assert shout["size"] == len("hello from /cwl/outdir with tmp /cwl/tmp\nSHOUT ME\n")
    assert run.output["errors"]["size"] == 0


def test_staging_initialworkdir_and_directories(server: TespProcess, workdir: Path) -> None:
    job = {
        "data": data_file("two-lines.txt"),
        "folder": {"class": "Directory", "location": (DATA / "folder").as_uri()},
        "literal": {"class": "File", "basename": "lit.txt", "contents": "literal text\n"},
        "name": "tesp",
    }
    run = tesp_cwl(workdir, "staging", "staging.cwl", job, tes=server.url)
    assert run.returncode == 0, run.stderr
    result = run.output["result"]
    assert result["class"] == "Directory"
    listing = {entry["basename"]: entry for entry in result["listing"]}
    assert set(listing) == {"listing.txt", "joined.txt", "config.txt", "empty"}
    assert listing["empty"]["class"] == "Directory"
    assert listing["empty"]["listing"] == []
    root = file_at(result["location"])
    assert (root / "listing.txt").read_text() == "a.txt\nb.txt\n"
    assert (root / "joined.txt").read_text() == "a\nb\nliteral text\n"
    assert (root / "config.txt").read_text() == "name=tesp\n"
    assert (root / "empty").is_dir()


@pytest.mark.parametrize(("code", "returncode"), [(0, 0), (3, 0), (5, 1), (7, 1)])
def test_exit_codes(server: TespProcess, workdir: Path, code: int, returncode: int) -> None:
    run = tesp_cwl(workdir, f"codes-{code}", "codes.cwl", {"code": code}, tes=server.url)
    assert run.returncode == returncode, run.stderr
    if returncode == 0:
        assert file_at(run.output["ran"]["location"]).read_text() == "ran\n"
    elif code == 5:
        assert "temporaryFail" in run.stderr
    else:
        assert "permanentFail" in run.stderr


def test_parallel_workflow(server: TespProcess, workdir: Path) -> None:
    job = {"first": data_file("three-lines.txt"), "second": data_file("two-lines.txt")}
    run = tesp_cwl(workdir, "workflow", "workflow.cwl", job, "--parallel", tes=server.url)
    assert run.returncode == 0, run.stderr
    assert run.output == {"first_count": 3, "total": 5}


def test_unsupported_requirement_exits_33(server: TespProcess, workdir: Path) -> None:
    run = tesp_cwl(workdir, "unsupported", "unsupported.cwl", {}, tes=server.url)
    assert run.returncode == 33, run.stderr
    assert "dockerFile" in run.stderr


def test_remote_http_input_passed_through(server: TespProcess, workdir: Path) -> None:
    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(DATA), **kwargs)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/three-lines.txt"
        run = tesp_cwl(
            workdir,
            "remote",
            "remote.cwl",
            {"page": {"class": "File", "location": url}},
            tes=server.url,
        )
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert run.returncode == 0, run.stderr
    assert file_at(run.output["copy"]["location"]).read_text() == "one\ntwo\nthree\n"


def test_refused_input_fails(server: TespProcess, workdir: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"  # not under the server's file roots
    outside.write_text("secret\n")
    run = tesp_cwl(
        workdir,
        "refused",
        "remote.cwl",
        {"page": {"class": "File", "location": outside.as_uri()}},
        tes=server.url,
    )
    assert run.returncode == 1
    assert "allowed roots" in run.stderr


# -- embedded TESP ---------------------------------------------------------------------------


def test_embedded_tool(workdir: Path) -> None:
    run = tesp_cwl(
        workdir,
        "embedded-tool",
        "cat-env.cwl",
        {"text": data_file("lower.txt"), "greeting": "hi"},
        tes=None,
    )
    assert run.returncode == 0, run.stderr
    text = file_at(run.output["shout"]["location"]).read_text()
    assert text == "hi from /cwl/outdir with tmp /cwl/tmp\nSHOUT ME\n"


def test_embedded_workflow_parallel(workdir: Path) -> None:
    job = {"first": data_file("two-lines.txt"), "second": data_file("two-lines.txt")}
    run = tesp_cwl(workdir, "embedded-wf", "workflow.cwl", job, "--parallel", tes=None)
    assert run.returncode == 0, run.stderr
    assert run.output == {"first_count": 2, "total": 4}


def test_embedded_failure_is_nonzero(workdir: Path) -> None:
    run = tesp_cwl(workdir, "embedded-fail", "codes.cwl", {"code": 9}, tes=None)
    assert run.returncode == 1
    assert "permanentFail" in run.stderr
