"""The worker zipapp stays lean: heavy standard modules are not imported by a plain task.

Every TES task starts a worker, and its imports were nearly all of its CPU cost (issue 8:
250M instructions for a ``true`` task, 123M after a first trim, then less again without
json/re, subprocess, threading, signal, contextlib and runpy). These modules were removed
from the start path; a change that brings one back fails here instead of silently slowing
every task down. bench/bench_worker.py measures the cost itself.

The modules are read from ``-X importtime``, so the child runs the exact command a job
runs and imports nothing of its own.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tesp_core.worker import build_zipapp
from tesp_core.worker.package import worker_command

# Each was imported before, directly or through another: dataclasses (inspect, ast, dis,
# tokenize), typing, pathlib (fnmatch, urllib.parse, ipaddress), logging (traceback,
# linecache, string, textwrap), datetime, glob, shutil (bz2, lzma), copy; then json (re,
# enum), subprocess (selectors, locale, threading, signal, contextlib) and runpy
# (importlib.util, contextlib, collections, functools).
HEAVY = (
    "ast",
    "bz2",
    "collections",
    "contextlib",
    "copy",
    "dataclasses",
    "datetime",
    "dis",
    "enum",
    "fnmatch",
    "functools",
    "glob",
    "importlib",
    "importlib.util",
    "inspect",
    "ipaddress",
    "json",
    "linecache",
    "locale",
    "logging",
    "lzma",
    "pathlib",
    "re",
    "runpy",
    "selectors",
    "shutil",
    "signal",
    "string",
    "subprocess",
    "tempfile",
    "textwrap",
    "threading",
    "tokenize",
    "traceback",
    "typing",
    "urllib.parse",
    "zlib",  # only to inflate archive entries: the bytecode is stored (package.py)
)

IMPORT_ONLY = "import sys;sys.path.insert(0,sys.argv[1]);import tesp_core.worker.__main__"


@pytest.fixture(scope="module")
def pyz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_zipapp(tmp_path_factory.mktemp("pyz"))


def loaded_modules(argv: list[str]) -> set[str]:
    """The modules ``argv`` (a Python command) imports, from its ``-X importtime`` lines."""
    proc = subprocess.run(
        [argv[0], "-X", "importtime", *argv[1:]],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("import time:")]
    return {line.rsplit("|", 1)[1].strip() for line in lines[1:]}  # [0] is the header


def test_importing_the_worker_loads_no_heavy_module(pyz: Path) -> None:
    modules = loaded_modules([sys.executable, "-S", "-c", IMPORT_ONLY, str(pyz)])
    assert "tesp_core.worker.staging" in modules  # the whole start path was imported
    assert sorted(set(HEAVY) & modules) == []


def test_running_a_true_task_loads_no_heavy_module(pyz: Path, tmp_path: Path) -> None:
    spec = {
        "version": 1,
        "task_id": "lean",
        "runtime": {"kind": "none"},
        "executors": [{"image": "ubuntu:24.04", "command": ["true"]}],
        "storage": {"file_roots": []},
    }
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(spec))
    job_dir = tmp_path / "job"
    modules = loaded_modules(worker_command(sys.executable, str(pyz), str(spec_path), str(job_dir)))
    result = json.loads((job_dir / "result.json").read_text())
    assert (result["state"], result["executor_logs"][0]["exit_code"]) == ("COMPLETE", 0)
    assert sorted(set(HEAVY) & modules) == []
    # Nothing to transfer: the storage drivers are not even loaded.
    assert sorted(m for m in modules if m.startswith("tesp_core.storage")) == []
