"""Hostile strings in every user-controlled field: rejected with 400 or run as inert literals.

The server runs executors with the ``none`` runtime so that anything an injection did at any
layer (the Pulsar job script, the worker, the executor) would land on the host, where the
marker file is checked.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.conftest import TERMINAL, TespProcess, wait_for_state


@pytest.fixture(scope="module")
def host_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TespProcess]:
    base = tmp_path_factory.mktemp("inject")
    server = TespProcess(
        data_dir=base / "data", storage=base / "storage", extra_args=["--runtime", "none"]
    ).start()
    yield server
    server.stop()


def _marker(server: TespProcess) -> Path:
    return server.storage / "PWNED"


def _payloads(marker: Path) -> list[str]:
    m = str(marker)
    return [
        f"; touch {m}",
        f"$(touch {m})",
        f"`touch {m}`",
        f"| touch {m}",
        f"&& touch {m}",
        f"\ntouch {m}\n",
        f"'; touch {m}; '",
        f'"; touch {m}; "',
        f"$(touch${{IFS}}{m})",
        f"> {m}",
        f"a\rtouch {m}",
        f"${{PATH:+$(touch {m})}}",
        f"\\$(touch {m})",
        f"--rm -v /:/host; touch {m}",
        f"-e X=1 && touch {m}",
        "'\"`$\\!*?[]{}~#%^&()<>|;",
        "日本語 ünïcödé",
        "\t tab and spaces ",
        "-",
        "--",
        "*",
        f"{m}*",
    ]


def _run(server: TespProcess, body: dict) -> tuple[int, dict | None]:
    response = requests.post(f"{server.api}/tasks", json=body, timeout=10)
    if response.status_code != 200:
        return response.status_code, response.json()
    return 200, wait_for_state(server.api, response.json()["id"], TERMINAL, timeout=60)


def test_command_arguments_are_argv_literals(host_server: TespProcess) -> None:
    payloads = _payloads(_marker(host_server))
    for value in payloads:
        status, task = _run(
            host_server, {"executors": [{"image": "alpine", "command": ["printf", "%s", value]}]}
        )
        assert status == 200 and task is not None
        assert task["state"] == "COMPLETE", (value, task)
        assert task["logs"][0]["logs"][0]["stdout"] == value
    assert not _marker(host_server).exists()


def test_env_values_are_inert(host_server: TespProcess) -> None:
    for value in _payloads(_marker(host_server)):
        status, task = _run(
            host_server,
            {
                "executors": [
                    {
                        "image": "alpine",
                        "command": ["sh", "-c", 'printf %s "$V"'],
                        "env": {"V": value},
                    }
                ]
            },
        )
        assert status == 200 and task is not None and task["state"] == "COMPLETE"
        assert task["logs"][0]["logs"][0]["stdout"] == value
    assert not _marker(host_server).exists()


def test_hostile_images_env_keys_and_paths_are_rejected_or_inert(
    host_server: TespProcess,
) -> None:
    m = _marker(host_server)
    hostile_images = [
        f"alpine;touch {m}",
        f"alpine$(touch {m})",
        f"alpine`touch {m}`",
        f"alpine\ntouch {m}",
        "alpine latest",
        "--privileged",
        "-v",
        "a\x00b",
        f"alpine|touch {m}",
        f"alpine&&touch${{IFS}}{m}",
    ]
    for image in hostile_images:
        status, task = _run(host_server, {"executors": [{"image": image, "command": ["true"]}]})
        assert status == 400 or (task is not None and task["state"] == "COMPLETE"), image
        if status == 400:
            assert task is not None and task["field"] == "executors[0].image"
    for key in ["A B", "A;touch", "$(id)", "1X", "A=B", "", "A\nB", "A-B"]:
        status, body = _run(
            host_server, {"executors": [{"image": "a", "command": ["true"], "env": {key: "v"}}]}
        )
        assert status == 400 and body is not None and body["field"] == "executors[0].env", key
    for path in ["relative", "/a/../../etc/passwd", "..", "/a/b/..", "/x\n/y", "/x\x00y", ""]:
        for field in ("workdir", "stdout", "stdin", "stderr"):
            status, body = _run(
                host_server, {"executors": [{"image": "a", "command": ["true"], field: path}]}
            )
            assert status == 400 and body is not None, (field, path)
            assert body["field"] == f"executors[0].{field}"
        status, body = _run(
            host_server,
            {
                "inputs": [{"path": path, "content": "x"}],
                "executors": [{"image": "a", "command": ["true"]}],
            },
        )
        assert status == 400 and body is not None and body["field"].startswith("inputs[0]")
    assert not m.exists()


def test_hostile_paths_that_are_valid_stay_literal(host_server: TespProcess) -> None:
    m = _marker(host_server)
    odd = f"$(touch {m}); `x` 'q' \"d\""
    out_dir = host_server.storage / f"odd-{uuid.uuid4().hex}"
    status, task = _run(
        host_server,
        {
            "inputs": [{"path": f"{out_dir}/{odd}", "content": "literal\n"}],
            "executors": [
                {"image": "a", "command": ["cat", f"{out_dir}/{odd}"], "workdir": str(out_dir)}
            ],
        },
    )
    assert status == 200 and task is not None
    assert task["state"] == "COMPLETE", task
    assert task["logs"][0]["logs"][0]["stdout"] == "literal\n"
    assert not m.exists()


def test_names_and_tags_round_trip_literally(host_server: TespProcess) -> None:
    name = "$(id) `id` ; rm -rf / 'n' \"q\" \n日本"
    tags = {"k;$(id)": "v`id`", "space key": "value\nwith newline"}
    response = requests.post(
        f"{host_server.api}/tasks",
        json={"name": name, "tags": tags, "executors": [{"image": "a", "command": ["true"]}]},
        timeout=10,
    )
    assert response.status_code == 200
    task = requests.get(
        f"{host_server.api}/tasks/{response.json()['id']}", params={"view": "BASIC"}, timeout=10
    ).json()
    assert task["name"] == name and task["tags"] == tags
    listed = requests.get(
        f"{host_server.api}/tasks",
        params={"name_prefix": "$(id) `id`", "view": "BASIC"},
        timeout=10,
    ).json()["tasks"]
    assert [t["id"] for t in listed] == [task["id"]]
