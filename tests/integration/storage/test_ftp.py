"""The FTP driver against a real pyftpdlib server on loopback (with and without MLSD)."""

from __future__ import annotations

import logging
import tracemalloc
from pathlib import Path

import pytest

from tesp_core.storage import AccessDeniedError, NotFoundError, StorageError, transport_for
from tesp_core.storage.ftp import FtpTransport

from .conftest import FTP_PASSWORD, FTP_USER, FtpServer, make_big_file, sha256_of

FAST = {"retries": 1, "backoff_seconds": 0}


def test_anonymous_download_is_byte_exact(ftp_server: FtpServer, scratch: Path) -> None:
    payload = bytes(range(256)) * 513
    (ftp_server.root / "pub").mkdir()
    (ftp_server.root / "pub" / "data.bin").write_bytes(payload)
    url = ftp_server.url("/pub/data.bin")
    assert transport_for(url, {}).download_file(url, scratch / "x" / "d.bin") == len(payload)
    assert (scratch / "x" / "d.bin").read_bytes() == payload


def test_directory_download_keeps_structure(ftp_server: FtpServer, scratch: Path) -> None:
    tree = ftp_server.root / "tree"
    (tree / "a b" / "c").mkdir(parents=True)
    (tree / "empty").mkdir()
    (tree / "top.txt").write_text("top")
    (tree / "a b" / "ü.txt").write_text("uni")
    (tree / "a b" / "c" / "leaf.txt").write_text("leaf")
    moved = FtpTransport({}).download_dir(ftp_server.url("/tree"), scratch / "out")
    assert moved == 10
    out = scratch / "out"
    found = sorted(p.relative_to(out).as_posix() for p in out.rglob("*"))
    assert found == ["a b", "a b/c", "a b/c/leaf.txt", "a b/ü.txt", "empty", "top.txt"]


def test_upload_creates_parents_with_url_credentials(ftp_server: FtpServer, tmp_path: Path) -> None:
    src = tmp_path / "out.txt"
    src.write_bytes(b"uploaded\n" * 1000)
    url = ftp_server.url("/results/x/y z/out.txt", FTP_USER, FTP_PASSWORD)
    assert FtpTransport({}).upload_file(src, url) == src.stat().st_size
    assert (ftp_server.root / "results" / "x" / "y z" / "out.txt").read_bytes() == (
        src.read_bytes()
    )
    # A second upload into the now existing directories works too.
    FtpTransport({}).upload_file(src, url.replace("out.txt", "again.txt"))
    assert (ftp_server.root / "results" / "x" / "y z" / "again.txt").exists()


def test_upload_with_configured_credentials(ftp_server: FtpServer, tmp_path: Path) -> None:
    src = tmp_path / "f.txt"
    src.write_text("cfg")
    hostport = f"{ftp_server.host}:{ftp_server.port}"
    config = {"ftp": {"hosts": {hostport: {"username": FTP_USER, "password": FTP_PASSWORD}}}}
    url = ftp_server.url("/top.txt")
    transport_for(url, config).upload_file(src, url)
    assert (ftp_server.root / "top.txt").read_text() == "cfg"


def test_anonymous_upload_is_denied(ftp_server: FtpServer, tmp_path: Path) -> None:
    src = tmp_path / "f.txt"
    src.write_text("no")
    with pytest.raises(AccessDeniedError):
        FtpTransport(FAST).upload_file(src, ftp_server.url("/f.txt"))


def test_missing_file_and_directory_are_not_found(ftp_server: FtpServer, scratch: Path) -> None:
    url = ftp_server.url("/nope.txt", FTP_USER, FTP_PASSWORD)
    with pytest.raises(NotFoundError) as info:
        FtpTransport(FAST).download_file(url, scratch / "n")
    assert f"{FTP_USER}:***@" in info.value.url
    assert FTP_PASSWORD not in str(info.value)
    with pytest.raises(NotFoundError):
        FtpTransport(FAST).download_dir(ftp_server.url("/no-such-dir/"), scratch / "d")


def test_refused_login_is_access_denied_and_never_leaks(
    ftp_server: FtpServer, scratch: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    (ftp_server.root / "f.txt").write_text("x")
    url = ftp_server.url("/f.txt", FTP_USER, "wrong-pw-123")
    with pytest.raises(AccessDeniedError) as info:
        FtpTransport(FAST).download_file(url, scratch / "f")
    assert "530" in str(info.value)
    assert "wrong-pw-123" not in str(info.value)
    assert all("wrong-pw-123" not in r.getMessage() for r in caplog.records)


def test_large_file_with_bounded_memory(ftp_server: FtpServer, scratch: Path) -> None:
    big = make_big_file(ftp_server.root / "big.bin", 64 * 1024 * 1024)
    tracemalloc.start()
    try:
        FtpTransport({}).download_file(ftp_server.url("/big.bin"), scratch / "big.bin")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sha256_of(scratch / "big.bin") == sha256_of(big)
    print(f"driver peak {peak / 2**20:.1f} MiB")
    assert peak < 16 * 1024 * 1024, f"peak {peak / 2**20:.1f} MiB"


def test_dot_dot_is_refused(ftp_server: FtpServer, scratch: Path) -> None:
    with pytest.raises(StorageError, match=r"'\.\.'"):
        FtpTransport(FAST).download_file(ftp_server.url("/a/../../etc/passwd"), scratch / "x")


def test_connection_refused_is_retried_then_reported(scratch: Path) -> None:
    with pytest.raises(StorageError, match="connection failed"):
        FtpTransport(FAST).download_file("ftp://127.0.0.1:9/x", scratch / "x")
