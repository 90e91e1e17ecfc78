"""The Pulsar backend over Pulsar's REST API.

One TES task is one Pulsar job whose id is the task id, so a restarted TESP finds its jobs
again without a separate map, and a job is never set up twice under two ids. The job runs
the TESP worker (uploaded as a tool file with the task's worker spec); the worker writes
``progress.json`` and ``result.json`` into the job's working directory, which this backend
reads back through Pulsar's file API.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import urllib3
from requests.utils import get_environ_proxies, select_proxy
from urllib3.exceptions import HTTPError as Urllib3Error

from tesp_core.backends.scheduler import scheduler_request, script_directive, submit_params
from tesp_core.backends.watch import DirWatcher
from tesp_core.errors import (
    BackendAuthError,
    BackendError,
    BackendJobLostError,
    BackendUnavailableError,
)
from tesp_core.models import Task
from tesp_core.storage.redact import redact_text, redact_url
from tesp_core.worker.executors import STOP_REQUEST as STOP_FILE
from tesp_core.worker.package import worker_command

log = logging.getLogger(__name__)

WORKER_FILE = "tesp-worker.pyz"
SPEC_FILE = "tesp-spec.json"
RESULT_FILE = "result.json"
PROGRESS_FILE = "progress.json"

# Pulsar job status -> what it means for a TES task. Anything else is logged and treated
# as still running (the TESP-side timeout catches a job that never finishes).
PULSAR_STATUS = {
    "preprocessing": "initializing",
    "queued": "queued",
    "running": "running",
    "postprocessing": "running",
    "complete": "complete",
    "failed": "failed",
    "lost": "lost",
    "cancelled": "cancelled",
}


@dataclass(frozen=True)
class JobStatus:
    """What Pulsar says about a job: a PULSAR_STATUS value plus the job's own output."""

    phase: str
    returncode: int | None = None
    stdout: str = ""
    stderr: str = ""
    # The batch job's own stderr (a scheduler job script's, before and around the worker).
    job_stderr: str = ""
    # Pulsar never launched the job: its manager's submit failed (a scheduler refused it).
    launch_failed: bool = False
    # Pulsar's launcher still holds the job: its process runs (or is about to start), and
    # will write into the job directory (a local manager's "pid" and "submitted" markers).
    launcher_busy: bool = False

    @property
    def launcher_done(self) -> bool:
        """Pulsar's launcher is done with the job: it wrote the return code and let go."""
        return self.returncode is not None and not self.launcher_busy


class PulsarBackend:
    """Submit, poll, read back, cancel and clean Pulsar jobs over REST.

    Calls go through one urllib3 pool sized for ``concurrency`` threads, not ``requests``:
    every job costs about ten calls, and requests' per-call work (merging settings, reading
    proxy variables from the environment) was two thirds of the server's CPU time under
    load (py-spy, issue 8). What requests took from the environment is read once here:
    the proxy for Pulsar's URL (``HTTPS_PROXY``, ``NO_PROXY``...) and the CA bundle
    (``REQUESTS_CA_BUNDLE`` or ``CURL_CA_BUNDLE``, else certifi's, as requests does).
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        manager: str = "_default_",
        worker_python: str = "python3",
        concurrency: int = 16,
        timeout: float = 30.0,
        local_staging: Path | None = None,
        local_worker: Path | None = None,
    ) -> None:
        base = url.rstrip("/")
        self.url = base if manager == "_default_" else f"{base}/managers/{manager}"
        # What messages (logs, errors, task system logs) name: without a URL password.
        self.shown_url = redact_url(self.url)
        self._token = token
        self._python = worker_python
        self._timeout = timeout
        # An embedded Pulsar shares this host: its job files are read from disk, and the
        # worker is run from TESP's own copy instead of being uploaded with every job.
        self._local_staging = local_staging
        self._local_root = str(local_staging) if local_staging is not None else ""
        self._local_worker = local_worker
        self._watcher: DirWatcher | None = None
        self._http = _pool(self.url, max(concurrency, 4), timeout)
        self._worker_cache: tuple[tuple[str, int, int], bytes] | None = None
        self._worker_lock = threading.Lock()
        # The worker archive goes up on a second connection while the spec goes up on the
        # first: one round trip fewer before the job is launched.
        self._uploads = ThreadPoolExecutor(max(concurrency, 1), thread_name_prefix="tesp-upload")

    # -- the Backend protocol ---------------------------------------------------------------

    def submit(self, job_id: str, spec: dict[str, Any], worker: Path, task: Task) -> None:
        """Set up job ``job_id``, upload the worker and its spec, and launch it."""
        config = self._json_object(self._call("POST", "/jobs", params={"job_id": job_id}), "/jobs")
        tools_dir, working_dir = config.get("tools_directory"), config.get("working_directory")
        if not isinstance(tools_dir, str) or not isinstance(working_dir, str):
            raise BackendError(
                f"Pulsar at {self.shown_url} set the job up without saying where (no "
                "tools_directory or working_directory in its answer): is this URL a Pulsar?"
            )
        local_working = self._local_path(working_dir)
        if self._watcher is not None and local_working is not None:
            self._watcher.add(job_id, str(local_working))
        uploading: Future[None] | None = None
        if self._local_worker is None:
            archive = self._worker_bytes(worker)
            uploading = self._uploads.submit(self._upload, job_id, WORKER_FILE, archive)
            worker_path = f"{tools_dir}/{WORKER_FILE}"
        else:
            worker_path = str(self._local_worker)
        try:
            spec_bytes = json.dumps(spec).encode()
            local_tools = self._local_path(tools_dir)
            if local_tools is not None:
                # The embedded Pulsar's job directory is on this host: one HTTP call fewer.
                _write_private(local_tools / SPEC_FILE, spec_bytes)
            else:
                self._upload(job_id, SPEC_FILE, spec_bytes)
        finally:
            if uploading is not None:
                uploading.result()  # its error, if any, is the submission's
        argv = worker_command(self._python, worker_path, f"{tools_dir}/{SPEC_FILE}", working_dir)
        command = shlex.join(argv)
        self._call("POST", f"/jobs/{job_id}/submit", params=_submit_query(command, task))
        log.debug("task %s: submitted to Pulsar %s", job_id, self.shown_url)

    def _worker_bytes(self, worker: Path) -> bytes:
        """The worker archive's bytes, read again only when the file changed."""
        st = worker.stat()
        key = (str(worker), st.st_mtime_ns, st.st_size)
        with self._worker_lock:
            if self._worker_cache is None or self._worker_cache[0] != key:
                self._worker_cache = (key, worker.read_bytes())
            return self._worker_cache[1]

    def _local_path(self, directory: str) -> Path | None:
        """``directory`` (a path Pulsar gave) when it lies in the local staging area."""
        if self._local_staging is None:
            return None
        path = Path(directory)
        return path if path.is_dir() and path.is_relative_to(self._local_staging) else None

    def status(self, job_id: str) -> JobStatus:
        """The job's status; BackendJobLostError if Pulsar does not know it."""
        response = self._call("GET", f"/jobs/{job_id}/status", lost_ok=True)
        data = self._json_object(response, f"/jobs/{job_id}/status")
        raw = str(data.get("status", ""))
        phase = PULSAR_STATUS.get(raw)
        if phase is None:
            log.warning("task %s: unknown Pulsar status %r, treating as running", job_id, raw)
            phase = "running"
        code = data.get("returncode")
        contents = data.get("job_directory_contents") or ()
        return JobStatus(
            phase=phase,
            returncode=int(code) if code not in (None, "") else None,
            stdout=data.get("stdout") or "",
            stderr=data.get("stderr") or "",
            job_stderr=data.get("job_stderr") or "",
            # Pulsar records a failed launch as this marker file (its reason only in its log).
            launch_failed="preprocessing_failed" in contents,
            launcher_busy="pid" in contents or "submitted" in contents,
        )

    def finished_hint(self, job_id: str) -> bool | None:
        """Whether the worker wrote result.json, when this host sees the job's files."""
        if self._local_staging is None:
            return None
        return os.path.exists(self._local_file(job_id, RESULT_FILE))

    def watch_hint(self, job_id: str) -> tuple[int, ...] | None:
        """Inode and mtime of progress.json, and whether result.json exists (a local job).

        The worker replaces progress.json (a new inode) at every write; result.json only
        ever appears. Timestamps are coarse (a few ms), so the inode is what tells two
        writes apart; result.json's existence never depends on either.
        """
        if self._local_staging is None:
            return None
        try:
            progress = os.stat(self._local_file(job_id, PROGRESS_FILE))
            seen: tuple[int, ...] = (progress.st_ino, progress.st_mtime_ns)
        except OSError:
            seen = (0, 0)
        return (*seen, int(os.path.exists(self._local_file(job_id, RESULT_FILE))))

    def _local_file(self, job_id: str, name: str) -> str:
        """A file in a local job's working directory (strings: this runs at every poll of
        every local task, where pathlib's joins were most of its cost)."""
        return f"{self._local_root}/{job_id}/working/{name}"

    def read_json(self, job_id: str, name: str) -> dict[str, Any] | None:
        """A JSON file the worker wrote in the job's working directory, or None if absent."""
        if self._local_staging is not None:
            return _read_local_json(self._local_file(job_id, name))
        try:
            response = self._call(
                "GET",
                f"/jobs/{job_id}/files",
                params={"name": name, "type": "output_workdir"},
                lost_ok=True,
            )
        except BackendJobLostError:
            return None
        try:
            value = response.json()
        except ValueError:
            return None  # half-written or not JSON: read again on the next poll
        return value if isinstance(value, dict) else None

    def listen(self, on_change: Callable[[str], None]) -> None:
        """Report writes of the worker's files in local job directories (inotify)."""
        if self._local_staging is not None and self._watcher is None:
            watcher = DirWatcher(on_change, frozenset({PROGRESS_FILE, RESULT_FILE}))
            self._watcher = watcher if watcher.available else None

    def cancel(self, job_id: str) -> None:
        """Kill the job (its whole process tree)."""
        self._call("PUT", f"/jobs/{job_id}/cancel")

    def request_stop(self, job_id: str) -> bool:
        """Put the worker's stop request into the job's working directory."""
        if self._local_staging is not None:
            try:
                with open(self._local_file(job_id, STOP_FILE), "xb"):
                    pass
            except FileExistsError:
                pass
            except OSError as exc:  # the job directory is gone: nothing to stop
                log.debug("task %s: no stop request written: %s", job_id, exc)
                return False
            return True
        self._upload(job_id, STOP_FILE, b"", kind="workdir")
        return True

    def clean(self, job_id: str) -> None:
        """Delete the job's directory on the Pulsar side."""
        if self._watcher is not None:
            self._watcher.remove(job_id)
        self._call("DELETE", f"/jobs/{job_id}")

    def healthy(self) -> bool:
        """True when Pulsar answers its health check (which checks TESP's token too) with
        its own JSON: a proxy's page answering 200 is no Pulsar (and would make a down
        backend flap up and down)."""
        try:
            return "version" in self._json_object(self._call("GET", "/healthz"), "/healthz")
        except BackendError:
            return False

    def close(self) -> None:
        """Close the kept-alive connections (and stop watching job directories)."""
        if self._watcher is not None:
            self._watcher.close()
            self._watcher = None
        self._uploads.shutdown(wait=True)
        self._http.clear()

    # -- HTTP -------------------------------------------------------------------------------

    def _json_object(self, response: urllib3.BaseHTTPResponse, path: str) -> dict[str, Any]:
        """The JSON object Pulsar answered; a 200 with anything else (a proxy's login or
        maintenance page) is taken for an outage, retried like one."""
        try:
            value = response.json()
        except ValueError:
            value = None
        if not isinstance(value, dict):
            kind = response.headers.get("Content-Type", "no content type")
            raise BackendUnavailableError(
                f"Pulsar at {self.shown_url} answered {path} with HTTP {response.status} and a "
                f"body that is not Pulsar's JSON ({redact_text(kind)}): a proxy in the way?"
            )
        return value

    def _upload(self, job_id: str, name: str, body: bytes, *, kind: str = "tool") -> None:
        self._call("POST", f"/jobs/{job_id}/files", params={"name": name, "type": kind}, data=body)

    def _call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        data: bytes | None = None,
        lost_ok: bool = False,
    ) -> urllib3.BaseHTTPResponse:
        query = dict(params or {})
        if self._token:
            query["private_token"] = self._token
        url = f"{self.url}{path}?{urlencode(query)}" if query else self.url + path
        try:
            response = self._http.request(method, url, body=data)
        except (Urllib3Error, OSError) as exc:
            # The error names the URL, whose query holds the token: redacted.
            raise BackendUnavailableError(
                f"Pulsar at {self.shown_url} unreachable: {redact_text(str(exc))}"
            ) from exc
        code = response.status
        if code == 404 and lost_ok:
            raise BackendJobLostError(f"Pulsar at {self.shown_url} has no such job ({path})")
        if code >= 500:
            if lost_ok:
                # Pulsar answers 500 for a job whose directory is gone.
                raise BackendJobLostError(
                    f"Pulsar at {self.shown_url} failed on {method} {path}: HTTP {code}"
                )
            raise BackendUnavailableError(
                f"Pulsar at {self.shown_url} failed on {method} {path}: HTTP {code}"
            )
        if code in (401, 403):
            log.error("Pulsar at %s refused TESP's token: check pulsar_token", self.shown_url)
            raise BackendAuthError(f"Pulsar at {self.shown_url} refused TESP's token")
        if code >= 400:
            raise BackendError(f"Pulsar at {self.shown_url}: {method} {path} answered HTTP {code}")
        return response


def _pool(url: str, size: int, timeout: float) -> urllib3.PoolManager:
    """Kept-alive connections to ``url``'s host, through the proxy the environment names
    for it, if any. No retries: a failed call is retried by the dispatcher's back-off, and
    only the dispatcher knows whether a submission may be repeated."""
    options: dict[str, Any] = {
        "num_pools": 4,
        "maxsize": size,
        "retries": False,
        "timeout": urllib3.Timeout(connect=timeout, read=timeout),
    }
    if url.startswith("https:"):
        options["ca_certs"] = _ca_bundle()
    # requests' own rules: NO_PROXY with CIDR blocks and host:port entries, ALL_PROXY.
    proxy = select_proxy(url, get_environ_proxies(url))
    if proxy:
        return urllib3.ProxyManager(proxy, **options)
    return urllib3.PoolManager(**options)


def _ca_bundle() -> str:
    """The CA bundle requests would verify Pulsar's certificate with."""
    named = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if named:
        return named
    import certifi  # requests' own dependency, so always installed with TESP

    return str(certifi.where())


def _submit_query(command: str, task: Task) -> dict[str, str]:
    """The query of ``/jobs/{id}/submit``: the command line and the scheduler request.

    ``params`` is what Pulsar hands its manager as ``submit_params``; the directive line
    serves managers that ignore them (``queued_cli``, see ``backends/scheduler.py``).
    """
    request = scheduler_request(task)
    if request.empty:
        return {"command_line": command}
    return {
        "command_line": f"{script_directive(request)}\n{command}",
        "params": json.dumps(submit_params(request)),
    }


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` readable by this user only (a spec holds secrets)."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def _read_local_json(path: str) -> dict[str, Any] | None:
    try:
        with open(path, "rb") as fh:
            value = json.loads(fh.read())
    except (OSError, ValueError):
        return None  # absent, or being replaced: read again on the next poll
    return value if isinstance(value, dict) else None
