"""Authentication modes against a real ``tesp serve``: Basic and OIDC bearer tokens."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
import tes

from tesp_core.server.auth import hash_password
from tests.conftest import TespProcess
from tests.servers import OidcIssuer

TASK = {"executors": [{"image": "alpine", "command": ["true"]}]}


def _users() -> dict[str, dict[str, Any]]:
    return {
        "alice": {"password_hash": hash_password("alice-pw", iterations=1000)},
        "bob": {"password_hash": hash_password("bob-pw", iterations=1000)},
        "root": {"password_hash": hash_password("root-pw", iterations=1000), "roles": ["admin"]},
        "guest": {"password_hash": hash_password("guest-pw", iterations=1000), "roles": ["viewer"]},
    }


@pytest.fixture(scope="module")
def basic_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TespProcess]:
    base = tmp_path_factory.mktemp("basic")
    env = {
        "TESP_AUTH_MODE": "basic",
        "TESP_BASIC_USERS": json.dumps(_users()),
        "TESP_USER_ROLE": "user",
    }
    server = TespProcess(data_dir=base / "data", storage=base / "st", env=env).start()
    yield server
    server.stop()


def test_basic_requires_credentials(basic_server: TespProcess) -> None:
    api = basic_server.api
    # service-info stays public.
    assert requests.get(f"{api}/service-info", timeout=10).status_code == 200
    missing = requests.get(f"{api}/tasks", timeout=10)
    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"] == 'Basic realm="tes"'
    # Nobody else on the host may read the database (it keeps the URLs clients sent).
    assert basic_server.data_dir.stat().st_mode & 0o777 == 0o700
    wrong = requests.get(f"{api}/tasks", auth=("alice", "nope"), timeout=10)
    assert wrong.status_code == 401
    unknown = requests.get(f"{api}/tasks", auth=("mallory", "x"), timeout=10)
    assert unknown.status_code == 401
    assert requests.get(f"{api}/tasks", auth=("guest", "guest-pw"), timeout=10).status_code == 403


def test_basic_users_see_only_their_tasks(basic_server: TespProcess) -> None:
    api = basic_server.api
    alice = tes.HTTPClient(basic_server.url, user="alice", password="alice-pw")
    task_id = alice.create_task(
        tes.Task(**{"executors": [tes.Executor(image="alpine", command=["true"])]})
    )
    assert alice.get_task(task_id, "MINIMAL").id == task_id
    assert task_id in [t.id for t in alice.list_tasks().tasks]
    bob = ("bob", "bob-pw")
    assert requests.get(f"{api}/tasks/{task_id}", auth=bob, timeout=10).status_code == 404
    assert requests.post(f"{api}/tasks/{task_id}:cancel", auth=bob, timeout=10).status_code == 404
    bob_list = requests.get(f"{api}/tasks", auth=bob, timeout=10).json()["tasks"]
    assert task_id not in [t["id"] for t in bob_list]
    root_list = requests.get(f"{api}/tasks", auth=("root", "root-pw"), timeout=10).json()
    assert task_id in [t["id"] for t in root_list["tasks"]]
    root_view = requests.get(f"{api}/tasks/{task_id}", auth=("root", "root-pw"), timeout=10)
    assert root_view.status_code == 200


@pytest.fixture(scope="module")
def oidc(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[TespProcess, OidcIssuer, OidcIssuer]]:
    trusted, untrusted = OidcIssuer(), OidcIssuer()
    base: Path = tmp_path_factory.mktemp("oidc")
    env = {
        "TESP_AUTH_MODE": "oidc",
        "TESP_OIDC_ISSUERS": json.dumps([trusted.url]),
        "TESP_OIDC_AUDIENCE": "tesp",
        "TESP_OIDC_ALGORITHMS": '["RS256"]',
    }
    server = TespProcess(data_dir=base / "data", storage=base / "st", env=env).start()
    yield server, trusted, untrusted
    server.stop()
    trusted.stop()
    untrusted.stop()


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_oidc_rejects_bad_tokens(oidc: tuple[TespProcess, OidcIssuer, OidcIssuer]) -> None:
    server, trusted, untrusted = oidc
    api = server.api
    cases = {
        "no token": {},
        "garbage": _bearer("not-a-jwt"),
        "untrusted issuer": _bearer(untrusted.token("eve")),
        "untrusted key claiming the trusted issuer": _bearer(
            untrusted.token("eve", iss=trusted.url)
        ),
        "expired": _bearer(trusted.token("alice", exp=time.time() - 3600)),
        "wrong audience": _bearer(trusted.token("alice", aud="someone-else")),
        "HS256 with the public key": _bearer(
            jwt.encode(
                {"sub": "x", "aud": "tesp", "iss": trusted.url, "exp": int(time.time()) + 60},
                "an-hmac-secret-that-is-long-enough-for-sha256",
                algorithm="HS256",
            )
        ),
    }
    for name, headers in cases.items():
        response = requests.get(f"{api}/tasks", headers=headers, timeout=10)
        assert response.status_code == 401, (name, response.text)
    expired = requests.get(f"{api}/tasks", headers=cases["expired"], timeout=10).json()
    assert expired["msg"] == "token expired"


def test_oidc_users_and_admin(oidc: tuple[TespProcess, OidcIssuer, OidcIssuer]) -> None:
    server, trusted, _ = oidc
    api = server.api
    alice = tes.HTTPClient(server.url, token=trusted.token("alice"))
    task_id = alice.create_task(tes.Task(executors=[tes.Executor(image="a", command=["true"])]))
    assert alice.get_task(task_id, "MINIMAL").id == task_id
    bob = _bearer(trusted.token("bob"))
    assert requests.get(f"{api}/tasks/{task_id}", headers=bob, timeout=10).status_code == 404
    assert requests.get(f"{api}/tasks", headers=bob, timeout=10).json()["tasks"] == []
    admin = _bearer(trusted.token("ops", roles=["admin"]))
    assert requests.get(f"{api}/tasks/{task_id}", headers=admin, timeout=10).status_code == 200
    cancel = requests.post(f"{api}/tasks/{task_id}:cancel", headers=admin, timeout=10)
    assert cancel.status_code == 200


def test_non_loopback_without_auth_is_refused(tmp_path: Path) -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tesp_core.cli",
            "serve",
            "--host",
            "0.0.0.0",
            "--data-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "refusing to listen on 0.0.0.0" in result.stderr
