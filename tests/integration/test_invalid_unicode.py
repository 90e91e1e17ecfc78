"""Strings that are not Unicode, and environments execve cannot take, answer 400 at creation.

A lone surrogate (JSON ``"\\ud800"``) parses into a Python string that UTF-8 cannot encode;
the real server must refuse it naming the field, never answer 500 or store it altered.
"""

from __future__ import annotations

import json
import uuid

import pytest
import requests

from tests.conftest import TERMINAL, TespProcess, wait_for_state

EXECUTOR = {"image": "alpine", "command": ["true"]}
LONE = "\ud800"


def _post(server: TespProcess, body: dict) -> requests.Response:
    # json.dumps escapes the surrogate as the six characters \ud800, as a client would send.
    return requests.post(
        f"{server.api}/tasks",
        data=json.dumps(body).encode("ascii"),
        headers={"Content-Type": "application/json"},
        timeout=10,
    )


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"description": LONE}, "description"),
        ({"tags": {LONE: "v"}}, "tags"),
        ({"tags": {"k": LONE}}, "tags.k"),
        ({"inputs": [{"path": "/in", "content": LONE}]}, "inputs[0].content"),
        ({"resources": {"zones": [LONE]}}, "resources.zones[0]"),
        ({"resources": {"backend_parameters": {LONE: "v"}}}, "resources.backend_parameters"),
        ({"executors": [{**EXECUTOR, "command": ["echo", LONE]}]}, "executors[0].command[1]"),
    ],
)
def test_lone_surrogates_answer_400_naming_the_field(
    tesp_server: TespProcess, extra: dict, field: str
) -> None:
    name = f"surrogate-{uuid.uuid4().hex}"
    response = _post(tesp_server, {"name": name, "executors": [EXECUTOR], **extra})
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["field"] == field
    assert body["msg"].endswith("contains a lone surrogate: not valid Unicode")
    assert "\\ud800" not in response.text and LONE not in body["msg"]
    listed = requests.get(
        f"{tesp_server.api}/tasks", params={"name_prefix": name}, timeout=10
    ).json()
    assert listed["tasks"] == []


def test_env_too_big_for_execve_answers_400(tesp_server: TespProcess) -> None:
    env = {f"V{i}": "x" * 131_000 for i in range(20)}
    response = _post(tesp_server, {"executors": [{**EXECUTOR, "env": env}]})
    assert response.status_code == 400
    assert response.json()["field"] == "executors[0].env"
    assert "add up to more than 1048576 bytes" in response.json()["msg"]


def test_env_just_under_the_limit_runs(tesp_server: TespProcess) -> None:
    # 8 values of 131,000 bytes and this command: 1,048,057 bytes; the kernel takes it.
    env = {f"V{i}": "x" * 131_000 for i in range(8)}
    command = ["sh", "-c", 'printf %s "${#V7}"']
    response = _post(tesp_server, {"executors": [{**EXECUTOR, "command": command, "env": env}]})
    assert response.status_code == 200, response.text
    task = wait_for_state(tesp_server.api, response.json()["id"], TERMINAL)
    assert task["state"] == "COMPLETE", task
    assert task["logs"][0]["logs"][0]["stdout"] == "131000"
