"""What a fresh user sees of ``tesp serve``: banner, busy port, error messages, service-info."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tesp_core import __version__
from tests.conftest import TespProcess


def test_banner_names_api_and_dashboard_once_listening(tesp_server: TespProcess) -> None:
    lines = tesp_server.log_text_full().splitlines()
    url = f"http://127.0.0.1:{tesp_server.port}"
    banner = (
        f"TESP {__version__} serving TES 1.1 at {url}/ga4gh/tes/v1 (dashboard: {url}/dashboard/)"
    )
    assert lines.count(banner) == 1
    # Printed after uvicorn finished its start-up, i.e. once the socket listens.
    started = next(i for i, line in enumerate(lines) if "Application startup complete" in line)
    assert lines.index(banner) > started


def test_busy_port_is_one_clear_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        command = [sys.executable, "-m", "tesp_core.cli", "serve", "--port", str(port)]
        done = subprocess.run(
            [*command, "--data-dir", str(tmp_path / "data")],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        f"tesp: cannot listen on 127.0.0.1:{port}: address already in use"
    )
    assert "Traceback" not in done.stderr
    assert "serving TES" not in done.stdout + done.stderr
    # Nothing was started: no Pulsar data directory was made for a server that never ran.
    assert not (tmp_path / "data" / "pulsar").exists()


def test_long_ids_are_cut_in_error_messages(tesp_server: TespProcess) -> None:
    long_id = "a" * 5000
    response = requests.get(f"{tesp_server.api}/tasks/{long_id}", timeout=10)
    assert response.status_code == 404
    assert response.json() == {"status_code": 404, "msg": f"task '{'a' * 64}\u2026' not found"}
    response = requests.get(f"{tesp_server.api}/tasks", params={"state": "B" * 500}, timeout=10)
    assert response.status_code == 400
    assert response.json() == {
        "status_code": 400,
        "msg": f"state: unknown state '{'B' * 64}\u2026'",
        "field": "state",
    }


def test_default_service_info_claims_nothing(tesp_server: TespProcess) -> None:
    info = requests.get(f"{tesp_server.api}/service-info", timeout=10).json()
    assert "environment" not in info
    assert "documentationUrl" not in info
    assert info["type"] == {"group": "org.ga4gh", "artifact": "tes", "version": "1.1.0"}


@pytest.fixture(scope="module")
def described_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TespProcess]:
    base = tmp_path_factory.mktemp("described")
    env = {
        "TESP_SERVICE_ENVIRONMENT": "staging",
        "TESP_DOCUMENTATION_URL": "https://tes.example.net/docs/",
    }
    proc = TespProcess(data_dir=base / "data", storage=base / "st", env=env).start()
    yield proc
    proc.stop()


def test_configured_service_info(described_server: TespProcess) -> None:
    info = requests.get(f"{described_server.api}/service-info", timeout=10).json()
    assert info["environment"] == "staging"
    assert info["documentationUrl"] == "https://tes.example.net/docs/"


def test_documentation_url_must_be_a_url(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tesp_core.cli", "serve", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"TESP_DOCUMENTATION_URL": "not a url", "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 2
    assert done.stderr.startswith("tesp: ") and "documentation_url" in done.stderr
    assert "Traceback" not in done.stderr
