"""Throughput and memory of TESP's HTTP and S3 drivers against plain client code.

Starts a stdlib HTTP server and a moto S3 server on 127.0.0.1, writes one file of
``--size-mb`` MiB, then downloads it in child processes to /dev/null:

- ``http-plain``: a urllib read loop;      ``http-tesp``: ``HttpTransport.download_file``
- ``s3-plain``:   boto3 ``download_fileobj``; ``s3-tesp``: ``S3Transport.download_file``

and prints the throughput ratio (target >= 0.9) and the peak RSS of the driver children
(``ru_maxrss`` of RUSAGE_CHILDREN, read in a lean middle process; target < 100 MB).

    python bench/bench_storage.py [--size-mb 1024] [--repeat 2]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BUCKET = "bench"
KEY = "big file.bin"
CREDS = {"aws_access_key_id": "bench", "aws_secret_access_key": "bench", "region": "us-east-1"}
CHUNK = 1024 * 1024


# -- children: one download each, timed without interpreter start-up ---------------------


def _child(mode: str, target: str) -> None:
    if mode == "http-plain":
        start = time.perf_counter()
        with urllib.request.urlopen(target) as resp, open(os.devnull, "wb") as out:
            while chunk := resp.read(CHUNK):
                out.write(chunk)
    elif mode == "http-tesp":
        from tesp_core.storage.http import HttpTransport

        transport = HttpTransport({})
        start = time.perf_counter()
        transport.download_file(target, Path(os.devnull))
    elif mode == "s3-plain":
        import boto3

        client = boto3.client(
            "s3",
            endpoint_url=target,
            region_name=CREDS["region"],
            aws_access_key_id=CREDS["aws_access_key_id"],
            aws_secret_access_key=CREDS["aws_secret_access_key"],
        )
        start = time.perf_counter()
        with open(os.devnull, "wb") as out:
            client.download_fileobj(BUCKET, KEY, out)
    elif mode == "s3-tesp":
        from tesp_core.storage.s3 import S3Transport

        s3 = S3Transport({**CREDS, "endpoint_url": target})
        s3._client(target)  # build the client outside the timed part, as s3-plain does
        start = time.perf_counter()
        s3.download_file(f"s3://{BUCKET}/{KEY}", Path(os.devnull))
    else:
        raise SystemExit(f"unknown mode {mode}")
    print(json.dumps({"seconds": time.perf_counter() - start}))


def _spawn(flag: str, mode: str, target: str) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, __file__, flag, mode, target],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if proc.returncode:
        raise SystemExit(f"{mode} failed:\n{proc.stderr}")
    result: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def _measure(mode: str, target: str) -> None:
    """Run one child from this small process and add its ru_maxrss to its result.

    A child forked straight from the benchmark (which hosts moto and its data) would
    report the parent's RSS at fork time as its own maximum; this lean middle process
    keeps RUSAGE_CHILDREN about the download alone.
    """
    result = _spawn("--child", mode, target)
    # Linux reports ru_maxrss in KiB.
    result["maxrss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps(result))


def _run_child(mode: str, target: str, rss: dict[str, float]) -> float:
    result = _spawn("--measure", mode, target)
    rss[mode] = max(rss.get(mode, 0.0), result["maxrss_mb"])
    return result["seconds"]


# -- servers --------------------------------------------------------------------------


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def _start_http(root: Path) -> tuple[ThreadingHTTPServer, str]:
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def _start_s3(big: Path) -> tuple[Any, str]:
    import logging

    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=CREDS["region"],
        aws_access_key_id=CREDS["aws_access_key_id"],
        aws_secret_access_key=CREDS["aws_secret_access_key"],
    )
    client.create_bucket(Bucket=BUCKET)
    client.upload_file(str(big), BUCKET, KEY)
    return server, endpoint


def _write_file(path: Path, size_mb: int) -> None:
    block = os.urandom(CHUNK)
    with open(path, "wb") as fh:
        for i in range(size_mb):
            fh.write(bytes([i % 256]) + block[1:])


# -- main -----------------------------------------------------------------------------


def _bench(size_mb: int, repeat: int, skip_s3: bool) -> None:
    with tempfile.TemporaryDirectory(prefix="tesp-bench-") as tmp:
        root = Path(tmp)
        big = root / KEY
        _write_file(big, size_mb)
        http_server, http_base = _start_http(root)
        http_url = f"{http_base}/big%20file.bin"
        s3_server, s3_endpoint = (None, "") if skip_s3 else _start_s3(big)
        cases = [("http", http_url)] + ([] if skip_s3 else [("s3", s3_endpoint)])
        best: dict[str, float] = {}
        rss: dict[str, float] = {}
        for _ in range(repeat):  # interleaved, so drift hits both sides alike
            for proto, target in cases:
                for mode in (f"{proto}-plain", f"{proto}-tesp"):
                    seconds = _run_child(mode, target, rss)
                    best[mode] = min(best.get(mode, seconds), seconds)
        http_server.shutdown()
        if s3_server is not None:
            s3_server.stop()
    _report(size_mb, best, rss, [proto for proto, _ in cases])


def _report(size_mb: int, best: dict[str, float], rss: dict[str, float], protos: list[str]) -> None:
    print(f"\nfile: {size_mb} MiB, best of runs, downloads to /dev/null in child processes\n")
    header = f"{'protocol':<9}{'plain MiB/s':>13}{'tesp MiB/s':>13}{'ratio':>8}"
    print(header + f"{'plain RSS MB':>14}{'tesp RSS MB':>13}")
    for proto in protos:
        plain = size_mb / best[f"{proto}-plain"]
        tesp = size_mb / best[f"{proto}-tesp"]
        ratio = tesp / plain
        print(
            f"{proto:<9}{plain:>13.1f}{tesp:>13.1f}{ratio:>8.2f}"
            f"{rss[f'{proto}-plain']:>14.1f}{rss[f'{proto}-tesp']:>13.1f}"
            f"  ratio {'ok' if ratio >= 0.9 else 'BELOW 0.9'},"
            f" RSS {'ok' if rss[f'{proto}-tesp'] < 100 else 'ABOVE 100 MB'}"
        )


def main() -> None:
    """Parse arguments and run the benchmark (or one child download)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--skip-s3", action="store_true", help="HTTP only (no moto)")
    parser.add_argument("--child", nargs=2, metavar=("MODE", "TARGET"), help=argparse.SUPPRESS)
    parser.add_argument("--measure", nargs=2, metavar=("MODE", "TARGET"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(*args.child)
    elif args.measure:
        _measure(*args.measure)
    else:
        _bench(args.size_mb, args.repeat, args.skip_s3)


if __name__ == "__main__":
    main()
