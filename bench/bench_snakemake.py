"""Wall time of ``snakemake --executor tesp`` on a workflow of trivial jobs, as a ratio of
Snakemake's local executor on the same workflow, measured in the same run.

The workflow has ``--jobs-count`` (default 100) independent jobs, each writing one small file,
plus a local ``all`` rule. Every mode runs it in a fresh copy of the workflow directory:

- ``local``:    ``snakemake --cores N``; jobs are shell commands of the Snakemake process.
- ``serve``:    ``--executor tesp --tesp-url`` against a ``tesp serve`` (runtime ``none``)
                started for the benchmark; every job is a TES task on its embedded Pulsar.
- ``embedded``: ``--executor tesp`` with no URL: a TESP inside the Snakemake process.

A TES job is a whole ``python -m snakemake`` process inside the task (2-4 s of CPU each),
so the ratio is dominated by that per-job start-up, not by TESP; ``s/job`` shows it.

    python bench/bench_snakemake.py [--jobs-count 100] [--jobs 4] [--modes local,serve]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _servers import tesp

MODES = ("local", "serve", "embedded")

SNAKEFILE = """
N = {count}

localrules: all

rule all:
    input: expand("out/{{i}}.txt", i=range(N))

rule trivial:
    output: "out/{{i}}.txt"
    shell: "echo {{wildcards.i}} > {{output}}"
"""


def _run(workdir: Path, args: list[str]) -> float:
    """Run snakemake in ``workdir``; wall seconds. Fails loudly on a non-zero exit."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "snakemake", *args],
        cwd=workdir,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
        check=False,
    )
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"snakemake {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return wall


def _workflow(base: Path, mode: str, count: int) -> Path:
    workdir = base / mode
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    (workdir / "Snakefile").write_text(SNAKEFILE.format(count=count))
    return workdir


def _check(workdir: Path, count: int) -> None:
    for i in range(count):
        text = (workdir / "out" / f"{i}.txt").read_text()
        if text != f"{i}\n":
            raise RuntimeError(f"{workdir}/out/{i}.txt holds {text!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs-count", type=int, default=100, help="jobs in the workflow")
    parser.add_argument("--jobs", type=int, default=4, help="--jobs of the TES runs")
    parser.add_argument("--cores", type=int, default=4, help="--cores of the local run")
    parser.add_argument("--modes", default="local,serve", help=f"subset of {','.join(MODES)}")
    parser.add_argument("--json", action="store_true", help="also print the rows as JSON")
    ns = parser.parse_args()
    modes = [m.strip() for m in ns.modes.split(",") if m.strip()]
    unknown = sorted(set(modes) - set(MODES))
    if unknown:
        parser.error(f"unknown modes {unknown}")
    if "local" not in modes:
        modes.insert(0, "local")

    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="bench-smk-") as tmp:
        base = Path(tmp)
        server = None
        try:
            if "serve" in modes:
                server = tesp(base / "tesp", args=["--runtime", "none", "--file-root", str(base)])
            for mode in modes:
                workdir = _workflow(base, mode, ns.jobs_count)
                if mode == "local":
                    args = ["--cores", str(ns.cores)]
                else:
                    args = ["--executor", "tesp", "--jobs", str(ns.jobs)]
                if mode == "serve" and server is not None:
                    args += ["--tesp-url", server.url]
                wall = _run(workdir, args)
                _check(workdir, ns.jobs_count)
                parallel = ns.cores if mode == "local" else ns.jobs
                rows.append({"mode": mode, "parallel": parallel, "wall_s": round(wall, 2)})
        finally:
            if server is not None:
                server.stop()

    local = float(rows[0]["wall_s"])  # type: ignore[arg-type]
    print(f"{ns.jobs_count} trivial jobs, {os.cpu_count()} CPUs")
    print(f"{'mode':<10} {'parallel':>8} {'wall s':>8} {'s/job':>7} {'ratio':>7}")
    for row in rows:
        wall = float(row["wall_s"])  # type: ignore[arg-type]
        row["s_per_job"] = round(wall / ns.jobs_count, 3)
        row["ratio"] = round(wall / local, 2) if local > 0 else None
        print(
            f"{row['mode']:<10} {row['parallel']:>8} {wall:>8.2f} "
            f"{row['s_per_job']:>7.3f} {row['ratio']!s:>7}"
        )
    if ns.json:
        print(json.dumps(rows))


if __name__ == "__main__":
    main()
