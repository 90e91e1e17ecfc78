"""Load test: N tasks created by C concurrent clients through a real ``tesp serve``.

Checks, and exits non-zero unless all hold: no create failed, every created id is listed
exactly once (paging through ``GET /tasks``), no task is lost or duplicated, and every task
reaches COMPLETE. Prints the create rate and the time until the last task completed.
Bounded: it gives up after ``--timeout`` seconds.

    python bench/bench_load.py [--tasks 2000] [--clients 32] [--max-in-flight 16]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _servers import tesp

BODY = json.dumps({"name": "load", "executors": [{"image": "alpine", "command": ["true"]}]})


def _create(api: str, total: int, clients: int) -> tuple[list[str], list[str]]:
    ids: list[str] = []
    errors: list[str] = []
    lock = threading.Lock()

    def client(count: int) -> None:
        session = requests.Session()
        for _ in range(count):
            try:
                r = session.post(
                    f"{api}/tasks",
                    data=BODY,
                    headers={"Content-Type": "application/json"},
                    timeout=30,
                )
            except requests.RequestException as exc:
                with lock:
                    errors.append(str(exc))
                continue
            with lock:
                (ids if r.status_code == 200 else errors).append(
                    r.json()["id"] if r.status_code == 200 else r.text
                )

    shares = [total // clients + (1 if n < total % clients else 0) for n in range(clients)]
    threads = [threading.Thread(target=client, args=(share,)) for share in shares]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return ids, errors


def _list_all(api: str) -> list[dict]:
    tasks: list[dict] = []
    token = None
    session = requests.Session()
    while True:
        params: dict[str, object] = {"page_size": 2047}
        if token:
            params["page_token"] = token
        page = session.get(f"{api}/tasks", params=params, timeout=30).json()
        tasks += page["tasks"]
        token = page.get("next_page_token")
        if not token:
            return tasks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--max-in-flight", type=int, default=16)
    parser.add_argument("--timeout", type=float, default=900)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tesp-load-") as tmp:
        server = tesp(
            Path(tmp) / "data",
            args=["--runtime", "none", "--max-in-flight", str(args.max_in_flight)],
        )
        try:
            api = f"{server.url}/ga4gh/tes/v1"
            start = time.perf_counter()
            ids, errors = _create(api, args.tasks, args.clients)
            created = time.perf_counter() - start
            deadline = time.monotonic() + args.timeout
            while time.monotonic() < deadline:
                tasks = _list_all(api)
                if all(t["state"] in ("COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR") for t in tasks):
                    break
                time.sleep(1)
            finished = time.perf_counter() - start
            listed = [t["id"] for t in tasks]
            states: dict[str, int] = {}
            for t in tasks:
                states[t["state"]] = states.get(t["state"], 0) + 1
        finally:
            server.stop()
    total = len(ids)
    print(
        f"created {total} tasks with {args.clients} clients in {created:.1f} s "
        f"({total / created:.0f}/s); all finished after {finished:.1f} s "
        f"({total / finished:.1f} tasks/s end to end)"
    )
    print(
        f"create errors: {len(errors)}; listed: {len(listed)}, unique: {len(set(listed))}; "
        f"states: {states}"
    )
    ok = (
        not errors
        and sorted(listed) == sorted(ids)
        and len(set(listed)) == len(listed)
        and states == {"COMPLETE": total}
    )
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
