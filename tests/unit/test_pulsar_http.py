"""How the Pulsar backend's connection pool takes what requests used to read from the
environment: the proxy for Pulsar's URL and the CA bundle."""

from __future__ import annotations

import certifi
import pytest
import urllib3

from tesp_core.backends.pulsar import PulsarBackend, _ca_bundle, _pool
from tesp_core.errors import BackendUnavailableError

PROXY_VARS = (
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "all_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*PROXY_VARS, "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)


def test_no_proxy_in_the_environment_connects_directly() -> None:
    pool = _pool("http://pulsar.example:8913", 4, 5.0)
    assert type(pool) is urllib3.PoolManager


def test_the_scheme_s_proxy_is_used_unless_no_proxy_names_the_host(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example:3128")
    pool = _pool("http://pulsar.example:8913", 4, 5.0)
    assert isinstance(pool, urllib3.ProxyManager)
    assert pool.proxy is not None and pool.proxy.host == "proxy.example"
    # https Pulsar: only an https proxy setting applies.
    assert not isinstance(_pool("https://pulsar.example", 4, 5.0), urllib3.ProxyManager)
    monkeypatch.setenv("NO_PROXY", "other.example,pulsar.example")
    assert not isinstance(_pool("http://pulsar.example:8913", 4, 5.0), urllib3.ProxyManager)


def test_no_proxy_takes_cidr_blocks_and_all_proxy_applies_to_every_scheme(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "10.0.0.0/8")
    assert not isinstance(_pool("http://10.1.2.3:8913", 4, 5.0), urllib3.ProxyManager)
    assert isinstance(_pool("http://192.168.1.2:8913", 4, 5.0), urllib3.ProxyManager)
    monkeypatch.delenv("HTTP_PROXY")
    monkeypatch.delenv("NO_PROXY")
    monkeypatch.setenv("ALL_PROXY", "http://all.example:3128")
    pool = _pool("https://pulsar.example", 4, 5.0)
    assert isinstance(pool, urllib3.ProxyManager)
    assert pool.proxy is not None and pool.proxy.host == "all.example"


def test_ca_bundle_is_the_named_one_or_certifi_s(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _ca_bundle() == certifi.where()
    monkeypatch.setenv("CURL_CA_BUNDLE", "/etc/curl-ca.pem")
    assert _ca_bundle() == "/etc/curl-ca.pem"
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/site-ca.pem")
    assert _ca_bundle() == "/etc/site-ca.pem"
    pool = _pool("https://pulsar.example", 4, 5.0)
    assert pool.connection_pool_kw["ca_certs"] == "/etc/site-ca.pem"


def test_an_unreachable_pulsar_error_never_shows_the_token() -> None:
    backend = PulsarBackend("http://127.0.0.1:9", token="s3cret-token", timeout=2)
    with pytest.raises(BackendUnavailableError) as caught:
        backend.status("job-1")
    assert "unreachable" in str(caught.value)
    assert "s3cret-token" not in str(caught.value)
