"""The worker zipapp stays lean: heavy standard modules are not imported by a plain task.

Every TES task starts a worker, and its imports were nearly all of its CPU cost (issue 8:
250M instructions for a ``true`` task, 123M after trimming them). These modules were
removed from the start path; a change that brings one back fails here instead of silently
slowing every task down. bench/bench_worker.py measures the cost itself.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tesp_core.worker import build_zipapp

# Each was imported before, directly or through another: dataclasses (inspect, ast, dis,
# tokenize), typing, pathlib (fnmatch, urllib.parse, ipaddress), logging (traceback,
# linecache, string, textwrap), datetime, glob, shutil (bz2, lzma), copy.
HEAVY = (
    "ast",
    "bz2",
    "copy",
    "dataclasses",
    "datetime",
    "dis",
    "fnmatch",
    "glob",
    "inspect",
    "ipaddress",
    "linecache",
    "logging",
    "lzma",
    "pathlib",
    "shutil",
    "string",
    "tempfile",
    "textwrap",
    "tokenize",
    "traceback",
    "typing",
    "urllib.parse",
)

# Runs in a `python -S -I` child, as on a compute node: import the worker's entry module
# from the archive, optionally run one task, print the modules loaded.
CHILD = """
import json, sys
sys.path.insert(0, sys.argv[1])
import tesp_core.worker.__main__ as worker
if len(sys.argv) > 2:
    code = worker.main(sys.argv[2:])
    assert code == 0, code
print(json.dumps(sorted(sys.modules)))
"""


@pytest.fixture(scope="module")
def pyz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_zipapp(tmp_path_factory.mktemp("pyz"))


def loaded_modules(*args: str) -> set[str]:
    proc = subprocess.run(
        [sys.executable, "-I", "-S", "-c", CHILD, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return set(json.loads(proc.stdout.splitlines()[-1]))


def test_importing_the_worker_loads_no_heavy_module(pyz: Path) -> None:
    modules = loaded_modules(str(pyz))
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
    modules = loaded_modules(str(pyz), str(spec_path), str(job_dir))
    result = json.loads((job_dir / "result.json").read_text())
    assert (result["state"], result["executor_logs"][0]["exit_code"]) == ("COMPLETE", 0)
    assert sorted(set(HEAVY) & modules) == []
