"""The HTTP(S) driver against a real stdlib HTTP server on loopback."""

from __future__ import annotations

import logging
import tracemalloc
from pathlib import Path

import pytest

from tesp_core.storage import AccessDeniedError, NotFoundError, StorageError, transport_for
from tesp_core.storage.http import HttpTransport

from .conftest import HttpServer, make_big_file, sha256_of

FAST = {"retries": 3, "backoff_seconds": 0.01}


def test_download_file_is_byte_exact(http_server: HttpServer, scratch: Path) -> None:
    payload = bytes(range(256)) * 1000
    (http_server.root / "data.bin").write_bytes(payload)
    transport = transport_for(http_server.url("/data.bin"), {})
    moved = transport.download_file(http_server.url("/data.bin"), scratch / "a" / "b.bin")
    assert moved == len(payload)
    assert (scratch / "a" / "b.bin").read_bytes() == payload


def test_query_string_is_sent_byte_exact(http_server: HttpServer, scratch: Path) -> None:
    (http_server.root / "obj").write_bytes(b"signed")
    target = "/obj?X-Amz-Signature=ab%2Fcd%3D&x=a+b%20c&empty=&Key=%7E~"
    HttpTransport({}).download_file(http_server.url(target), scratch / "obj")
    assert [path for method, path, _ in http_server.requests] == [target]
    assert (scratch / "obj").read_bytes() == b"signed"


def test_download_dir_keeps_structure_and_stays_below_base(
    http_server: HttpServer, scratch: Path
) -> None:
    tree = http_server.root / "tree"
    (tree / "sub dir" / "deeper").mkdir(parents=True)
    (tree / "top.txt").write_text("top")
    (tree / "sub dir" / "ü ñ.txt").write_text("unicode")
    (tree / "sub dir" / "deeper" / "leaf.txt").write_text("leaf")
    (http_server.root / "outside.txt").write_text("must not be fetched")
    moved = HttpTransport({}).download_dir(http_server.url("/tree"), scratch / "out")
    assert moved == len("top") + len("unicode") + len("leaf")
    files = sorted(p.relative_to(scratch / "out").as_posix() for p in scratch.rglob("*.txt"))
    assert files == ["sub dir/deeper/leaf.txt", "sub dir/ü ñ.txt", "top.txt"]
    assert not any("outside" in path for _, path, _ in http_server.requests)


def test_listing_links_outside_the_base_are_ignored(http_server: HttpServer, scratch: Path) -> None:
    # An nginx/Apache-style page: parent link, sort links, absolute and foreign links.
    (http_server.root / "idx").mkdir()
    (http_server.root / "idx" / "index.html").write_text(
        '<html><body><a href="../">../</a> <a href="?C=N;O=D">Name</a>'
        '<a href="/etc/passwd">abs</a> <a href="http://evil.example/x">x</a>'
        '<a href="ok.txt">ok.txt</a> <a href="#top">top</a></body></html>'
    )
    (http_server.root / "idx" / "ok.txt").write_text("ok")
    HttpTransport({}).download_dir(http_server.url("/idx/"), scratch)
    assert (scratch / "ok.txt").read_text() == "ok"
    assert sorted(p.name for p in scratch.iterdir()) == ["ok.txt"]


def test_upload_file_with_nested_parents(http_server: HttpServer, tmp_path: Path) -> None:
    src = tmp_path / "result.txt"
    src.write_bytes(b"result\n" * 100)
    url = http_server.url("/out/deep/er/result.txt")
    assert transport_for(url, {}).upload_file(src, url) == src.stat().st_size
    assert (http_server.root / "out" / "deep" / "er" / "result.txt").read_bytes() == (
        src.read_bytes()
    )
    method, _, headers = http_server.requests[-1]
    assert method == "PUT" and headers["Content-Length"] == str(src.stat().st_size)


def test_missing_file_is_not_found_with_redacted_url(
    http_server: HttpServer, scratch: Path
) -> None:
    url = http_server.url("/nope.txt?token=supersecret")
    with pytest.raises(NotFoundError) as info:
        HttpTransport(FAST).download_file(url, scratch / "x")
    assert "404" in str(info.value)
    assert "supersecret" not in str(info.value)
    assert info.value.url == http_server.url("/nope.txt?token=***")
    assert len(http_server.requests) == 1  # a 4xx is not retried


def test_refused_login_is_access_denied_and_never_leaks(
    http_server: HttpServer, scratch: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    http_server.auth = ("bob", "right-password")
    (http_server.root / "f.txt").write_text("x")
    url = http_server.url("/f.txt").replace("http://", "http://bob:wrong-password@")
    with pytest.raises(AccessDeniedError) as info:
        HttpTransport(FAST).download_file(url, scratch / "f.txt")
    assert "401" in str(info.value)
    assert "wrong-password" not in str(info.value)
    assert "wrong-password" not in caplog.text
    assert all("wrong-password" not in r.getMessage() for r in caplog.records)


def test_url_and_configured_credentials(http_server: HttpServer, scratch: Path) -> None:
    http_server.auth = ("bob", "p@ss:w/rd")
    (http_server.root / "f.txt").write_text("secret data")
    in_url = http_server.url("/f.txt").replace("http://", "http://bob:p%40ss%3Aw%2Frd@")
    HttpTransport({}).download_file(in_url, scratch / "1")
    hostport = http_server.base_url.removeprefix("http://")
    config = {"hosts": {hostport: {"username": "bob", "password": "p@ss:w/rd"}}}
    HttpTransport(config).download_file(http_server.url("/f.txt"), scratch / "2")
    assert (scratch / "1").read_text() == (scratch / "2").read_text() == "secret data"


def test_bearer_token_from_config(http_server: HttpServer, scratch: Path) -> None:
    http_server.bearer = "tok-123"
    (http_server.root / "f.txt").write_text("y")
    hostport = http_server.base_url.removeprefix("http://")
    config = {"http": {"hosts": {hostport: {"bearer_token": "tok-123"}}}}
    transport_for(http_server.url("/f.txt"), config).download_file(
        http_server.url("/f.txt"), scratch / "f"
    )
    assert (scratch / "f").read_text() == "y"


def test_redirects_are_followed_up_to_the_limit(http_server: HttpServer, scratch: Path) -> None:
    (http_server.root / "final.txt").write_text("final")
    http_server.redirect("/r1", "/r2", 301)
    http_server.redirect("/r2", http_server.url("/final.txt"), 307)
    HttpTransport({}).download_file(http_server.url("/r1"), scratch / "f")
    assert (scratch / "f").read_text() == "final"
    http_server.redirect("/loop", "/loop")
    with pytest.raises(StorageError, match="more than 3 redirects"):
        HttpTransport({"max_redirects": 3}).download_file(http_server.url("/loop"), scratch / "g")


def test_retries_on_500_then_succeeds(http_server: HttpServer, scratch: Path) -> None:
    (http_server.root / "flaky.txt").write_text("eventually")
    http_server.fail("/flaky.txt", times=2, status=500)
    HttpTransport(FAST).download_file(http_server.url("/flaky.txt"), scratch / "f")
    assert (scratch / "f").read_text() == "eventually"
    assert len(http_server.requests) == 3


def test_retries_exhausted_raise_storage_error(http_server: HttpServer, scratch: Path) -> None:
    http_server.fail("/down", times=10, status=503)
    with pytest.raises(StorageError, match="503"):
        HttpTransport({"retries": 2, "backoff_seconds": 0}).download_file(
            http_server.url("/down"), scratch / "f"
        )
    assert len(http_server.requests) == 3


def test_connection_refused_is_a_storage_error(scratch: Path) -> None:
    with pytest.raises(StorageError, match="connection failed"):
        HttpTransport({"retries": 1, "backoff_seconds": 0}).download_file(
            "http://u:pw-in-url@127.0.0.1:9/x", scratch / "f"
        )


def test_upload_retries_on_500(http_server: HttpServer, tmp_path: Path) -> None:
    src = tmp_path / "up.bin"
    src.write_bytes(b"z" * 10000)
    http_server.fail("/up.bin", times=1)
    HttpTransport(FAST).upload_file(src, http_server.url("/up.bin"))
    assert (http_server.root / "up.bin").read_bytes() == src.read_bytes()


def test_large_download_has_bounded_memory(http_server: HttpServer, scratch: Path) -> None:
    big = make_big_file(http_server.root / "big.bin", 64 * 1024 * 1024)
    tracemalloc.start()
    try:
        HttpTransport({}).download_file(http_server.url("/big.bin"), scratch / "big.bin")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sha256_of(scratch / "big.bin") == sha256_of(big)
    print(f"driver peak {peak / 2**20:.1f} MiB")
    assert peak < 16 * 1024 * 1024, f"peak {peak / 2**20:.1f} MiB"


def test_bad_config_is_a_storage_error_without_values() -> None:
    with pytest.raises(StorageError, match="'retries'"):
        transport_for("http://h/x", {"http": {"retries": "lots"}})
    with pytest.raises(StorageError) as info:
        transport_for("http://h/x", {"http": {"hosts": {"h": {"password": 12345}}}})
    assert "12345" not in str(info.value)


def test_credentials_are_not_forwarded_to_another_host(
    http_server: HttpServer, scratch: Path
) -> None:
    (http_server.root / "f.txt").write_text("public")
    other = http_server.url("/f.txt").replace("127.0.0.1", "localhost")
    http_server.redirect("/start", other)
    url = http_server.url("/start").replace("http://", "http://u:pw@")
    HttpTransport({}).download_file(url, scratch / "f")
    first, second = http_server.requests
    assert "Authorization" in first[2] and "Authorization" not in second[2]
