"""S3 transfers through boto3's managed transfer (multipart, streaming, threads).

boto3 is imported only when an S3 transfer actually runs, so the rest of the storage
package works on nodes without it. In ``s3://bucket/key`` the key is everything after the
bucket, percent-decoded (the worker percent-quotes the relative parts it appends) and
otherwise literal: spaces, non-ASCII, ``?`` and ``#`` are part of the key.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote

from tesp_core.storage.base import (
    AccessDeniedError,
    NotFoundError,
    StorageError,
    TransportConfig,
)
from tesp_core.storage.retry import safe_reason

logger = logging.getLogger(__name__)

_MB = 1024 * 1024
_NOT_FOUND = frozenset({"404", "NoSuchKey", "NotFound", "NoSuchBucket"})
_DENIED = frozenset(
    {
        "403",
        "AccessDenied",
        "AllAccessDisabled",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "InvalidToken",
        "TokenRefreshRequired",
        "AccountProblem",
    }
)
_STRINGS = (
    "endpoint_url",
    "region",
    "profile",
    "aws_access_key_id",
    "aws_secret_access_key",
    "aws_session_token",
    "addressing_style",
)
_INTS = {
    "multipart_threshold_mb": 64,
    "multipart_chunksize_mb": 16,
    "max_concurrency": 4,
    "max_io_queue": 16,
    "max_attempts": 5,
}


@dataclass(frozen=True, repr=False)
class S3Settings:
    """The ``storage.s3`` section of the worker spec, validated. Unset values fall back to
    boto3's own chain (``AWS_*`` environment variables, ``~/.aws``, instance roles).
    """

    strings: Mapping[str, str]
    ints: Mapping[str, int]

    def __repr__(self) -> str:
        return f"S3Settings(endpoint_url={self.strings.get('endpoint_url')!r}, ...)"

    @classmethod
    def from_config(cls, config: Mapping[str, object]) -> S3Settings:
        """Build settings from the config dict; :class:`ValueError` names a bad key."""
        unknown = set(config) - set(_STRINGS) - set(_INTS)
        if unknown:
            raise ValueError(f"unknown keys {sorted(unknown)}")
        strings: dict[str, str] = {}
        for key in _STRINGS:
            value = config.get(key)
            if value is not None and not isinstance(value, str):
                raise ValueError(f"{key!r} must be a string")
            if value:
                strings[key] = value
        ints = dict(_INTS)
        for key in _INTS:
            value = config.get(key)
            if value is None:
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{key!r} must be a positive integer")
            ints[key] = value
        if ("aws_access_key_id" in strings) != ("aws_secret_access_key" in strings):
            raise ValueError("set both 'aws_access_key_id' and 'aws_secret_access_key' or neither")
        return cls(strings, ints)

    def secrets(self) -> tuple[str | None, ...]:
        """The values that must never appear in a message."""
        return (self.strings.get("aws_secret_access_key"), self.strings.get("aws_session_token"))


class S3Transport:
    """Moves objects between ``s3://bucket/key`` URLs and local paths."""

    def __init__(self, config: TransportConfig) -> None:
        self.settings = S3Settings.from_config(config)
        self._client_cache: Any = None

    def download_file(self, url: str, dest: Path) -> int:
        """Download one object (multipart ranges above the threshold) into ``dest``."""
        bucket, key = _split(url)
        if not key or key.endswith("/"):
            raise StorageError(url, "the URL names no object key")
        return self._download(url, bucket, key, dest)

    def download_dir(self, url: str, dest: Path) -> int:
        """Download every object under ``key/`` into ``dest``, keeping the key structure."""
        bucket, key = _split(url)
        prefix = key if not key or key.endswith("/") else key + "/"
        dest.mkdir(parents=True, exist_ok=True)
        total = 0
        found = False
        for obj_key in self._keys(url, bucket, prefix):
            found = True
            relative = obj_key[len(prefix) :]
            local = _local_path(url, dest, relative)
            if obj_key.endswith("/"):  # a "folder" marker object
                local.mkdir(parents=True, exist_ok=True)
            else:
                total += self._download(url, bucket, obj_key, local)
        if not found:
            raise self._missing(url, bucket, f"no objects under prefix {prefix!r}")
        return total

    def upload_file(self, src: Path, url: str) -> int:
        """Upload ``src`` to the object at ``url`` (multipart above the threshold)."""
        bucket, key = _split(url)
        if not key or key.endswith("/"):
            raise StorageError(url, "the URL names no object key")
        client = self._client(url)
        try:
            fh = open(src, "rb")  # noqa: SIM115 - closed below; errors mapped apart
            size = os.fstat(fh.fileno()).st_size
        except OSError as exc:
            raise StorageError(url, f"cannot read {src}: {exc.strerror}") from exc
        try:
            with fh:  # s3transfer closes it too, once done
                client.upload_fileobj(fh, bucket, key, Config=self._transfer_config())
                return size
        except Exception as exc:
            raise self._translate(url, bucket, exc) from exc

    # -- helpers ----------------------------------------------------------------------

    def _download(self, url: str, bucket: str, key: str, dest: Path) -> int:
        client = self._client(url)
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            fh = open(dest, "wb")  # noqa: SIM115 - closed below; errors mapped apart
        except OSError as exc:
            raise StorageError(url, f"cannot write {dest}: {exc.strerror}") from exc
        try:
            with fh:
                client.download_fileobj(bucket, key, fh, Config=self._transfer_config())
                return fh.seek(0, 2)
        except Exception as exc:
            raise self._translate(url, bucket, exc, key=key) from exc

    def _keys(self, url: str, bucket: str, prefix: str) -> list[str]:
        client = self._client(url)
        keys: list[str] = []
        try:
            pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for page in pages:
                keys.extend(obj["Key"] for obj in page.get("Contents", []))
        except Exception as exc:
            raise self._translate(url, bucket, exc) from exc
        return keys

    def _client(self, url: str) -> Any:
        if self._client_cache is None:
            _enable_site_packages()
            try:
                import boto3
                from botocore.config import Config
            except ImportError as exc:
                raise StorageError(url, "boto3 is not installed on this node") from exc
            s = self.settings.strings
            session = boto3.session.Session(
                aws_access_key_id=s.get("aws_access_key_id"),
                aws_secret_access_key=s.get("aws_secret_access_key"),
                aws_session_token=s.get("aws_session_token"),
                region_name=s.get("region"),
                profile_name=s.get("profile"),
            )
            config = Config(
                retries={"max_attempts": self.settings.ints["max_attempts"], "mode": "standard"},
                s3={"addressing_style": s.get("addressing_style", "auto")},
                max_pool_connections=max(10, self.settings.ints["max_concurrency"]),
            )
            # With no endpoint_url here boto3 reads AWS_ENDPOINT_URL(_S3) itself.
            self._client_cache = session.client(
                "s3", endpoint_url=s.get("endpoint_url"), config=config
            )
        return self._client_cache

    def _transfer_config(self) -> Any:
        # pyproject's mypy override covers "boto3" but not its submodules.
        from boto3.s3.transfer import TransferConfig  # type: ignore[import-untyped]

        ints = self.settings.ints
        return TransferConfig(
            multipart_threshold=ints["multipart_threshold_mb"] * _MB,
            multipart_chunksize=ints["multipart_chunksize_mb"] * _MB,
            max_concurrency=ints["max_concurrency"],
            max_io_queue=ints["max_io_queue"],
            use_threads=ints["max_concurrency"] > 1,
            preferred_transfer_client="classic",
        )

    def _translate(
        self, url: str, bucket: str, exc: Exception, key: str | None = None
    ) -> StorageError:
        """Map one botocore/s3transfer exception to the StorageError tree."""
        if isinstance(exc, StorageError):
            return exc
        from botocore.exceptions import ClientError, NoCredentialsError, PartialCredentialsError

        if isinstance(exc, NoCredentialsError | PartialCredentialsError):
            return AccessDeniedError(url, "no usable AWS credentials (config, env or ~/.aws)")
        cause = exc
        while not isinstance(cause, ClientError) and cause.__cause__ is not None:
            cause = cause.__cause__  # type: ignore[assignment]
        if not isinstance(cause, ClientError):
            return StorageError(url, safe_reason(f"{type(exc).__name__}: {exc}", self._secrets))
        error = cause.response.get("Error", {})
        code = str(error.get("Code", ""))
        message = safe_reason(str(error.get("Message", "")), self._secrets)
        if code == "NoSuchBucket":
            return NotFoundError(url, f"bucket {bucket!r} does not exist")
        if code in _NOT_FOUND:
            what = f"no object {key!r} in bucket {bucket!r}" if key else "not found"
            return self._missing(url, bucket, what)
        if code == "403":  # HEAD answers carry no error body, hence no code
            return AccessDeniedError(url, "S3 HTTP 403: credentials refused or not permitted")
        if code in _DENIED:
            return AccessDeniedError(url, f"S3 {code}: {message}".rstrip(": "))
        return StorageError(url, f"S3 {code}: {message}".rstrip(": "))

    def _missing(self, url: str, bucket: str, what: str) -> StorageError:
        """A NotFoundError saying whether the bucket or only the key/prefix is missing."""
        try:
            self._client(url).head_bucket(Bucket=bucket)
        except Exception as exc:
            response = getattr(exc, "response", None) or {}
            if str(response.get("Error", {}).get("Code")) in _NOT_FOUND:
                return NotFoundError(url, f"bucket {bucket!r} does not exist")
        return NotFoundError(url, what)

    @property
    def _secrets(self) -> tuple[str | None, ...]:
        return self.settings.secrets()


def _split(url: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> (bucket, key), the key percent-decoded, otherwise literal."""
    rest = url[len("s3://") :] if url.lower().startswith("s3://") else ""
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise StorageError(url, "an S3 URL needs a bucket: s3://bucket/key")
    return bucket, unquote(key)


def _local_path(url: str, dest: Path, relative: str) -> Path:
    """Where an object below the prefix goes; refuse keys that would escape ``dest``."""
    parts = PurePosixPath(relative).parts
    if not parts:
        return dest
    inner = relative.rstrip("/").split("/")
    if any(p in ("", ".", "..") for p in inner) or relative.startswith("/"):
        raise StorageError(url, f"object key {relative!r} is not a safe relative path")
    return dest.joinpath(*inner)


@functools.cache
def _enable_site_packages() -> None:
    """Put site-packages on sys.path when the worker was started with ``python -S``.

    The worker skips ``site`` at start-up (most of the interpreter's start time in a venv);
    boto3 is the one thing it imports from outside the standard library.
    """
    if sys.flags.no_site:
        import site

        site.main()
