"""The ``tesp`` client commands, run as real processes against a real ``tesp serve``."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tesp_core.server.auth import hash_password
from tests.conftest import TespProcess, free_port
from tests.servers import OidcIssuer

TESP = str(Path(sys.executable).parent / "tesp")


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    # No TESP_* of the caller and no real ~/.config/tesp/client.toml leak into a test.
    env = {k: v for k, v in os.environ.items() if not k.startswith("TESP_")}
    env["XDG_CONFIG_HOME"] = str(tmp / "xdg")
    env.update(extra)
    return env


def tesp(
    env: dict[str, str], *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the real ``tesp`` console script."""
    return subprocess.run(
        [TESP, *args], env=env, input=stdin, capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def env(tesp_server: TespProcess, tmp_path: Path) -> dict[str, str]:
    return _env(tmp_path, TESP_URL=tesp_server.url)


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_run_keeps_argv_and_wait_json_reports_complete(env: dict[str, str]) -> None:
    name = _unique("argv")
    done = tesp(
        env,
        "run",
        "--json",
        "--wait",
        "--image",
        "alpine",
        "--name",
        name,
        "--tag",
        "k=v",
        "--",
        "sh",
        "-c",
        'echo "$1"',
        "sh",
        "a b; $(c)",
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["exit"] == 0
    [task] = result["tasks"]
    assert task["state"] == "COMPLETE"
    full = json.loads(tesp(env, "get", task["id"], "--json").stdout)
    assert full["executors"][0]["command"] == ["sh", "-c", 'echo "$1"', "sh", "a b; $(c)"]
    assert full["logs"][0]["logs"][0]["stdout"] == "a b; $(c)\n"
    assert full["tags"] == {"k": "v"}
    human = tesp(env, "get", task["id"])
    assert human.returncode == 0
    assert "COMPLETE" in human.stdout
    assert "a b; $(c)" in human.stdout
    assert name in human.stdout


def test_executor_error_exit_code(env: dict[str, str]) -> None:
    run = tesp(env, "run", "--wait", "--image", "alpine", "--", "sh", "-c", "exit 3")
    assert run.returncode == 4, run.stderr
    task_id = run.stdout.strip()
    uuid.UUID(task_id)  # stdout holds only the id
    assert f"{task_id} EXECUTOR_ERROR" in run.stderr
    again = tesp(env, "wait", task_id)
    assert (again.returncode, again.stdout.split()) == (4, [task_id, "EXECUTOR_ERROR"])
    as_json = tesp(env, "wait", task_id, "--json")
    assert as_json.returncode == 4
    assert json.loads(as_json.stdout) == {
        "tasks": [{"id": task_id, "state": "EXECUTOR_ERROR"}],
        "exit": 4,
    }


def test_submit_file_and_stdin_then_list(env: dict[str, str], tmp_path: Path) -> None:
    prefix = _unique("submit")
    task = {
        "name": f"{prefix}-file",
        "tags": {"batch": prefix},
        "executors": [{"image": "alpine", "command": ["echo", "from file"]}],
    }
    path = tmp_path / "task.json"
    path.write_text(json.dumps(task))
    from_file = tesp(env, "submit", str(path))
    assert from_file.returncode == 0, from_file.stderr
    stdin_task = {**task, "name": f"{prefix}-stdin", "tags": {}}
    from_stdin = tesp(env, "submit", "-", "--json", stdin=json.dumps(stdin_task))
    assert from_stdin.returncode == 0, from_stdin.stderr
    ids = [from_file.stdout.strip(), json.loads(from_stdin.stdout)["id"]]
    waited = tesp(env, "wait", *ids, "--json")
    assert waited.returncode == 0
    assert [t["state"] for t in json.loads(waited.stdout)["tasks"]] == ["COMPLETE", "COMPLETE"]

    listed = json.loads(tesp(env, "list", "--name-prefix", prefix, "--json").stdout)
    assert sorted(t["id"] for t in listed["tasks"]) == sorted(ids)
    tagged = json.loads(tesp(env, "list", "--tag", f"batch={prefix}", "--json").stdout)
    assert [t["id"] for t in tagged["tasks"]] == [ids[0]]
    human = tesp(env, "list", "--name-prefix", prefix, "--state", "complete")
    assert human.returncode == 0
    for task_id, name in zip(ids, [f"{prefix}-file", f"{prefix}-stdin"], strict=True):
        line = next(ln for ln in human.stdout.splitlines() if ln.startswith(task_id))
        assert line.split()[1:3] == ["COMPLETE", name]


def test_list_pages_and_all(env: dict[str, str]) -> None:
    prefix = _unique("page")
    ids = [
        tesp(env, "run", "--image", "a", "--name", f"{prefix}-{i}", "--", "true").stdout.strip()
        for i in range(3)
    ]
    one = json.loads(
        tesp(
            env, "list", "--name-prefix", prefix, "--page-size", "1", "--view", "minimal", "--json"
        ).stdout
    )
    assert len(one["tasks"]) == 1
    assert one["next_page_token"]
    every = json.loads(
        tesp(env, "list", "--name-prefix", prefix, "--page-size", "1", "--all", "--json").stdout
    )
    assert sorted(t["id"] for t in every["tasks"]) == sorted(ids)
    human = tesp(env, "list", "--name-prefix", prefix, "--page-size", "1")
    assert "--page-token" in human.stdout
    assert tesp(env, "wait", *ids).returncode == 0


def test_cancel_wait_canceled_and_timeout(env: dict[str, str]) -> None:
    slow = tesp(env, "run", "--image", "a", "--", "sleep", "60").stdout.strip()
    timed = tesp(env, "wait", slow, "--timeout", "0.3", "--json")
    assert timed.returncode == 7
    assert json.loads(timed.stdout)["tasks"][0]["state"] in {"QUEUED", "INITIALIZING", "RUNNING"}
    canceled = tesp(env, "cancel", slow, "--json")
    assert (canceled.returncode, json.loads(canceled.stdout)) == (
        0,
        {"canceled": [slow], "unchanged": {}, "failed": {}},
    )
    waited = tesp(env, "wait", slow)
    assert (waited.returncode, waited.stdout.split()) == (6, [slow, "CANCELED"])
    missing = tesp(env, "cancel", "no-such-task", slow)
    assert missing.returncode == 3
    assert "cancel no-such-task: not found (HTTP 404)" in missing.stderr
    assert missing.stdout == f"{slow}: already CANCELED, unchanged\n"


def test_bad_input_errors_name_the_field(env: dict[str, str], tmp_path: Path) -> None:
    no_image = tesp(env, "submit", "-", "--json", stdin='{"executors": [{"command": ["true"]}]}')
    assert no_image.returncode == 3
    assert no_image.stdout == ""
    assert no_image.stderr == "tesp: invalid request: executors[0].image: Field required\n"
    bad_json = tesp(env, "submit", "-", stdin='{"executors": [')
    assert bad_json.returncode == 2
    assert bad_json.stderr.startswith("tesp: stdin: not valid JSON at line 1 column 16")
    bad_flag = tesp(env, "run", "--image", "a", "-i", "http://h/in", "--", "true")
    assert bad_flag.returncode == 2
    assert bad_flag.stderr.startswith("tesp: -i 'http://h/in': expected URL:PATH")
    assert "Traceback" not in no_image.stderr + bad_json.stderr + bad_flag.stderr


def test_unreachable_server(tmp_path: Path) -> None:
    url = f"http://someone:pw-in-url@127.0.0.1:{free_port()}"
    done = tesp(_env(tmp_path), "list", "--url", url)
    assert done.returncode == 2
    assert done.stderr == f"tesp: cannot reach TESP at {url.replace('pw-in-url', '***')}\n"


def _users() -> dict[str, dict[str, Any]]:
    return {
        "alice": {"password_hash": hash_password("alice-cli-pw", iterations=1000)},
        "guest": {
            "password_hash": hash_password("guest-cli-pw", iterations=1000),
            "roles": ["viewer"],
        },
    }


# Client variables in the server's own environment: Settings (extra="forbid") must ignore them.
CLIENT_VARS = {
    "TESP_URL": "http://127.0.0.1:1",
    "TESP_USER": "nobody",
    "TESP_PASSWORD": "not-a-server-setting",
    "TESP_TOKEN": "not-a-server-setting",
    "TESP_CLIENT_CONFIG": "/nonexistent/client.toml",
}


@pytest.fixture(scope="module")
def basic_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TespProcess]:
    base = tmp_path_factory.mktemp("cli-basic")
    env = {
        "TESP_AUTH_MODE": "basic",
        "TESP_BASIC_USERS": json.dumps(_users()),
        "TESP_USER_ROLE": "user",
        **CLIENT_VARS,
    }
    server = TespProcess(data_dir=base / "data", storage=base / "st", env=env).start()
    yield server
    server.stop()


def test_serve_starts_with_client_env_vars_set(basic_server: TespProcess) -> None:
    assert basic_server.proc is not None
    assert basic_server.proc.poll() is None
    assert "TESP_URL" in basic_server.env


def test_basic_auth_from_env_stdin_and_config(basic_server: TespProcess, tmp_path: Path) -> None:
    env = _env(tmp_path, TESP_URL=basic_server.url, TESP_USER="alice", TESP_PASSWORD="alice-cli-pw")
    done = tesp(env, "run", "--wait", "--json", "--image", "a", "--", "true")
    assert done.returncode == 0, done.stderr
    task_id = json.loads(done.stdout)["tasks"][0]["id"]

    anon = _env(tmp_path, TESP_URL=basic_server.url)
    refused = tesp(anon, "get", task_id)
    assert refused.returncode == 3
    assert refused.stderr.startswith("tesp: authentication failed (HTTP 401)")
    wrong = tesp({**anon, "TESP_USER": "alice", "TESP_PASSWORD": "wrong-secret-9"}, "list")
    assert wrong.returncode == 3
    assert "wrong-secret-9" not in wrong.stdout + wrong.stderr
    guest = tesp({**anon, "TESP_USER": "guest", "TESP_PASSWORD": "guest-cli-pw"}, "list")
    assert guest.returncode == 3
    assert guest.stderr.startswith("tesp: forbidden (HTTP 403)")

    piped = tesp(
        anon,
        "get",
        task_id,
        "--user",
        "alice",
        "--password-stdin",
        "--json",
        stdin="alice-cli-pw\n",
    )
    assert (piped.returncode, json.loads(piped.stdout)["state"]) == (0, "COMPLETE")
    client_toml = tmp_path / "client.toml"
    client_toml.write_text(
        f'url = "{basic_server.url}"\nuser = "alice"\npassword = "alice-cli-pw"\n'
    )
    from_file = tesp(_env(tmp_path), "get", task_id, "--client-config", str(client_toml))
    assert from_file.returncode == 0, from_file.stderr
    assert "COMPLETE" in from_file.stdout
    for result in (done, piped, from_file):
        assert "alice-cli-pw" not in result.stdout + result.stderr


def test_config_show_masks_secrets(tmp_path: Path) -> None:
    secrets = ["hunter2-url", "pulsar-secret-tok", "AKIA-CLI-KEY", "s3-cli-secret", "bearer-cli"]
    config = tmp_path / "tesp.toml"
    config.write_text(
        'pulsar_url = "https://tesp:hunter2-url@pulsar.example.org:8913"\n'
        'pulsar_token = "pulsar-secret-tok"\n'
        "port = 9100\n"
        '[http_hosts."data.example.org"]\nbearer_token = "bearer-cli"\n'
    )
    env = _env(
        tmp_path, TESP_S3_ACCESS_KEY_ID="AKIA-CLI-KEY", TESP_S3_SECRET_ACCESS_KEY="s3-cli-secret"
    )
    shown = tesp(env, "config", "show", "--config", str(config))
    assert shown.returncode == 0, shown.stderr
    as_json = tesp(env, "config", "show", "--config", str(config), "--json")
    for secret in secrets:
        assert secret not in shown.stdout + shown.stderr + as_json.stdout + as_json.stderr
    parsed = tomllib.loads(shown.stdout)
    assert parsed["port"] == 9100
    assert parsed["pulsar_url"] == "https://tesp:***@pulsar.example.org:8913"
    assert parsed["s3_secret_access_key"] == "***"
    assert parsed["http_hosts"]["data.example.org"]["bearer_token"] == "***"
    assert json.loads(as_json.stdout)["pulsar_token"] == "***"
    bad = tesp(env, "config", "show", "--config", str(tmp_path / "missing.toml"))
    assert (bad.returncode, bad.stderr) == (
        2,
        f"tesp: --config: no such file {tmp_path}/missing.toml\n",
    )


def _run_in_pty(argv: list[str], env: dict[str, str]) -> tuple[int, str]:
    master, slave = pty.openpty()
    proc = subprocess.Popen(argv, env=env, stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    chunks: list[bytes] = []
    while True:
        ready, _, _ = select.select([master], [], [], 60)
        if not ready:
            proc.kill()
            raise AssertionError(f"no output from {argv}: {b''.join(chunks)!r}")
        try:
            data = os.read(master, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    return proc.wait(30), b"".join(chunks).decode(errors="replace")


def test_wait_in_a_terminal_shows_the_live_table(env: dict[str, str]) -> None:
    task_id = tesp(env, "run", "--image", "a", "--", "sh", "-c", "sleep 1; exit 5").stdout.strip()
    code, screen = _run_in_pty(
        [TESP, "wait", task_id, "--interval", "0.2"], {**env, "TERM": "xterm", "COLUMNS": "120"}
    )
    assert code == 4, screen
    assert "\x1b[?25l" in screen  # rich's Live hides the cursor while it redraws
    assert "1/1 tasks ended" in screen
    assert "0/1 tasks ended" in screen  # it was drawn before the task ended, then again
    assert "EXECUTOR_ERROR" in screen


@pytest.fixture(scope="module")
def oidc_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[TespProcess, OidcIssuer]]:
    issuer = OidcIssuer()
    base = tmp_path_factory.mktemp("cli-oidc")
    env = {
        "TESP_AUTH_MODE": "oidc",
        "TESP_OIDC_ISSUERS": json.dumps([issuer.url]),
        "TESP_OIDC_AUDIENCE": "tesp",
    }
    server = TespProcess(data_dir=base / "data", storage=base / "st", env=env).start()
    yield server, issuer
    server.stop()
    issuer.server.shutdown()
    issuer.server.server_close()


def test_bearer_token_from_env_and_flag(
    oidc_server: tuple[TespProcess, OidcIssuer], tmp_path: Path
) -> None:
    server, issuer = oidc_server
    alice = issuer.token("alice")
    env = _env(tmp_path, TESP_URL=server.url, TESP_TOKEN=alice)
    done = tesp(env, "run", "--wait", "--image", "a", "--", "true")
    assert done.returncode == 0, done.stderr
    task_id = done.stdout.strip()
    bob = tesp(env, "get", task_id, "--token", issuer.token("bob"))
    assert bob.returncode == 3
    assert bob.stderr.endswith(f"tesp: not found (HTTP 404): task '{task_id}' not found\n")
    assert "visible to other users" in bob.stderr  # --token on the command line warns
    expired = issuer.token("alice", exp=time.time() - 60)
    late = tesp({**env, "TESP_TOKEN": expired}, "list")
    assert late.returncode == 3
    assert late.stderr.startswith("tesp: authentication failed (HTTP 401): token expired")
    for result in (done, bob, late):
        assert alice not in result.stdout + result.stderr
        assert expired not in result.stdout + result.stderr
