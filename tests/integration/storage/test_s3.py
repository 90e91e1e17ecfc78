"""The S3 driver against moto's standalone server on loopback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest

from tesp_core.storage import AccessDeniedError, NotFoundError, StorageError, transport_for
from tesp_core.storage.http import HttpTransport
from tesp_core.storage.s3 import S3Transport

from .conftest import S3_SECRET, S3Server, make_big_file, sha256_of

ODD_KEY = "data/with space/naïve €uro ü.txt"


def test_download_file_is_byte_exact(s3_server: S3Server, scratch: Path) -> None:
    payload = bytes(range(256)) * 4096
    s3_server.client.put_object(Bucket=s3_server.bucket, Key="in/data.bin", Body=payload)
    url = f"s3://{s3_server.bucket}/in/data.bin"
    transport = transport_for(url, {"s3": s3_server.config})
    assert transport.download_file(url, scratch / "d" / "data.bin") == len(payload)
    assert (scratch / "d" / "data.bin").read_bytes() == payload


def test_key_with_spaces_and_non_ascii_round_trips(
    s3_server: S3Server, tmp_path: Path, scratch: Path
) -> None:
    src = tmp_path / "src.txt"
    src.write_text("ünïcödé body")
    url = f"s3://{s3_server.bucket}/{ODD_KEY}"
    transport = S3Transport(s3_server.config)
    transport.upload_file(src, url)
    body = s3_server.client.get_object(Bucket=s3_server.bucket, Key=ODD_KEY)["Body"].read()
    assert body == src.read_bytes()
    transport.download_file(url, scratch / "back.txt")
    assert (scratch / "back.txt").read_bytes() == src.read_bytes()


def test_percent_quoted_key_is_decoded(s3_server: S3Server, scratch: Path) -> None:
    # The worker appends percent-quoted relative paths to output URLs.
    s3_server.client.put_object(Bucket=s3_server.bucket, Key=ODD_KEY, Body=b"q")
    url = f"s3://{s3_server.bucket}/{quote(ODD_KEY)}"
    S3Transport(s3_server.config).download_file(url, scratch / "q")
    assert (scratch / "q").read_bytes() == b"q"


def test_directory_is_every_object_under_the_prefix(s3_server: S3Server, scratch: Path) -> None:
    for key, body in {
        "run/out/a.txt": b"a",
        "run/out/sub/b.txt": b"bb",
        "run/out/sub/deeper/c c.txt": b"ccc",
        "run/out/empty/": b"",
        "run/outside.txt": b"no",  # shares the string prefix, not the directory
        "run/out-other/x.txt": b"no",
    }.items():
        s3_server.client.put_object(Bucket=s3_server.bucket, Key=key, Body=body)
    moved = S3Transport(s3_server.config).download_dir(f"s3://{s3_server.bucket}/run/out", scratch)
    assert moved == 6
    found = sorted(p.relative_to(scratch).as_posix() for p in scratch.rglob("*"))
    assert found == ["a.txt", "empty", "sub", "sub/b.txt", "sub/deeper", "sub/deeper/c c.txt"]


def test_upload_file_and_multipart(s3_server: S3Server, tmp_path: Path) -> None:
    src = make_big_file(tmp_path / "big.bin", 12 * 1024 * 1024)
    config = {**s3_server.config, "multipart_threshold_mb": 5, "multipart_chunksize_mb": 5}
    url = f"s3://{s3_server.bucket}/deep/nested/big.bin"
    assert S3Transport(config).upload_file(src, url) == src.stat().st_size
    head = s3_server.client.head_object(Bucket=s3_server.bucket, Key="deep/nested/big.bin")
    assert head["ContentLength"] == src.stat().st_size
    assert "-" in head["ETag"]  # a multipart upload's ETag is "<md5>-<parts>"


def test_missing_key_and_bucket_are_not_found(s3_server: S3Server, scratch: Path) -> None:
    transport = S3Transport(s3_server.config)
    with pytest.raises(NotFoundError, match=r"no object 'nope\.txt' in bucket"):
        transport.download_file(f"s3://{s3_server.bucket}/nope.txt", scratch / "x")
    with pytest.raises(NotFoundError, match="bucket 'no-such-bucket-tesp' does not exist"):
        transport.download_file("s3://no-such-bucket-tesp/k.txt", scratch / "x")
    with pytest.raises(NotFoundError, match="no objects under prefix 'nothing/'"):
        transport.download_dir(f"s3://{s3_server.bucket}/nothing", scratch / "d")
    with pytest.raises(NotFoundError, match="does not exist"):
        transport.download_dir("s3://no-such-bucket-tesp/p", scratch / "d")
    src = scratch / "s.txt"
    src.write_text("s")
    with pytest.raises(NotFoundError, match="does not exist"):
        transport.upload_file(src, "s3://no-such-bucket-tesp/k.txt")


def test_bad_credentials_are_access_denied(s3_server: S3Server, scratch: Path) -> None:
    from moto.core.authorization import enable_iam_authentication

    s3_server.client.put_object(Bucket=s3_server.bucket, Key="k", Body=b"x")
    config = {**s3_server.config, "aws_access_key_id": "AKIDBOGUS", "max_attempts": 1}
    src = scratch / "up.txt"
    src.write_text("up")
    with enable_iam_authentication():
        with pytest.raises(AccessDeniedError, match="403") as info:
            S3Transport(config).download_file(f"s3://{s3_server.bucket}/k", scratch / "k")
        assert S3_SECRET not in str(info.value)
        with pytest.raises(AccessDeniedError, match="InvalidAccessKeyId") as info:
            S3Transport(config).upload_file(src, f"s3://{s3_server.bucket}/up.txt")
        assert S3_SECRET not in str(info.value)


def test_presigned_url_over_http_is_byte_exact(s3_server: S3Server, scratch: Path) -> None:
    payload = b"presigned \x00\xff" * 5000
    s3_server.client.put_object(Bucket=s3_server.bucket, Key=ODD_KEY, Body=payload)
    url = s3_server.client.generate_presigned_url(
        "get_object", Params={"Bucket": s3_server.bucket, "Key": ODD_KEY}, ExpiresIn=300
    )
    assert "X-Amz-Signature=" in url or "Signature=" in url
    HttpTransport({}).download_file(url, scratch / "p.bin")
    assert (scratch / "p.bin").read_bytes() == payload


def test_endpoint_from_aws_endpoint_url_env(
    s3_server: S3Server, scratch: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # boto3 >= 1.28 reads AWS_ENDPOINT_URL itself; the driver must not override it.
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint_url)
    s3_server.client.put_object(Bucket=s3_server.bucket, Key="env.txt", Body=b"env")
    config = {k: v for k, v in s3_server.config.items() if k != "endpoint_url"}
    S3Transport(config).download_file(f"s3://{s3_server.bucket}/env.txt", scratch / "e")
    assert (scratch / "e").read_bytes() == b"env"


_CHILD = """
import json, sys, tracemalloc
from pathlib import Path
from tesp_core.storage.s3 import S3Transport
config, url, dest = json.loads(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
transport = S3Transport(config)
transport._client(url)  # import boto3 and build the client before measuring
tracemalloc.start()
transport.download_file(url, dest)
print(tracemalloc.get_traced_memory()[1])
"""


def test_large_download_has_bounded_memory(
    s3_server: S3Server, tmp_path: Path, scratch: Path
) -> None:
    # moto serves from memory in this process, so the driver is measured in a child.
    big = make_big_file(tmp_path / "big.bin", 64 * 1024 * 1024)
    s3_server.client.upload_file(str(big), s3_server.bucket, "big.bin")
    config = {**s3_server.config, "multipart_chunksize_mb": 8}
    url = f"s3://{s3_server.bucket}/big.bin"
    child = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(config), url, str(scratch / "big.bin")],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[3],
    )
    peak = int(child.stdout.strip().splitlines()[-1])
    assert sha256_of(scratch / "big.bin") == sha256_of(big)
    print(f"driver peak {peak / 2**20:.1f} MiB")
    assert peak < 16 * 1024 * 1024, f"peak {peak / 2**20:.1f} MiB"


def test_bad_urls_and_config(s3_server: S3Server, scratch: Path) -> None:
    with pytest.raises(StorageError, match="needs a bucket"):
        S3Transport(s3_server.config).download_file("s3:///key", scratch / "x")
    with pytest.raises(StorageError, match="names no object key"):
        S3Transport(s3_server.config).download_file(f"s3://{s3_server.bucket}/", scratch / "x")
    with pytest.raises(StorageError, match="unknown keys"):
        transport_for("s3://b/k", {"s3": {"endpoint": "typo"}})
