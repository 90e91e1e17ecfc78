"""Building ``tesp-worker.pyz``: the worker and the storage drivers, nothing else.

The archive is deterministic (sorted entries, fixed timestamps and modes), so its content
hash, kept in a sidecar file, tells whether a cached build is still current.

Next to each module it carries the bytecode for this interpreter as an unchecked
hash-based ``.pyc`` (PEP 552), stored uncompressed: zipimport never writes a cache, and
compiling the worker from source took most of its start-up. A node whose Python has
another magic number ignores the ``.pyc`` files and compiles the sources, as before.
"""

from __future__ import annotations

import hashlib
import importlib.util
import marshal
import os
import stat
import tempfile
import zipapp
import zipfile
from pathlib import Path

ZIPAPP_NAME = "tesp-worker.pyz"
INTERPRETER = "/usr/bin/env python3"
# Bump when the layout of the archive changes without any source file changing.
_BUILD_FORMAT = b"tesp-worker-pyz/3"
_FIXED_DATE = (2000, 1, 1, 0, 0, 0)  # any constant works; zip cannot store before 1980
_PACKAGES = ("worker", "storage")
_MAIN = (
    '"""Entry point of tesp-worker.pyz."""\n'
    "from tesp_core.worker.__main__ import main\n\n"
    "raise SystemExit(main())\n"
)


# How a job runs the archive. Not `python3 tesp-worker.pyz`: running a zipapp goes through
# runpy, whose imports (importlib.util, contextlib, collections, functools) were a tenth of a
# trivial task's worker start-up. -S: the worker is stdlib only, and site's .pth
# processing is most of a venv interpreter's start-up (38 -> 12 ms here); the S3 driver
# runs site when it needs boto3.
_BOOT = (
    "import sys;sys.path.insert(0,sys.argv[1]);"
    "from tesp_core.worker.__main__ import main;sys.exit(main(sys.argv[2:]))"
)


def worker_command(python: str, archive: str, spec: str, job_dir: str) -> list[str]:
    """The argv that runs the worker ``archive`` on ``spec`` in ``job_dir``."""
    return [python, "-S", "-c", _BOOT, archive, spec, job_dir]


def _sources() -> list[tuple[str, Path]]:
    """``(archive name, file)`` for every module shipped, sorted by archive name."""
    core = Path(__file__).resolve().parent.parent
    found: list[tuple[str, Path]] = []
    for package in _PACKAGES:
        for path in sorted((core / package).glob("*.py")):
            found.append((f"tesp_core/{package}/{path.name}", path))
    return sorted(found)


def source_hash() -> str:
    """SHA-256 over the build format and every shipped module's name and bytes."""
    digest = hashlib.sha256(_BUILD_FORMAT)
    digest.update(importlib.util.MAGIC_NUMBER)
    digest.update(_MAIN.encode())
    for name, path in _sources():
        digest.update(name.encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def _write_zip(dest: Path) -> None:
    """A plain zip of the archive's files: sorted, fixed timestamps and modes."""
    files = [("__main__.py", _MAIN.encode()), ("tesp_core/__init__.py", b"")]
    files += [(name, path.read_bytes()) for name, path in _sources()]
    # __main__ is run from source by zipapp; every imported module gets its bytecode.
    files += [(name + "c", _pyc(name, data)) for name, data in files if name != "__main__.py"]
    with zipfile.ZipFile(dest, "w") as archive:
        for name, data in sorted(files):
            info = zipfile.ZipInfo(name, date_time=_FIXED_DATE)
            # Bytecode is stored, not deflated: zipimport then never imports zlib nor
            # inflates, which was 7M of the worker's 59M instructions (bench_worker
            # --callgrind). The archive grows from 160 to 280 kB; its upload to a remote
            # Pulsar took the same 3.2 ms either way. Sources are only read on a node
            # whose Python ignores the bytecode.
            stored = name.endswith(".pyc")
            info.compress_type = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
            info.external_attr = (stat.S_IFREG | 0o644) << 16
            archive.writestr(info, data)


def _pyc(name: str, source: bytes) -> bytes:
    """An unchecked hash-based .pyc of ``source`` (magic, flags=0b01, hash, code)."""
    code = compile(source, name, "exec", dont_inherit=True)
    flags = (0b01).to_bytes(4, "little")
    return (
        importlib.util.MAGIC_NUMBER
        + flags
        + importlib.util.source_hash(source)
        + (marshal.dumps(code))
    )


def build_zipapp(dest_dir: Path) -> Path:
    """Build ``dest_dir/tesp-worker.pyz`` unless the sidecar says it is current; return it.

    Only ``tesp_core/worker/`` and ``tesp_core/storage/`` go in, plus an empty
    ``tesp_core/__init__.py``: the worker must run where TESP is not installed.
    """
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / ZIPAPP_NAME
    sidecar = dest_dir / f"{ZIPAPP_NAME}.sha256"
    wanted = source_hash()
    if target.is_file() and sidecar.is_file() and sidecar.read_text().strip() == wanted:
        return target
    with tempfile.TemporaryDirectory(prefix="tesp-pyz-", dir=dest_dir) as tmp:
        plain = Path(tmp, "plain.zip")
        _write_zip(plain)
        built = Path(tmp, ZIPAPP_NAME)
        # zipapp walks a source directory in scandir order and stamps a generated
        # __main__.py with the current time; from an archive it only adds the shebang.
        zipapp.create_archive(plain, built, interpreter=INTERPRETER)
        built.chmod(0o755)
        # os.replace keeps concurrent builders from ever exposing a half-written archive.
        os.replace(built, target)
        side_tmp = Path(tmp, "sidecar")
        side_tmp.write_text(wanted + "\n")
        os.replace(side_tmp, sidecar)
    return target
