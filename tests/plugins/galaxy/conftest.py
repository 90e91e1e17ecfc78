"""Fixtures for the Galaxy runner: a real ``tesp serve`` and a real Galaxy server.

These tests run in Galaxy's own environment (``/work/venv-galaxy`` here; see
``plugins/galaxy/README.md``), because Galaxy pins ``pulsar-galaxy-lib<0.16`` and TESP needs
``pulsar-app==0.16``: both install the same ``pulsar`` package. ``tesp serve`` therefore runs
from TESP's environment, named by ``TESP_BIN`` (default ``.venv/bin/tesp`` in the repo).

In TESP's own environment (the main ``pytest`` run) Galaxy is not importable and this
directory is not collected.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import free_port

REPO = Path(__file__).resolve().parents[3]
DATA = Path(__file__).resolve().parent / "data"

if importlib.util.find_spec("galaxy.jobs") is None:  # TESP's environment: nothing to run here
    collect_ignore_glob = ["test_*.py"]
elif str(REPO / "plugins" / "galaxy") not in sys.path:  # works without installing the plugin
    sys.path.insert(0, str(REPO / "plugins" / "galaxy"))

# Warnings stay errors (pyproject's filterwarnings), except these, raised while importing
# Galaxy 26.1 and its dependencies, which are not ours to fix.
GALAXY_IMPORT_WARNINGS = (
    "ignore:'cgi' is deprecated:DeprecationWarning",
    "ignore:lib2to3 package is deprecated:DeprecationWarning",
    "ignore:pkg_resources is deprecated:UserWarning",
    # galaxy.tool_util reads edam_ontology's EDAM.tsv without closing it.
    "ignore:unclosed file.*EDAM.tsv:ResourceWarning",
    "ignore:.*EDAM.tsv:pytest.PytestUnraisableExceptionWarning",
)


def pytest_configure(config: pytest.Config) -> None:
    for line in GALAXY_IMPORT_WARNINGS:
        config.addinivalue_line("filterwarnings", line)


def tesp_bin() -> str:
    """The ``tesp`` executable of TESP's environment."""
    return os.environ.get("TESP_BIN") or str(REPO / ".venv" / "bin" / "tesp")


def _wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: process exited:\n{log.read_text(errors='replace')[-6000:]}")
        with contextlib.suppress(requests.RequestException):
            if requests.get(url, timeout=2).ok:
                return
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer in {timeout}s:\n{log.read_text()[-6000:]}")


def _stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


@dataclass
class TespServe:
    """``tesp serve`` from TESP's environment, with its embedded Pulsar.

    ``name`` keeps its data directory and log apart from another server's under ``base``;
    ``file_roots`` (default: ``base``) are the directories its ``file://`` URLs may name.
    """

    base: Path
    name: str = "tesp"
    runtime: str = "none"
    file_roots: tuple[Path, ...] = ()
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> TespServe:
        binary = tesp_bin()
        if not os.access(binary, os.X_OK):
            raise RuntimeError(f"TESP_BIN={binary} is not executable: set TESP_BIN")
        roots = [
            arg for root in self.file_roots or (self.base,) for arg in ("--file-root", str(root))
        ]
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [binary, "serve", "--host", "127.0.0.1", "--port", str(self.port),
                 "--data-dir", str(self.base / f"{self.name}-data"), "--runtime", self.runtime,
                 *roots],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        return self

    def wait(self) -> TespServe:
        assert self.proc is not None
        _wait_http(f"{self.url}/ga4gh/tes/v1/service-info", self.proc, 90, self.log)
        return self

    @property
    def log(self) -> Path:
        return self.base / f"{self.name}-serve.log"

    def task(self, task_id: str) -> dict[str, Any]:
        resp = requests.get(
            f"{self.url}/ga4gh/tes/v1/tasks/{task_id}", params={"view": "FULL"}, timeout=10
        )
        resp.raise_for_status()
        return dict(resp.json())


JOB_CONF = """\
runners:
  local:
    load: galaxy.jobs.runners.local:LocalJobRunner
    workers: 1
  tesp:
    load: tesp_galaxy.runner:TESPJobRunner
    workers: 2
    tes_url: {tes_url}
execution:
  default: tes
  environments:
    tes:
      runner: tesp
      cpu_cores: 1
      ram_gb: 0.5
      tes_tags: {{origin: galaxy-test}}
    tes_staged:
      runner: tesp
      tes_url: {staged_tes_url}
      staging: tes
    local:
      runner: local
tools:
- class: local
  environment: local
- id: tesp_cat
  environment: tes_staged
"""

GALAXY_YML = """\
galaxy:
  data_dir: {base}/galaxy-data
  database_connection: sqlite:///{base}/galaxy-data/galaxy.sqlite?isolation_level=IMMEDIATE
  tool_config_file: {base}/tool_conf.xml
  job_config_file: {base}/job_conf.yml
  conda_auto_init: false
  conda_auto_install: false
  enable_celery_tasks: false
  bootstrap_admin_api_key: {admin_key}
  admin_users: admin@example.org
  allow_local_account_creation: true
  watch_tools: false
  enable_mulled_containers: false
  job_runner_monitor_sleep: 0.5
  cleanup_job: never
  track_jobs_in_database: true
"""


@dataclass
class GalaxyServer:
    """A real Galaxy (``galaxy-app`` + ``galaxy-web-apps``) under uvicorn, SQLite, no Celery."""

    base: Path
    tes_url: str
    #: The TES server of environment ``tes_staged`` (``staging: tes``), which runs ``tesp_cat``.
    staged_tes_url: str
    port: int = field(default_factory=free_port)
    admin_key: str = "tesp-test-bootstrap-admin-key"
    proc: subprocess.Popen[bytes] | None = None
    api_key: str | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.base / "galaxy.log"

    def write_config(self) -> None:
        (self.base / "tool_conf.xml").write_text(
            f'<toolbox><section id="tesp" name="TESP">'
            f'<tool file="{DATA / "tesp_echo.xml"}"/><tool file="{DATA / "tesp_cat.xml"}"/>'
            "</section></toolbox>\n"
        )
        (self.base / "job_conf.yml").write_text(
            JOB_CONF.format(tes_url=self.tes_url, staged_tes_url=self.staged_tes_url)
        )
        (self.base / "galaxy.yml").write_text(
            GALAXY_YML.format(base=self.base, admin_key=self.admin_key)
        )

    def start(self, timeout: float = 300) -> GalaxyServer:
        env = {
            **os.environ,
            "GALAXY_CONFIG_FILE": str(self.base / "galaxy.yml"),
            "PYTHONPATH": os.pathsep.join(
                p for p in (str(REPO / "plugins" / "galaxy"), os.environ.get("PYTHONPATH")) if p
            ),
        }
        env.pop("PYTHONWARNINGS", None)
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [str(Path(sys.executable).parent / "uvicorn"), "--factory",
                 "galaxy.webapps.galaxy.fast_factory:factory",
                 "--host", "127.0.0.1", "--port", str(self.port)],
                stdout=out, stderr=subprocess.STDOUT, env=env, cwd=self.base,
                start_new_session=True,
            )  # fmt: skip
        _wait_http(f"{self.url}/api/version", self.proc, timeout, self.log)
        return self

    def stop(self) -> None:
        _stop(self.proc)
        self.proc = None

    def request(self, method: str, path: str, *, admin: bool = False, **kw: Any) -> Any:
        key = self.admin_key if admin else self.api_key
        resp = requests.request(
            method, f"{self.url}/api/{path}", headers={"x-api-key": key or ""}, timeout=30, **kw
        )
        assert resp.ok, f"{method} {path}: {resp.status_code} {resp.text[:2000]}"
        return resp.json() if resp.content else None

    def make_user(self) -> None:
        user = self.request(
            "POST", "users", admin=True,
            json={"username": "tesp", "email": "tesp@example.org", "password": "tesp-pass-123"},
        )  # fmt: skip
        self.api_key = self.request("POST", f"users/{user['id']}/api_key", admin=True)

    def run_tool(
        self, history_id: str, tool_id: str = "tesp_echo", **inputs: Any
    ) -> tuple[str, str]:
        """Run a tool (default ``tesp_echo``); return (job id, output dataset id)."""
        out = self.request(
            "POST", "tools",
            json={"tool_id": tool_id, "history_id": history_id, "inputs": inputs},
        )  # fmt: skip
        return out["jobs"][0]["id"], out["outputs"][0]["id"]

    def wait_dataset(self, dataset_id: str, timeout: float = 120) -> dict[str, Any]:
        """The dataset once it is ``ok`` (or fails the test)."""
        deadline = time.monotonic() + timeout
        dataset: dict[str, Any] = {}
        while time.monotonic() < deadline:
            dataset = self.request("GET", f"datasets/{dataset_id}", admin=True)
            if dataset["state"] == "ok":
                return dataset
            assert dataset["state"] not in {"error", "failed_metadata", "discarded"}, dataset
            time.sleep(0.5)
        raise AssertionError(f"dataset {dataset_id} never became ok: {dataset}")

    def job(self, job_id: str) -> dict[str, Any]:
        return dict(self.request("GET", f"jobs/{job_id}", admin=True, params={"full": "true"}))

    def wait_job(self, job_id: str, states: set[str], timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        job: dict[str, Any] = {}
        while time.monotonic() < deadline:
            job = self.job(job_id)
            if job["state"] in states:
                return job
            time.sleep(0.5)
        raise AssertionError(f"job {job_id} never reached {states}: {job}\n{self.log_tail()}")

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-6000:] if self.log.exists() else ""


@pytest.fixture(scope="session")
def galaxy_base() -> Iterator[Path]:
    """One directory under which TESP's ``--file-root`` and Galaxy's data both live."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="tesp-galaxy-") as tmp:
        yield Path(tmp)


@pytest.fixture(scope="session")
def tesp_serve(galaxy_base: Path) -> Iterator[TespServe]:
    server = TespServe(galaxy_base).start().wait()
    yield server
    _stop(server.proc)


@pytest.fixture(scope="session")
def tesp_bwrap(galaxy_base: Path) -> Iterator[TespServe]:
    """A second ``tesp serve``, runtime ``bwrap``: a task sees only what it staged.

    Its ``file://`` roots are Galaxy's data directory (job directories, datasets) and the
    test tools' directory; nothing else of Galaxy's may be staged.
    """
    (galaxy_base / "galaxy-data").mkdir(exist_ok=True)
    server = TespServe(
        galaxy_base, name="tesp-bwrap", runtime="bwrap",
        file_roots=(galaxy_base / "galaxy-data", DATA),
    ).start().wait()  # fmt: skip
    yield server
    _stop(server.proc)


@pytest.fixture(scope="session")
def galaxy(
    galaxy_base: Path, tesp_serve: TespServe, tesp_bwrap: TespServe
) -> Iterator[GalaxyServer]:
    server = GalaxyServer(galaxy_base, tes_url=tesp_serve.url, staged_tes_url=tesp_bwrap.url)
    server.write_config()
    server.start()
    server.make_user()
    yield server
    server.stop()
