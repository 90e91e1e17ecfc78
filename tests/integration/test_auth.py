"""Authentication modes against a real ``tesp serve``: Basic and OIDC bearer tokens."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
import tes
from cryptography.hazmat.primitives.asymmetric import rsa

from tesp_core.server.auth import hash_password
from tests.conftest import TespProcess

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


class _Issuer:
    """A minimal OIDC issuer on loopback: discovery document and JWKS."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        jwk.update({"kid": "k1", "use": "sig", "alg": "RS256"})
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/.well-known/openid-configuration":
                    body = {"issuer": issuer.url, "jwks_uri": f"{issuer.url}/jwks"}
                elif self.path == "/jwks":
                    body = {"keys": [jwk]}
                else:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def token(
        self,
        sub: str,
        *,
        aud: str = "tesp",
        exp: float | None = None,
        roles: list[str] | None = None,
        iss: str | None = None,
    ) -> str:
        claims = {
            "sub": sub,
            "aud": aud,
            "iss": iss or self.url,
            "exp": int(exp if exp is not None else time.time() + 300),
            "roles": roles or [],
        }
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": "k1"})


@pytest.fixture(scope="module")
def oidc(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[TespProcess, _Issuer, _Issuer]]:
    trusted, untrusted = _Issuer(), _Issuer()
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
    for issuer in (trusted, untrusted):
        issuer.server.shutdown()
        issuer.server.server_close()


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_oidc_rejects_bad_tokens(oidc: tuple[TespProcess, _Issuer, _Issuer]) -> None:
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


def test_oidc_users_and_admin(oidc: tuple[TespProcess, _Issuer, _Issuer]) -> None:
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
