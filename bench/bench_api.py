"""API throughput and listing at scale, as ratios against baselines measured in the same run.

1. Create throughput: tasks created per second by ``--clients`` concurrent clients against
   ``tesp serve`` with dispatch off (tasks are stored, nothing runs), as a ratio of a
   minimal FastAPI app under the same uvicorn settings that parses the same body and
   returns an id (target >= 0.5).
2. Listing: with N tasks stored (10k, then 100k), the median latency of
   ``GET /tasks?page_size=256`` without and with a ``state`` filter, and of a deep page
   reached through ``page_token``, each as a ratio of ``GET /service-info`` in the same run
   (target <= 3), plus the server's RSS (target < 200 MB). The 10k and 100k rows show
   whether the cost of a page grows with the number of stored tasks.

    python bench/bench_api.py [--clients 16] [--creates 2000] [--sizes 10000,100000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _servers import Server, free_port, tesp

TASK = {
    "name": "bench",
    "tags": {"suite": "bench"},
    "inputs": [{"path": "/data/in", "content": "x" * 200}],
    "executors": [
        {"image": "alpine", "command": ["sh", "-c", "echo hello; true"], "env": {"A": "1"}}
    ],
}

MINIMAL_APP = """
import uuid
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from tesp_core.models import Task
app = FastAPI()

@app.post("/tasks")
async def create(request: Request):
    Task.from_client(await request.json())
    return JSONResponse({"id": str(uuid.uuid4())})

@app.get("/ready")
async def ready():
    return {}
"""


def _create_rate(url: str, clients: int, total: int) -> float:
    body = json.dumps(TASK)
    per = total // clients
    barrier = threading.Barrier(clients + 1)
    errors: list[str] = []

    def client() -> None:
        session = requests.Session()
        barrier.wait()
        for _ in range(per):
            r = session.post(url, data=body, headers={"Content-Type": "application/json"})
            if r.status_code != 200:
                errors.append(r.text)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise RuntimeError(f"{len(errors)} creates failed: {errors[0]}")
    return per * clients / elapsed


def _median_ms(session: requests.Session, url: str, params: dict | None, n: int) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        r = session.get(url, params=params)
        times.append(time.perf_counter() - start)
        r.raise_for_status()
    return statistics.median(times) * 1000


def _fill(db: Path, count: int) -> None:
    """Insert tasks straight into the store (the API path is measured separately)."""
    from tesp_core.models import State, Task
    from tesp_core.store import SQLiteTaskStore, StoredTask

    store = SQLiteTaskStore(db)
    base = Task.from_client(TASK)
    states = [State.COMPLETE] * 8 + [State.EXECUTOR_ERROR, State.RUNNING]
    for n in range(count):
        task = base.model_copy(deep=True)
        task.id, task.state = str(uuid.uuid4()), states[n % len(states)]
        task.creation_time = "2026-01-01T00:00:00+00:00"
        store.insert(StoredTask(task, "anonymous"))
    store.close()


def bench_create(clients: int, total: int, work: Path) -> None:
    port = free_port()
    app_file = work / "minimal_app.py"
    app_file.write_text(MINIMAL_APP)
    minimal = Server(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--app-dir",
            str(work),
            "minimal_app:app",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        port,
        "/ready",
        {},
        work / "minimal.log",
    )
    server = tesp(work / "create", env={"TESP_DISPATCH": "false"})
    try:
        _create_rate(f"{minimal.url}/tasks", clients, clients * 5)  # warm-up
        _create_rate(f"{server.url}/ga4gh/tes/v1/tasks", clients, clients * 5)
        base = _create_rate(f"{minimal.url}/tasks", clients, total)
        ours = _create_rate(f"{server.url}/ga4gh/tes/v1/tasks", clients, total)
    finally:
        server.stop()
        minimal.stop()
    print(f"\ncreate throughput, {clients} clients, {total} tasks")
    print(f"  {'minimal FastAPI':<22}{base:>10.0f} tasks/s")
    print(f"  {'tesp serve':<22}{ours:>10.0f} tasks/s   ratio {ours / base:.2f} (target >= 0.5)")


def bench_list(sizes: list[int], work: Path) -> None:
    print("\nlisting, median of 30 requests, ratio to GET /service-info in the same run")
    print(f"  {'tasks':>8} {'query':<22}{'ms':>8}{'ratio':>8}   RSS")
    for size in sizes:
        data = work / f"list-{size}"
        data.mkdir()
        _fill(data / "tasks.sqlite", size)
        server = tesp(data, env={"TESP_DISPATCH": "false"})
        try:
            api = f"{server.url}/ga4gh/tes/v1"
            s = requests.Session()
            first = s.get(f"{api}/tasks", params={"page_size": 256}).json()
            token = first["next_page_token"]
            for _ in range(size // 256 // 2):  # walk half way down for the deep page
                token = s.get(
                    f"{api}/tasks", params={"page_size": 256, "page_token": token}
                ).json()["next_page_token"]
            base = _median_ms(s, f"{api}/service-info", None, 30)
            rows = [
                ("page_size=256", {"page_size": 256}),
                ("+ state=COMPLETE", {"page_size": 256, "state": "COMPLETE"}),
                ("+ state=RUNNING", {"page_size": 256, "state": "RUNNING"}),
                ("deep page (token)", {"page_size": 256, "page_token": token}),
                ("BASIC page", {"page_size": 256, "view": "BASIC"}),
            ]
            for label, params in rows:
                ms = _median_ms(s, f"{api}/tasks", params, 30)
                print(
                    f"  {size:>8} {label:<22}{ms:>8.2f}{ms / base:>8.2f}   {server.rss_mb():.0f} MB"
                )
            print(f"  {size:>8} {'service-info':<22}{base:>8.2f}{1:>8.2f}")
        finally:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--creates", type=int, default=2000)
    parser.add_argument("--sizes", default="10000,100000")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tesp-bench-") as tmp:
        work = Path(tmp)
        bench_create(args.clients, args.creates, work)
        bench_list([int(s) for s in args.sizes.split(",")], work)


if __name__ == "__main__":
    main()
