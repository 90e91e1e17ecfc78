"""CPU cost of the TESP worker for a trivial task, as ratios against baselines in the same run.

Every TES task starts the worker (``worker_command``: ``python3 -S -c BOOT tesp-worker.pyz
SPEC JOB_DIR``; ``--as-zipapp``: ``python3 -S tesp-worker.pyz ...``); for a ``true`` task that
start-up is the work (issue 8). For each runtime (``none``, and ``bwrap`` when installed)
this runs the worker ``--runs`` times on the spec the service writes for a ``true``
executor and reports its CPU time per run (user + sys from ``RUSAGE_CHILDREN``: the worker
and what it waits for, i.e. the ``true`` process and, under bwrap, bwrap), as a ratio of

- ``python -S -c pass``: the interpreter's own start-up, the floor for any Python worker;
- ``sh -c true``: what the task costs without TESP.

With ``--callgrind`` (needs valgrind) it also counts the instructions of one run of each
(deterministic, unlike times on a loaded machine; the target is <= 130M for the worker,
tests/unit/test_worker_imports.py guards the imports that made it 250M).

    python bench/bench_worker.py [--runs 50] [--runtimes none,bwrap] [--callgrind]
                                 [--pyz OTHER.pyz]   # e.g. an archive from an older commit
                                 [--as-zipapp]
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tesp_core.models import Task  # noqa: E402
from tesp_core.translate import WorkerOptions, worker_spec  # noqa: E402
from tesp_core.worker import build_zipapp  # noqa: E402
from tesp_core.worker.package import worker_command  # noqa: E402

AS_ZIPAPP = "--as-zipapp" in sys.argv  # how sessions before this one ran it

_I_REFS = re.compile(r"I\s+refs:\s+([\d,]+)")


def true_spec(runtime: str, dest: Path) -> Path:
    """The worker spec the service writes for one ``true`` executor, saved to ``dest``."""
    task = Task.from_client({"executors": [{"image": "alpine", "command": ["true"]}]})
    task.id = "bench-worker"
    dest.write_text(json.dumps(worker_spec(task, WorkerOptions(runtime=runtime))))
    return dest


def cpu_seconds(argvs: list[list[str]]) -> float:
    """User + sys CPU of running each argv to completion, one after the other."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    for argv in argvs:
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def instructions(argv: list[str]) -> int:
    """Instructions executed by ``argv`` (not its children), counted by callgrind."""
    cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *argv]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    match = _I_REFS.search(proc.stderr)
    if match is None:
        raise RuntimeError(f"no instruction count in valgrind's output: {proc.stderr[-500:]}")
    return int(match.group(1).replace(",", ""))


def worker_argvs(pyz: Path, spec: Path, work: Path, runs: int) -> list[list[str]]:
    """``runs`` worker command lines, each with a job directory of its own."""
    jobs = [Path(tempfile.mkdtemp(prefix="job-", dir=work)) for _ in range(runs)]
    if AS_ZIPAPP:
        return [[sys.executable, "-S", str(pyz), str(spec), str(job)] for job in jobs]
    return [worker_command(sys.executable, str(pyz), str(spec), str(job)) for job in jobs]


def check_result(argv: list[str]) -> None:
    """Fail loudly if the measured worker did not complete the task."""
    result = json.loads((Path(argv[-1]) / "result.json").read_text())
    if result["state"] != "COMPLETE":
        raise SystemExit(f"the worker did not complete the task: {result}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=50)
    default_runtimes = "none,bwrap" if shutil.which("bwrap") else "none"
    parser.add_argument("--runtimes", default=default_runtimes)
    parser.add_argument("--callgrind", action="store_true", help="count instructions too")
    parser.add_argument("--pyz", type=Path, help="measure this archive instead of building one")
    parser.add_argument(
        "--as-zipapp", action="store_true", help="run `python -S ARCHIVE` (through runpy)"
    )
    args = parser.parse_args()
    if args.callgrind and shutil.which("valgrind") is None:
        parser.error("--callgrind needs valgrind on PATH")

    with tempfile.TemporaryDirectory(prefix="bench-worker-") as tmp:
        work = Path(tmp)
        pyz = args.pyz or build_zipapp(work / "pyz")
        python_pass = [sys.executable, "-S", "-c", "pass"]
        sh_true = ["sh", "-c", "true"]
        base_py = cpu_seconds([python_pass] * args.runs) / args.runs
        base_sh = cpu_seconds([sh_true] * args.runs) / args.runs
        print(f"\nCPU per run (user+sys), mean of {args.runs} runs; worker = {pyz.name}")
        print(f"  {'command':<28}{'ms':>8}{'/ python -S':>13}{'/ sh -c true':>14}")
        print(f"  {'sh -c true':<28}{base_sh * 1e3:>8.2f}{base_sh / base_py:>13.2f}{1:>14.2f}")
        print(f"  {'python -S -c pass':<28}{base_py * 1e3:>8.2f}{1:>13.2f}")
        counted: dict[str, list[str]] = {"python -S -c pass": python_pass, "sh -c true": sh_true}
        for runtime in args.runtimes.split(","):
            spec = true_spec(runtime, work / f"spec-{runtime}.json")
            argvs = worker_argvs(pyz, spec, work, args.runs)
            ours = cpu_seconds(argvs) / args.runs
            check_result(argvs[-1])
            label = f"worker, true, {runtime}"
            print(f"  {label:<28}{ours * 1e3:>8.2f}{ours / base_py:>13.2f}{ours / base_sh:>14.2f}")
            counted[label] = worker_argvs(pyz, spec, work, 1)[0]
        if args.callgrind:
            print("\ninstructions of one run (callgrind, the process itself, not its children)")
            floor = instructions(python_pass)
            for label, argv in counted.items():
                count = instructions(argv)
                print(f"  {label:<28}{count / 1e6:>8.1f}M   ratio to python -S {count / floor:.2f}")


if __name__ == "__main__":
    main()
