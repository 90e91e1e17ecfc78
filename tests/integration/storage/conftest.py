"""Fixtures for the storage driver tests: the servers of ``tests/servers.py``, per test.

Each fixture starts the server it needs and stops it afterwards; nothing is mocked. The
session-wide moto server (``moto_endpoint``) lives in ``tests/conftest.py``.
"""

from __future__ import annotations

import hashlib
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import (
    FTP_PASSWORD,
    FTP_USER,
    S3_KEY_ID,
    S3_SECRET,
    FtpServer,
    HttpServer,
    S3Server,
    start_ftp,
    start_http,
)

__all__ = [
    "FTP_PASSWORD",
    "FTP_USER",
    "S3_KEY_ID",
    "S3_SECRET",
    "FtpServer",
    "HttpServer",
    "S3Server",
    "make_big_file",
    "sha256_of",
]

# -- helpers ---------------------------------------------------------------------------


def sha256_of(path: Path) -> str:
    """Hex digest of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def make_big_file(path: Path, size: int) -> Path:
    """Write ``size`` pseudo-random bytes to ``path`` without holding them in memory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    block = hashlib.sha256(b"tesp").digest() * (1024 * 1024 // 32)
    with open(path, "wb") as fh:
        written = 0
        counter = 0
        while written < size:
            piece = bytes([counter % 251]) + block[1:]
            piece = piece[: size - written]
            fh.write(piece)
            written += len(piece)
            counter += 1
    return path


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[HttpServer]:
    """An :class:`HttpServer` serving a fresh temp directory."""
    with start_http(tmp_path / "http-root") as server:
        yield server


@pytest.fixture(params=[True, False], ids=["mlsd", "no-mlsd"])
def ftp_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FtpServer]:
    """An :class:`FtpServer`, once with MLSD and once without (NLST + CWD probing)."""
    with start_ftp(tmp_path / "ftp-root", mlsd=request.param) as server:
        yield server


@pytest.fixture
def s3_server(moto_endpoint: str) -> Iterator[S3Server]:
    """An :class:`S3Server` with an empty bucket of its own."""
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=moto_endpoint,
        region_name="us-east-1",
        aws_access_key_id=S3_KEY_ID,
        aws_secret_access_key=S3_SECRET,
    )
    bucket = f"tesp-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    yield S3Server(moto_endpoint, bucket, client)


@pytest.fixture
def scratch(tmp_path: Path) -> Iterator[Path]:
    """A local directory for downloads, removed afterwards."""
    path = tmp_path / "scratch"
    path.mkdir()
    yield path
    shutil.rmtree(path, ignore_errors=True)
