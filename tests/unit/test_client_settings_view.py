"""``tesp config show``'s masking and TOML writer (pure parts)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from tesp_core.client.settings_view import masked_settings, to_toml
from tesp_core.config import Settings

SECRETS = ["AKIAEXAMPLEKEY", "s3-secret-value", "pulsar-tok", "bearer-xyz", "ftp-pw", "urlpw"]


def _settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path,
        pulsar_url="https://tesp:urlpw@pulsar.example.org:8913/",
        pulsar_token="pulsar-tok",
        s3_access_key_id="AKIAEXAMPLEKEY",
        s3_secret_access_key="s3-secret-value",
        http_hosts={"data.example.org": {"bearer_token": "bearer-xyz"}},
        ftp_hosts={"ftp.example.org:2121": {"username": "bob", "password": "ftp-pw"}},
        basic_users={"alice": {"password_hash": "pbkdf2_sha256$1000$salt$hash"}},
    )


def test_every_secret_is_masked(tmp_path: Path) -> None:
    data = masked_settings(_settings(tmp_path))
    text = to_toml(data)
    for secret in [*SECRETS, "pbkdf2_sha256$1000$salt$hash"]:
        assert secret not in text
    assert data["pulsar_url"] == "https://tesp:***@pulsar.example.org:8913/"
    assert data["s3_access_key_id"] == "***"
    assert data["http_hosts"] == {
        "data.example.org": {"username": None, "password": None, "bearer_token": "***"}
    }
    assert data["ftp_hosts"]["ftp.example.org:2121"] == {"username": "bob", "password": "***"}
    assert data["basic_users"]["alice"] == {"password_hash": "***", "roles": ["user"]}


def test_toml_round_trips_what_is_set(tmp_path: Path) -> None:
    data = masked_settings(_settings(tmp_path))
    parsed = tomllib.loads(to_toml(data))
    assert parsed["port"] == 8000
    assert parsed["data_dir"] == str(tmp_path)
    assert parsed["ftp_hosts"]["ftp.example.org:2121"]["username"] == "bob"
    assert parsed["basic_users"]["alice"]["roles"] == ["user"]
    # TOML has no null: unset values are comments.
    assert "s3_region" not in parsed
    assert "# s3_region is not set" in to_toml(data)


@pytest.mark.parametrize(
    ("value", "line"),
    [
        ({"a b": 'x"y'}, '"a b" = "x\\"y"'),
        ({"f": float("inf")}, "f = inf"),
        ({"l": [1, True, "s"]}, 'l = [1, true, "s"]'),
    ],
)
def test_toml_values(value: dict[str, object], line: str) -> None:
    assert to_toml(value) == line + "\n"
