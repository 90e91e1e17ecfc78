"""End to end: N trivial tasks through TESP vs the same N jobs straight to the same Pulsar.

One Pulsar server (Pulsar's WSGI app, ``queued_python`` with C concurrent jobs) serves both
runs, one after the other:

- ``pulsar client``: C threads each take jobs from a shared queue and drive them with
  Pulsar's own client (``pulsar.client.manager.build_client_manager``): setup, launch
  ``true``, poll ``get_status`` every ``--poll`` seconds until complete, clean.
- ``tesp``: a ``tesp serve`` pointed at that Pulsar (runtime ``none``, ``--max-in-flight C``);
  C client threads create the tasks (``executors: [true]``) and one poller lists states
  every ``--poll`` seconds (the plain client's interval).

It prints jobs per second for each and their ratio (target >= 1.0), the CPU time each
process spent per job in each run (what limits throughput on a small machine), the
single-task latency (create to COMPLETE seen by the client, median of ``--latency-runs``)
of each, and where TESP's single task spends its time (medians, from the task's own logs).

    python bench/bench_e2e.py [--tasks 500] [--concurrency 8] [--poll 0.25]
"""

from __future__ import annotations

import argparse
import json
import queue
import statistics
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path

import psutil
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _servers import Server, free_port, tesp

TERMINAL = {"COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR", "CANCELED"}


def start_pulsar(root: Path, concurrency: int) -> Server:
    root.mkdir(parents=True)
    conf = root / "app.yml"
    conf.write_text(
        json.dumps(
            {
                "staging_directory": str(root / "staging"),
                "persistence_directory": str(root / "persisted"),
                "managers": {
                    "_default_": {"type": "queued_python", "num_concurrent_jobs": concurrency}
                },
            }
        )
    )
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "tesp_core.backends.pulsar_server",
        "--app-conf",
        str(conf),
        "--port",
        str(port),
    ]
    return Server(argv, port, "/healthz", {}, root / "pulsar.log")


def pulsar_job(manager: object, url: str, poll: float, token: str | None = None) -> None:
    """One job with Pulsar's own client, as a plain integration would drive it."""
    params = {"url": url + "/", "private_token": token} if token else {"url": url + "/"}
    client = manager.get_client(params, str(uuid.uuid4()))  # type: ignore[attr-defined]
    client.setup()
    client.launch("true")
    while client.get_status() not in ("complete", "failed", "cancelled", "lost"):
        time.sleep(poll)
    client.clean()


def run_pulsar_client(
    url: str, n: int, concurrency: int, poll: float, token: str | None = None
) -> float:
    from pulsar.client.manager import build_client_manager

    manager = build_client_manager()
    work: queue.Queue[int] = queue.Queue()
    for i in range(n):
        work.put(i)

    def worker() -> None:
        while True:
            try:
                work.get_nowait()
            except queue.Empty:
                return
            pulsar_job(manager, url, poll, token)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start


def run_tesp(api: str, n: int, concurrency: int, poll: float) -> float:
    body = {"executors": [{"image": "a", "command": ["true"]}], "tags": {"bench": "e2e"}}
    ids: list[str] = []
    lock = threading.Lock()
    per = [n // concurrency + (1 if i < n % concurrency else 0) for i in range(concurrency)]

    def creator(count: int) -> None:
        session = requests.Session()
        for _ in range(count):
            task_id = session.post(f"{api}/tasks", json=body, timeout=30).json()["id"]
            with lock:
                ids.append(task_id)

    start = time.perf_counter()
    threads = [threading.Thread(target=creator, args=(c,)) for c in per]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    session = requests.Session()
    while True:
        states, token = [], None
        while True:
            params: dict[str, object] = {"page_size": 2047, "tag_key": "bench"}
            if token:
                params["page_token"] = token
            page = session.get(f"{api}/tasks", params=params, timeout=30).json()
            states += [t["state"] for t in page["tasks"]]
            token = page.get("next_page_token")
            if not token:
                break
        if len(states) >= n and all(s in TERMINAL for s in states):
            return time.perf_counter() - start
        time.sleep(poll)


def latency_tesp(api: str, runs: int) -> tuple[float, dict[str, float]]:
    """Median create-to-COMPLETE time in ms, and the median time of each step from the
    task's logs (ms after the create was sent)."""
    session = requests.Session()
    times = []
    steps: dict[str, list[float]] = {}
    for _ in range(runs):
        sent, start = time.time(), time.perf_counter()
        task_id = session.post(
            f"{api}/tasks", json={"executors": [{"image": "a", "command": ["true"]}]}, timeout=30
        ).json()["id"]
        created = time.perf_counter()
        while session.get(f"{api}/tasks/{task_id}", timeout=30).json()["state"] not in TERMINAL:
            time.sleep(0.002)
        times.append(time.perf_counter() - start)
        task = session.get(f"{api}/tasks/{task_id}", params={"view": "FULL"}, timeout=30).json()
        tlog = task["logs"][0]
        marks = {
            "create answered": created - start,
            "worker started": _stamp(tlog["start_time"]) - sent,
            "executor started": _stamp(tlog["logs"][0]["start_time"]) - sent,
            "executor ended": _stamp(tlog["logs"][0]["end_time"]) - sent,
            "worker wrote result": _stamp(tlog["end_time"]) - sent,
            "client saw COMPLETE": times[-1],
        }
        for name, seconds in marks.items():
            steps.setdefault(name, []).append(seconds * 1000)
    return statistics.median(times) * 1000, {k: statistics.median(v) for k, v in steps.items()}


def _stamp(rfc3339: str) -> float:
    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


def latency_pulsar(url: str, runs: int, token: str | None = None) -> float:
    from pulsar.client.manager import build_client_manager

    manager = build_client_manager()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        pulsar_job(manager, url, 0.005, token)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


class CpuMeter:
    """CPU seconds (user + sys) of the processes a run involves, read before and after."""

    def __init__(self, tesp_pid: int, pulsar_pid: int) -> None:
        self._procs = {
            "tesp serve": psutil.Process(tesp_pid),
            "pulsar": psutil.Process(pulsar_pid),
            "bench client": psutil.Process(),
        }

    def read(self) -> dict[str, float]:
        times = {name: p.cpu_times() for name, p in self._procs.items()}
        seen = {name: t.user + t.system for name, t in times.items()}
        # Pulsar's jobs (shell, worker, executor) are its children, reaped by then.
        seen["jobs"] = times["pulsar"].children_user + times["pulsar"].children_system
        return seen

    @staticmethod
    def per_job(before: dict[str, float], after: dict[str, float], n: int) -> str:
        parts = {k: 1000 * (after[k] - before[k]) / n for k in before}
        shown = ", ".join(f"{k} {v:.1f}" for k, v in parts.items())
        return f"{sum(parts.values()):.1f} ms ({shown})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--poll", type=float, default=0.25, help="the plain client's poll")
    parser.add_argument("--latency-runs", type=int, default=15)
    parser.add_argument(
        "--embedded", action="store_true", help="both paths use tesp serve's embedded Pulsar"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tesp-e2e-") as tmp:
        flags = ["--runtime", "none", "--max-in-flight", str(args.concurrency)]
        pulsar = None
        if args.embedded:
            server = tesp(Path(tmp) / "tesp", args=flags)
            state = json.loads((Path(tmp) / "tesp" / "pulsar" / "embedded.json").read_text())
            url, token = state["url"], state["token"]
        else:
            pulsar = start_pulsar(Path(tmp) / "pulsar", args.concurrency)
            server = tesp(
                Path(tmp) / "tesp",
                env={"TESP_WORKER_PYTHON": sys.executable},
                args=["--pulsar-url", pulsar.url, *flags],
            )
            url, token = pulsar.url, None
        pulsar_pid = state["pid"] if pulsar is None else pulsar.proc.pid
        meter = CpuMeter(server.proc.pid, int(pulsar_pid))
        try:
            api = f"{server.url}/ga4gh/tes/v1"
            lat_p = latency_pulsar(url, args.latency_runs, token)
            lat_t, steps = latency_tesp(api, args.latency_runs)
            cpu0 = meter.read()
            direct = run_pulsar_client(url, args.tasks, args.concurrency, args.poll, token)
            time.sleep(1.0)  # the last jobs are cleaned and reaped
            cpu1 = meter.read()
            ours = run_tesp(api, args.tasks, args.concurrency, args.poll)
            time.sleep(1.0)
            cpu2 = meter.read()
        finally:
            server.stop()
            if pulsar is not None:
                pulsar.stop()
    where = "embedded" if args.embedded else "external"
    print(f"\n{args.tasks} trivial jobs, concurrency {args.concurrency}, one {where} Pulsar")
    print(
        f"  {'pulsar client':<16}{args.tasks / direct:>8.1f} jobs/s   (polls every {args.poll:g} s)"
    )
    print(
        f"  {'tesp':<16}{args.tasks / ours:>8.1f} jobs/s   ratio {direct / ours:.2f} "
        "(target >= 1.0)"
    )
    print("CPU per job, all processes (ms):")
    print(f"  {'pulsar client':<16}{CpuMeter.per_job(cpu0, cpu1, args.tasks)}")
    print(f"  {'tesp':<16}{CpuMeter.per_job(cpu1, cpu2, args.tasks)}")
    print(
        f"single task, median of {args.latency_runs}: pulsar client {lat_p:.0f} ms "
        f"(polling every 5 ms, runs `true` itself), tesp {lat_t:.0f} ms "
        f"(worker + executor `true`), difference {lat_t - lat_p:.0f} ms (target <= 50)"
    )
    print("tesp's single task, medians in ms after the create was sent (server clock):")
    for name, ms in steps.items():
        print(f"  {name:<22}{ms:>7.1f}")


if __name__ == "__main__":
    main()
