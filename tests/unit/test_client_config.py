"""Client URL/credential precedence, and that client env vars never disturb server Settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from tesp_core.client.config import (
    CONFIG_ENV_VAR,
    DEFAULT_URL,
    ENV_VARS,
    ClientConfig,
    resolve_config,
)
from tesp_core.client.errors import UsageError
from tesp_core.config import Settings

NO_FLAGS: dict[str, str | None] = {"url": None, "user": None, "password": None, "token": None}


def _file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "client.toml"
    path.write_text(text)
    return path


def test_default_url_without_anything(tmp_path: Path) -> None:
    config = resolve_config(NO_FLAGS, {"XDG_CONFIG_HOME": str(tmp_path)})
    assert config == ClientConfig(url=DEFAULT_URL)


def test_flags_over_env_over_file(tmp_path: Path) -> None:
    path = _file(tmp_path, 'url = "http://file:1"\nuser = "fuser"\npassword = "fpw"\n')
    env = {CONFIG_ENV_VAR: str(path), "TESP_URL": "http://env:2", "TESP_USER": "euser"}
    config = resolve_config({**NO_FLAGS, "url": "http://flag:3"}, env)
    assert (config.url, config.user, config.password) == ("http://flag:3", "euser", "fpw")
    assert resolve_config(NO_FLAGS, env).url == "http://env:2"
    assert resolve_config(NO_FLAGS, {CONFIG_ENV_VAR: str(path)}).url == "http://file:1"


def test_default_file_under_xdg_config_home(tmp_path: Path) -> None:
    (tmp_path / "tesp").mkdir()
    (tmp_path / "tesp" / "client.toml").write_text('token = "t0k"\n')
    config = resolve_config(NO_FLAGS, {"XDG_CONFIG_HOME": str(tmp_path)})
    assert (config.token, config.user) == ("t0k", None)


def test_token_of_a_higher_layer_replaces_a_lower_user(tmp_path: Path) -> None:
    path = _file(tmp_path, 'user = "u"\npassword = "p"\n')
    config = resolve_config(NO_FLAGS, {CONFIG_ENV_VAR: str(path), "TESP_TOKEN": "tk"})
    assert (config.user, config.password, config.token) == (None, None, "tk")
    with pytest.raises(UsageError, match="either a user and password or a token"):
        resolve_config(NO_FLAGS, {"TESP_USER": "u", "TESP_TOKEN": "tk"})


def test_bad_config_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="unknown key 'passwd'"):
        resolve_config(NO_FLAGS, {CONFIG_ENV_VAR: str(_file(tmp_path, 'passwd = "x"\n'))})
    with pytest.raises(UsageError, match="not valid TOML"):
        resolve_config(NO_FLAGS, {CONFIG_ENV_VAR: str(_file(tmp_path, "url = \n"))})
    with pytest.raises(UsageError, match="--client-config: no such file"):
        resolve_config(NO_FLAGS, {}, tmp_path / "missing.toml")
    with pytest.raises(UsageError, match="a password needs a user"):
        resolve_config({**NO_FLAGS, "password": "p"}, {"XDG_CONFIG_HOME": str(tmp_path)})


def test_repr_hides_secrets() -> None:
    text = repr(ClientConfig(user="u", password="hunter2", token=None))
    assert "hunter2" not in text
    assert text == "ClientConfig(url='http://127.0.0.1:8000', user='u', secrets='***')"


def test_client_env_vars_are_not_server_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    names = {f"TESP_{name}".upper() for name in Settings.model_fields}
    assert names.isdisjoint({*ENV_VARS, CONFIG_ENV_VAR})
    for var in [*ENV_VARS, CONFIG_ENV_VAR]:
        monkeypatch.setenv(var, "http://127.0.0.1:1")
    monkeypatch.delenv("TESP_CONFIG", raising=False)
    # extra="forbid" does not apply to unknown TESP_* variables: only fields are read.
    assert Settings().port == 8000


def test_public_api() -> None:
    import tesp_core.client as client

    assert sorted(client.__all__) == [
        "ClientConfig",
        "ClientError",
        "ExitCode",
        "HttpError",
        "TesClient",
        "UnreachableError",
        "UsageError",
        "resolve_config",
    ]
    assert all(hasattr(client, name) for name in client.__all__)
