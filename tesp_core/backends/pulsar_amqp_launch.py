"""The job-side launcher for Pulsar over AMQP (stdlib only; shipped as text in each job).

``python3 tesp-launch.py JOB_DIRECTORY``

Over AMQP TESP cannot upload files to Pulsar or read them back. So the setup message
carries three "message" staging actions Pulsar writes into the job's tool files: this
script, the worker zipapp (base64, since Pulsar writes message contents as text) and the
worker spec. This script decodes the zipapp, runs the worker on the spec with the job's
working directory, and then prints ``result.json`` after a marker line on its standard
output. Pulsar returns that output whole (``job_stdout``) in the final status update,
which is how the result reaches TESP. The exit status is the worker's.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

# The text after the last line equal to this is result.json (the worker's own stdout,
# printed before it, is ignored).
RESULT_MARKER = "----- tesp result.json -----"
WORKER_B64 = "tesp-worker.pyz.b64"
WORKER = "tesp-worker.pyz"
SPEC = "tesp-spec.json"
LAUNCHER = "tesp-launch.py"


def main(argv: list[str]) -> int:
    """Decode the worker, run it, print its result; return the worker's exit status."""
    if len(argv) != 1:
        print("usage: python3 tesp-launch.py JOB_DIRECTORY", file=sys.stderr)
        return 2
    job_dir = Path(argv[0])
    tools, working = job_dir / "tool_files", job_dir / "working"
    worker = tools / WORKER
    tmp = worker.with_name(f".{WORKER}.{os.getpid()}")
    tmp.write_bytes(base64.b64decode((tools / WORKER_B64).read_bytes()))
    os.replace(tmp, worker)
    sys.stdout.flush()
    code = subprocess.call([sys.executable, str(worker), str(tools / SPEC), str(working)])
    try:
        result = (working / "result.json").read_text(encoding="utf-8")
    except OSError as exc:
        print(f"tesp-launch: no result.json: {exc.strerror}", file=sys.stderr)
        return code or 1
    sys.stdout.write(f"\n{RESULT_MARKER}\n{result}\n")
    sys.stdout.flush()
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
