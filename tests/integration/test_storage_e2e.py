"""Every storage protocol, both directions, through a real ``tesp serve``.

One ``tesp serve`` (embedded Pulsar) for the module, configured the way an operator would:
S3 endpoint and region as ``TESP_S3_*``, S3 credentials in the server's standard ``AWS_*``
variables (the embedded Pulsar runs jobs in a clean environment, so they reach the worker
only through the spec), per-host HTTP and FTP credentials as ``TESP_HTTP_HOSTS`` /
``TESP_FTP_HOSTS``. The HTTP, FTP and S3 (moto) servers run on 127.0.0.1 in this process.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests

from tests.conftest import TERMINAL, TespProcess, wait_for_state
from tests.servers import (
    FTP_PASSWORD,
    FTP_USER,
    S3_KEY_ID,
    S3_SECRET,
    FtpServer,
    HttpServer,
    start_ftp,
    start_http,
)

HTTP_USER = "tesp-user"
URL_SECRET = "url-pw-never-shown"  # the Basic password clients write into URLs
HTTP_TOKEN = "http-bearer-token-never-shown"  # the server-side per-host credential
WRONG_FTP_PASSWORD = "wrong-ftp-pw-never-shown"
SECRETS = (URL_SECRET, HTTP_TOKEN, FTP_PASSWORD, S3_SECRET, WRONG_FTP_PASSWORD)

# The DIRECTORY input: nested, with spaces and non-ASCII names.
TREE = {
    "a.txt": b"A\n",
    "sub dir/\u00fc.txt": "\u00fc\n".encode(),
    "sub dir/deeper/z.bin": bytes(range(256)),
}
FILE_INPUT = b"file input\n"


@dataclass
class Store:
    """The storage side of one protocol: build URLs, seed objects, read back what arrived."""

    scheme: str
    url: Callable[[str], str]
    put: Callable[[str, bytes], None]
    files: Callable[[str], dict[str, bytes]]


def _disk_store(scheme: str, root: Path, base: Callable[[str], str]) -> Store:
    def put(rel: str, data: bytes) -> None:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def files(rel: str) -> dict[str, bytes]:
        top = root / rel
        return {
            p.relative_to(top).as_posix(): p.read_bytes() for p in top.rglob("*") if p.is_file()
        }

    return Store(scheme, base, put, files)


def _s3_store(client: Any, bucket: str) -> Store:
    def put(rel: str, data: bytes) -> None:
        client.put_object(Bucket=bucket, Key=rel, Body=data)

    def files(rel: str) -> dict[str, bytes]:
        prefix = rel.rstrip("/") + "/"
        found = {}
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                body = client.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
                found[obj["Key"][len(prefix) :]] = body
        return found

    return Store("s3", lambda rel: f"s3://{bucket}/{quote(rel)}", put, files)


# -- the servers -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpServer]:
    root = tmp_path_factory.mktemp("e2e-http")
    with start_http(root, auth=(HTTP_USER, URL_SECRET), bearer=HTTP_TOKEN) as server:
        yield server


@pytest.fixture(scope="module")
def ftp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FtpServer]:
    with start_ftp(tmp_path_factory.mktemp("e2e-ftp")) as server:
        yield server


@pytest.fixture(scope="module")
def s3_client(moto_endpoint: str) -> Any:
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=moto_endpoint,
        region_name="us-east-1",
        aws_access_key_id=S3_KEY_ID,
        aws_secret_access_key=S3_SECRET,
    )


@pytest.fixture(scope="module")
def bucket(s3_client: Any) -> str:
    name = f"tesp-e2e-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="module")
def tesp(
    tmp_path_factory: pytest.TempPathFactory,
    http: HttpServer,
    ftp: FtpServer,
    moto_endpoint: str,
    bucket: str,
) -> Iterator[TespProcess]:
    base = tmp_path_factory.mktemp("e2e-tesp")
    host_port = _host_port(http.base_url)
    env = {
        "TESP_S3_ENDPOINT_URL": moto_endpoint,
        "TESP_S3_REGION": "us-east-1",
        # The standard chain of the server; the worker's clean environment lacks them.
        "AWS_ACCESS_KEY_ID": S3_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": S3_SECRET,
        "AWS_SHARED_CREDENTIALS_FILE": str(base / "no-aws-credentials"),
        "AWS_CONFIG_FILE": str(base / "no-aws-config"),
        "TESP_HTTP_HOSTS": json.dumps({host_port: {"bearer_token": HTTP_TOKEN}}),
        "TESP_FTP_HOSTS": json.dumps(
            {f"{ftp.host}:{ftp.port}": {"username": FTP_USER, "password": FTP_PASSWORD}}
        ),
    }
    server = TespProcess(data_dir=base / "data", storage=base / "storage", env=env).start()
    yield server
    server.stop()


def _host_port(url: str) -> str:
    return url.split("://", 1)[1].rstrip("/")


@pytest.fixture(scope="module", params=["file", "http", "ftp", "s3"])
def store(
    request: pytest.FixtureRequest,
    tesp: TespProcess,
    http: HttpServer,
    ftp: FtpServer,
    s3_client: Any,
    bucket: str,
) -> Store:
    kind = request.param
    if kind == "file":
        root = tesp.storage
        return _disk_store("file", root, lambda rel: (root / rel).as_uri())
    if kind == "http":
        return _disk_store("http", http.root, lambda rel: http.url("/" + quote(rel)))
    if kind == "ftp":
        return _disk_store("ftp", ftp.root, lambda rel: ftp.url("/" + quote(rel)))
    return _s3_store(s3_client, bucket)


def _run(tesp: TespProcess, body: dict[str, Any]) -> dict[str, Any]:
    response = requests.post(f"{tesp.api}/tasks", json=body, timeout=10)
    assert response.status_code == 200, response.text
    return wait_for_state(tesp.api, response.json()["id"], TERMINAL, timeout=120)


def _outputs(task: dict[str, Any]) -> list[dict[str, str]]:
    return sorted(task["logs"][0].get("outputs", []), key=lambda o: o["path"])


# -- every protocol, both directions ------------------------------------------------------


def test_files_directories_and_wildcards(tesp: TespProcess, store: Store, http: HttpServer) -> None:
    p = f"e2e-{uuid.uuid4().hex[:8]}"
    store.put(f"{p}/in/data file \u00e9.txt", FILE_INPUT)
    for rel, data in TREE.items():
        store.put(f"{p}/in/tree/{rel}", data)
    script = "\n".join(
        [
            "set -e",
            "cat /data/in.txt > /out/file.txt",
            "mkdir -p /out/tree",
            "cp -R /data/tree/. /out/tree/",
            "mkdir -p '/out/tree/new \u00f6'",
            "printf 'made\\n' > '/out/tree/new \u00f6/x y.txt'",
            "mkdir -p /out/logs",
            "printf one > '/out/logs/a 1.log'",
            "printf two > /out/logs/b.log",
            "printf no > /out/logs/c.txt",
        ]
    )
    task = _run(
        tesp,
        {
            "name": f"storage-{store.scheme}",
            "inputs": [
                {"path": "/data/in.txt", "url": store.url(f"{p}/in/data file \u00e9.txt")},
                {"path": "/data/tree", "url": store.url(f"{p}/in/tree"), "type": "DIRECTORY"},
            ],
            "outputs": [
                {"path": "/out/file.txt", "url": store.url(f"{p}/out/file \u00e9.txt")},
                {"path": "/out/tree", "url": store.url(f"{p}/out/tree"), "type": "DIRECTORY"},
                {
                    "path": "/out/logs/*.log",
                    "path_prefix": "/out/logs/",
                    "url": store.url(f"{p}/out/glob") + "/",
                },
                {
                    "path": "/out/none/*.log",
                    "path_prefix": "/out/none/",
                    "url": store.url(f"{p}/out/none") + "/",
                },
            ],
            "executors": [{"image": "alpine", "command": ["sh", "-c", script]}],
        },
    )
    assert task["state"] == "COMPLETE", task["logs"]
    tree_out = {**TREE, "new \u00f6/x y.txt": b"made\n"}
    expected = {
        "file \u00e9.txt": FILE_INPUT,
        **{f"tree/{rel}": data for rel, data in tree_out.items()},
        "glob/a 1.log": b"one",
        "glob/b.log": b"two",
    }
    # Exactly these bytes under these names (keys/paths decoded: spaces, not %20); the
    # wildcard that matched nothing uploaded nothing.
    assert store.files(f"{p}/out") == expected
    logged = [
        {"url": store.url(f"{p}/out/file \u00e9.txt"), "path": "/out/file.txt", "size_bytes": "11"},
        *(
            {
                "url": store.url(f"{p}/out/tree/{rel}"),
                "path": f"/out/tree/{rel}",
                "size_bytes": str(len(data)),
            }
            for rel, data in tree_out.items()
        ),
        {"url": store.url(f"{p}/out/glob/a 1.log"), "path": "/out/logs/a 1.log", "size_bytes": "3"},
        {"url": store.url(f"{p}/out/glob/b.log"), "path": "/out/logs/b.log", "size_bytes": "3"},
    ]
    assert _outputs(task) == sorted(logged, key=lambda o: o["path"])
    if store.scheme == "http":
        # The per-host bearer token of TESP_HTTP_HOSTS reached the worker.
        auth = {h.get("Authorization") for _m, target, h in http.requests if p in target}
        assert auth == {f"Bearer {HTTP_TOKEN}"}


def test_outputs_are_uploaded_after_an_executor_error(tesp: TespProcess, store: Store) -> None:
    p = f"e2e-{uuid.uuid4().hex[:8]}"
    script = (
        "printf partial > /out/partial.txt; mkdir -p /out/d/s; printf q > '/out/d/s/q r'; exit 3"
    )
    task = _run(
        tesp,
        {
            "outputs": [
                {"path": "/out/partial.txt", "url": store.url(f"{p}/partial.txt")},
                {"path": "/out/never.txt", "url": store.url(f"{p}/never.txt")},
                {"path": "/out/d", "url": store.url(f"{p}/d"), "type": "DIRECTORY"},
            ],
            "executors": [{"image": "alpine", "command": ["sh", "-c", script]}],
        },
    )
    assert task["state"] == "EXECUTOR_ERROR"
    assert [e["exit_code"] for e in task["logs"][0]["logs"]] == [3]
    assert store.files(p) == {"partial.txt": b"partial", "d/s/q r": b"q"}
    assert _outputs(task) == [
        {"url": store.url(f"{p}/d/s/q r"), "path": "/out/d/s/q r", "size_bytes": "1"},
        {"url": store.url(f"{p}/partial.txt"), "path": "/out/partial.txt", "size_bytes": "7"},
    ]


# -- failures -------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["http-404", "ftp-login", "s3-bucket"])
def test_staging_failures_are_system_errors(
    tesp: TespProcess, http: HttpServer, ftp: FtpServer, case: str
) -> None:
    p = f"e2e-{uuid.uuid4().hex[:8]}"
    host = _host_port(http.base_url)
    if case == "http-404":
        url = f"http://{HTTP_USER}:{URL_SECRET}@{host}/{p}/missing.txt"
        shown = f"http: http://{HTTP_USER}:***@{host}/{p}/missing.txt: HTTP 404"
    elif case == "ftp-login":
        (ftp.root / f"{p}.txt").write_bytes(b"x")
        url = ftp.url(f"/{p}.txt", user=FTP_USER, password=WRONG_FTP_PASSWORD)
        shown = f"ftp: ftp://{FTP_USER}:***@{ftp.host}:{ftp.port}/{p}.txt: FTP 530"
    else:
        missing = f"tesp-missing-{p}"
        url = f"s3://{missing}/k.txt"
        shown = f"s3: s3://{missing}/k.txt: bucket {missing!r} does not exist"
    task = _run(
        tesp,
        {
            "inputs": [{"path": "/data/x", "url": url}],
            "executors": [{"image": "alpine", "command": ["true"]}],
        },
    )
    assert task["state"] == "SYSTEM_ERROR"
    system_logs = "\n".join(task["logs"][0]["system_logs"])
    assert f"input /data/x: {shown}" in system_logs
    assert task["logs"][0].get("logs", []) == []  # no executor ran


def test_service_info_lists_what_this_server_reaches(tesp: TespProcess, moto_endpoint: str) -> None:
    storage = requests.get(f"{tesp.api}/service-info", timeout=10).json()["storage"]
    assert tesp.storage.as_uri() in storage
    assert {"http://", "https://", "ftp://", "s3://"} <= set(storage)
    assert f"s3:// (endpoint {moto_endpoint})" in storage


# -- secrets --------------------------------------------------------------------------------


def _all_views(tesp: TespProcess) -> Iterator[str]:
    """Every task of the server in every view, single and listed, as raw JSON text."""
    for view in ("MINIMAL", "BASIC", "FULL"):
        token = None
        while True:
            params: dict[str, Any] = {"view": view, "page_size": 50}
            if token:
                params["page_token"] = token
            page = requests.get(f"{tesp.api}/tasks", params=params, timeout=10)
            yield page.text
            for task in page.json()["tasks"]:
                one = requests.get(
                    f"{tesp.api}/tasks/{task['id']}", params={"view": view}, timeout=10
                )
                yield one.text
            token = page.json().get("next_page_token")
            if not token:
                break


def test_credentials_never_reach_a_view_or_a_log(tesp: TespProcess, http: HttpServer) -> None:
    p = f"e2e-{uuid.uuid4().hex[:8]}"
    (http.root / p).mkdir()
    (http.root / p / "in.txt").write_bytes(b"with credentials\n")
    host = _host_port(http.base_url)

    def with_creds(rel: str) -> str:
        return f"http://{HTTP_USER}:{URL_SECRET}@{host}/{p}/{rel}"

    def shown(rel: str) -> str:
        return f"http://{HTTP_USER}:***@{host}/{p}/{rel}"

    task = _run(
        tesp,
        {
            "inputs": [{"path": "/data/in.txt", "url": with_creds("in.txt")}],
            "outputs": [
                {"path": "/out/copy.txt", "url": with_creds("copy.txt")},
                {"path": "/out/d", "url": with_creds("d"), "type": "DIRECTORY"},
            ],
            "executors": [
                {
                    "image": "alpine",
                    "command": [
                        "sh",
                        "-c",
                        "cp /data/in.txt /out/copy.txt && mkdir -p /out/d"
                        " && cp /data/in.txt /out/d/",
                    ],
                }
            ],
        },
    )
    assert task["state"] == "COMPLETE", task["logs"]
    assert (http.root / p / "copy.txt").read_bytes() == b"with credentials\n"
    assert (http.root / p / "d" / "in.txt").read_bytes() == b"with credentials\n"
    # The views show the URLs redacted; the worker used the real ones.
    assert task["inputs"][0]["url"] == shown("in.txt")
    assert [o["url"] for o in task["outputs"]] == [shown("copy.txt"), shown("d")]
    assert sorted(o["url"] for o in task["logs"][0]["outputs"]) == [
        shown("copy.txt"),
        shown("d/in.txt"),
    ]
    # Nothing this module's tasks used (URL passwords, the server's per-host HTTP token,
    # FTP password, S3 secret) appears in any view of any task, nor in any log.
    for text in _all_views(tesp):
        leaked = [s for s in SECRETS if s in text]
        assert not leaked, (leaked, text[:2000])
    for log_file in tesp.log_files:
        assert log_file.exists(), log_file
        text = log_file.read_text(errors="replace")
        leaked = [s for s in SECRETS if s in text]
        assert not leaked, (log_file, leaked)
