"""What a fresh user of the ``tesp`` client ran into, run for real against ``tesp serve``."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import TespProcess, free_port
from tests.integration.test_cli_client import TESP, _env, _unique, tesp

EVIL = "evil\x1b[2J\x1b[31mRED\x07"
EVIL_SHOWN = "evil\\x1b[2J\\x1b[31mRED\\x07"


@pytest.fixture
def env(tesp_server: TespProcess, tmp_path: Path) -> dict[str, str]:
    return _env(tmp_path, TESP_URL=tesp_server.url)


def _no_control(*texts: str) -> None:
    for text in texts:
        assert "\x1b" not in text
        assert "\x07" not in text


def test_control_characters_are_escaped_in_human_output(env: dict[str, str]) -> None:
    prefix = _unique("ctl")
    script = r"printf 'out\033[2J\a\tx\n'"
    done = tesp(
        env,
        "run",
        "--wait",
        "--image",
        "a",
        "--name",
        f"{prefix}{EVIL}",
        "--tag",
        f"t={EVIL}",
        "--",
        "sh",
        "-c",
        script,
    )
    assert done.returncode == 0, done.stderr
    task_id = done.stdout.strip()
    listed = tesp(env, "list", "--name-prefix", prefix)
    shown = tesp(env, "get", task_id)
    waited = tesp(env, "wait", task_id)
    _no_control(listed.stdout, shown.stdout, waited.stdout)
    assert f"{prefix}{EVIL_SHOWN}" in listed.stdout
    assert f"t={EVIL_SHOWN}" in shown.stdout
    assert "out\\x1b[2J\\x07" in shown.stdout  # stdout of the executor, escaped
    raw = json.loads(tesp(env, "get", task_id, "--json").stdout)
    assert raw["name"] == f"{prefix}{EVIL}"  # --json keeps the real value
    missing = tesp(env, "get", f"no{EVIL}")  # the server echoes the id in its message
    assert missing.returncode == 3
    _no_control(missing.stderr)
    assert f"task 'no{EVIL_SHOWN}' not found" in missing.stderr


def test_bad_flags_send_nothing(env: dict[str, str]) -> None:
    prefix = _unique("bad")
    cases = [
        (["--interval", "0", "--wait"], "tesp: --interval: must be more than 0 seconds (got 0)\n"),
        (["--timeout", "nan"], "tesp: --timeout: must be a finite number of seconds (got nan)\n"),
        (["--ram", "nan"], "tesp: --ram: must be a finite number (got nan)\n"),
        (["--ram", "inf"], "tesp: --ram: must be a finite number (got inf)\n"),
    ]
    for flags, message in cases:
        done = tesp(env, "run", "--image", "a", "--name", prefix, *flags, "--", "true")
        assert (done.returncode, done.stdout, done.stderr) == (2, "", message)
    nan = '{"name": "%s", "executors":[{"image":"a","command":["x"]}],"resources":{"ram_gb":NaN}}'
    piped = tesp(env, "submit", "-", stdin=nan % prefix)
    assert (piped.returncode, piped.stderr) == (
        2,
        "tesp: stdin: not valid JSON: NaN is not allowed\n",
    )
    null = tesp(env, "submit", "-", stdin="null")
    assert null.stderr == "tesp: stdin: must be a JSON object (a tesTask), not null\n"
    no_cmd = tesp(env, "run", "--image", "a")
    assert no_cmd.stderr == (
        "tesp: give the command after --, e.g. tesp run --image alpine -- echo hi\n"
    )
    listed = json.loads(tesp(env, "list", "--name-prefix", prefix, "--json").stdout)
    assert listed["tasks"] == []


def test_url_bases_and_no_api(tesp_server: TespProcess, tmp_path: Path) -> None:
    env = _env(tmp_path)
    url = tesp_server.url
    for base in (f"{url}/v1", f"{url}/v1/", f"{url}/ga4gh/tes/v1"):
        done = tesp(env, "list", "--url", base, "--page-size", "1", "--json")
        assert done.returncode == 0, done.stderr
        assert "tasks" in json.loads(done.stdout)
    for args in (["list"], ["get", "some-id"], ["cancel", "some-id"]):
        done = tesp(env, *args, "--url", f"{url}/nothing")
        assert done.returncode == 3
        assert done.stderr.endswith(f"no TES API at {url}/nothing/ga4gh/tes/v1 (HTTP 404)\n")
    real_404 = tesp(env, "get", "some-id", "--url", url)
    assert real_404.stderr == "tesp: not found (HTTP 404): task 'some-id' not found\n"
    for bad, shown in [("127.0.0.1:8931", "127.0.0.1:8931"), ("ftp://u:pw@x", "ftp://u:***@x")]:
        done = tesp(env, "list", "--url", bad)
        assert (done.returncode, done.stderr) == (
            2,
            f"tesp: --url: needs http:// or https:// (got {shown})\n",
        )


def test_cancel_of_an_ended_task_says_unchanged(env: dict[str, str]) -> None:
    task_id = tesp(env, "run", "--wait", "--image", "a", "--", "true").stdout.strip()
    human = tesp(env, "cancel", task_id)
    assert (human.returncode, human.stdout) == (0, f"{task_id}: already COMPLETE, unchanged\n")
    as_json = tesp(env, "cancel", task_id, "--json")
    assert json.loads(as_json.stdout) == {
        "canceled": [],
        "unchanged": {task_id: "COMPLETE"},
        "failed": {},
    }
    assert json.loads(tesp(env, "get", task_id, "--json").stdout)["state"] == "COMPLETE"


def test_get_shows_env_output_logs_and_real_characters(
    tesp_server: TespProcess, env: dict[str, str]
) -> None:
    target = tesp_server.storage / f"{_unique('out')}.txt"
    done = tesp(
        env,
        "run",
        "--wait",
        "--image",
        "a",
        "--env",
        "GREETING=h\u00e9llo",
        "-o",
        f"/data/out.txt:{target.as_uri()}",
        "--",
        "sh",
        "-c",
        "printf 12345 > /data/out.txt",
        "h\u00e9llo",
    )
    assert done.returncode == 0, done.stderr
    shown = tesp(env, "get", done.stdout.strip()).stdout
    rows = [[part.strip() for part in line.split(None, 1)] for line in shown.splitlines()]
    assert ["env", "GREETING=h\u00e9llo"] in rows
    output_file = rf"^output file +/data/out\.txt -> {re.escape(target.as_uri())} \(5 bytes\)"
    assert re.search(output_file, shown, re.MULTILINE), shown
    assert '"h\u00e9llo"]' in shown


def test_settings_errors_name_the_settings(tmp_path: Path) -> None:
    env = _env(tmp_path, TESP_S3_SECRET_ACCESS_KEY="x")
    expected = (
        "tesp: invalid settings: set both s3_access_key_id and s3_secret_access_key, or neither\n"
    )
    shown = tesp(env, "config", "show")
    assert (shown.returncode, shown.stderr) == (2, expected)
    served = tesp(env, "serve", "--port", str(free_port()), "--data-dir", str(tmp_path / "d"))
    assert (served.returncode, served.stderr) == (2, expected)
    port = tesp(_env(tmp_path, TESP_PORT="abc"), "config", "show")
    assert port.stderr.startswith("tesp: invalid setting port: Input should be a valid integer")


@pytest.fixture
def restartable(tmp_path: Path) -> Iterator[TespProcess]:
    server = TespProcess(data_dir=tmp_path / "data", storage=tmp_path / "st").start()
    yield server
    server.stop()


def test_wait_rides_out_a_server_restart(restartable: TespProcess, tmp_path: Path) -> None:
    env = _env(tmp_path, TESP_URL=restartable.url)
    task_id = tesp(env, "run", "--wait", "--image", "a", "--", "true").stdout.strip()
    restartable.stop()
    waiting = subprocess.Popen(
        [TESP, "wait", task_id, "--retry-for", "120"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert waiting.stderr is not None
    notice = waiting.stderr.readline()  # blocks until the first poll failed
    assert notice == (
        f"tesp: cannot reach TESP at {restartable.url}; trying again for up to 120 s\n"
    )
    restartable.start()
    out, err = waiting.communicate(timeout=120)
    assert (waiting.returncode, out) == (0, f"{task_id} COMPLETE\n")
    assert err.startswith("tesp: reached TESP again after ")


def test_wait_gives_up_when_the_server_stays_away(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    done = tesp(_env(tmp_path, TESP_URL=url), "wait", "some-id", "--retry-for", "1")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"tesp: cannot reach TESP at {url}; trying again for up to 1 s",
        f"tesp: cannot reach TESP at {url}",
    ]
