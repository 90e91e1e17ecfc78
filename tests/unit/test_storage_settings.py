"""Server-side storage settings -> the worker spec's ``storage`` section, and redaction."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from pydantic import ValidationError

from tesp_core.config import Settings, load_settings
from tesp_core.models import Task, View, render
from tesp_core.runtime import AwsChain, resolve_aws_chain, storage_listing, worker_storage
from tesp_core.storage import redact_url, transport_for
from tesp_core.translate import WorkerOptions, worker_spec

SECRETS = ("s3-secret-value", "s3-token-value", "http-pw-value", "bearer-value", "ftp-pw-value")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No TESP_* or AWS_* of the developer's shell, no ~/.aws."""
    import os

    for key in list(os.environ):
        if key.startswith(("TESP_", "AWS_")):
            monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))


def _configured(monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("TESP_S3_ENDPOINT_URL", "http://127.0.0.1:9000")
    monkeypatch.setenv("TESP_S3_REGION", "eu-west-1")
    monkeypatch.setenv("TESP_S3_ACCESS_KEY_ID", "AKIDCONFIGURED")
    monkeypatch.setenv("TESP_S3_SECRET_ACCESS_KEY", "s3-secret-value")
    monkeypatch.setenv("TESP_S3_SESSION_TOKEN", "s3-token-value")
    monkeypatch.setenv("TESP_S3_ADDRESSING_STYLE", "path")
    monkeypatch.setenv(
        "TESP_HTTP_HOSTS",
        json.dumps(
            {
                "data.example.org:443": {"username": "alice", "password": "http-pw-value"},
                "api.example.org": {"bearer_token": "bearer-value"},
            }
        ),
    )
    monkeypatch.setenv(
        "TESP_FTP_HOSTS",
        json.dumps({"ftp.example.org:21": {"username": "bob", "password": "ftp-pw-value"}}),
    )
    return Settings()


def test_env_settings_become_the_worker_storage_section(monkeypatch: pytest.MonkeyPatch) -> None:
    storage = worker_storage(_configured(monkeypatch), AwsChain())
    assert storage == {
        "s3": {
            "endpoint_url": "http://127.0.0.1:9000",
            "region": "eu-west-1",
            "addressing_style": "path",
            "aws_access_key_id": "AKIDCONFIGURED",
            "aws_secret_access_key": "s3-secret-value",
            "aws_session_token": "s3-token-value",
        },
        "http": {
            "hosts": {
                "data.example.org:443": {
                    "username": "alice",
                    "password": "http-pw-value",
                    "bearer_token": None,
                },
                "api.example.org": {
                    "username": None,
                    "password": None,
                    "bearer_token": "bearer-value",
                },
            }
        },
        "ftp": {"hosts": {"ftp.example.org:21": {"username": "bob", "password": "ftp-pw-value"}}},
    }
    # The drivers accept exactly this shape (they raise StorageError naming a bad key).
    for url in ("s3://b/k", "https://data.example.org/x", "ftp://ftp.example.org/x"):
        transport_for(url, storage)


def test_secrets_stay_out_of_repr_logs_and_errors(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = _configured(monkeypatch)
    worker_storage(settings, AwsChain())
    shown = [repr(settings), str(settings), settings.model_dump_json(), caplog.text]
    for text in shown:
        assert not [s for s in SECRETS if s in text], text


def test_validation_errors_do_not_echo_secrets() -> None:
    with pytest.raises(ValidationError) as err:
        Settings(http_hosts={"h": {"password": "http-pw-value"}})
    assert "http-pw-value" not in str(err.value)
    with pytest.raises(ValidationError) as err:
        Settings(s3_access_key_id="AKID", s3_session_token="s3-token-value")
    assert "s3-token-value" not in str(err.value)


@pytest.mark.parametrize(
    "hosts",
    [
        {"h": {"password": "p"}},  # a password without a user
        {"h": {}},
        {"h": {"username": "u", "token": "t"}},  # unknown key
    ],
)
def test_bad_http_hosts_are_refused(hosts: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Settings(http_hosts=hosts)


def test_toml_file(tmp_path: Path) -> None:
    config = tmp_path / "tesp.toml"
    config.write_text(
        's3_endpoint_url = "https://minio.example.org"\n'
        '[http_hosts."data.example.org"]\nbearer_token = "bearer-value"\n'
        '[ftp_hosts."ftp.example.org"]\nusername = "anonymous"\n'
    )
    storage = worker_storage(load_settings(config), AwsChain())
    assert storage["s3"] == {"endpoint_url": "https://minio.example.org"}
    assert storage["http"]["hosts"]["data.example.org"]["bearer_token"] == "bearer-value"
    assert storage["ftp"]["hosts"]["ftp.example.org"] == {"username": "anonymous", "password": None}


def test_endpoint_falls_back_to_the_servers_aws_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    assert worker_storage(Settings(), AwsChain()) == {}
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://general:1")
    assert worker_storage(Settings(), AwsChain())["s3"] == {"endpoint_url": "http://general:1"}
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://s3-only:2")
    assert worker_storage(Settings(), AwsChain())["s3"] == {"endpoint_url": "http://s3-only:2"}
    explicit = Settings(s3_endpoint_url="http://setting:3")
    assert worker_storage(explicit, AwsChain())["s3"] == {"endpoint_url": "http://setting:3"}
    monkeypatch.setenv("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true")
    assert worker_storage(Settings(), AwsChain()) == {}


def test_credentials_come_from_the_servers_aws_chain(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    assert resolve_aws_chain().access_key_id is None
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDFROMENV")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3-secret-value")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "s3-token-value")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-south-1")
    chain = resolve_aws_chain()
    assert (chain.access_key_id, chain.region, chain.method) == ("AKIDFROMENV", "ap-south-1", "env")
    assert "s3-secret-value" not in repr(chain)
    caplog.set_level(logging.INFO)
    s3 = worker_storage(Settings())["s3"]  # resolves the chain itself
    assert s3 == {
        "region": "ap-south-1",
        "aws_access_key_id": "AKIDFROMENV",
        "aws_secret_access_key": "s3-secret-value",
        "aws_session_token": "s3-token-value",
    }
    assert "temporary" in caplog.text and "s3-secret-value" not in caplog.text
    # Configured keys win over the chain; the chain still gives the region.
    mine = Settings(s3_access_key_id="AKIDMINE", s3_secret_access_key="other-secret")
    assert worker_storage(mine)["s3"] == {
        "region": "ap-south-1",
        "aws_access_key_id": "AKIDMINE",
        "aws_secret_access_key": "other-secret",
    }
    # Opting out leaves the worker to its node's own chain.
    off = Settings(s3_server_credentials=False, s3_region="us-east-2")
    assert worker_storage(off)["s3"] == {"region": "us-east-2"}


def test_spec_carries_file_roots_and_storage(monkeypatch: pytest.MonkeyPatch) -> None:
    options = WorkerOptions(
        file_roots=("/srv",), storage=worker_storage(Settings(), AwsChain()), hide=("/srv/tesp",)
    )
    task = Task.from_client({"executors": [{"image": "a", "command": ["true"]}]})
    task.id = "t1"
    storage = worker_spec(task, options)["storage"]
    assert storage == {"file_roots": ["/srv"], "file_denied": ["/srv/tesp"]}


def test_service_info_storage_listing(monkeypatch: pytest.MonkeyPatch) -> None:
    plain = Settings(file_roots=["/srv/data"])
    assert storage_listing(plain) == ["file:///srv/data", "http://", "https://", "ftp://", "s3://"]
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://u:pw@minio:9000")
    assert storage_listing(plain)[-1] == "s3:// (endpoint http://u:***@minio:9000)"


def test_views_redact_input_and_output_urls() -> None:
    task = Task.from_client(
        {
            "inputs": [
                {"path": "/in", "url": "http://u:http-pw-value@h/x"},
                {"path": "/c", "content": "inline"},
            ],
            "outputs": [{"path": "/out", "url": "ftp://bob:ftp-pw-value@h/y"}],
            "executors": [{"image": "a", "command": ["true"]}],
        }
    )
    task.id = "t1"
    for view in (View.BASIC, View.FULL):
        data = render(task, view, redact_url=redact_url)
        assert data["inputs"][0]["url"] == "http://u:***@h/x"
        assert data["outputs"][0]["url"] == "ftp://bob:***@h/y"
        assert "url" not in data["inputs"][1]
    # The task itself keeps the real URLs (the worker needs them).
    assert task.inputs is not None and task.inputs[0].url == "http://u:http-pw-value@h/x"
    assert render(task, View.FULL)["inputs"][0]["url"] == "http://u:http-pw-value@h/x"
