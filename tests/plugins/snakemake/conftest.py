"""Fixtures of the Snakemake plugin tests: a ``tesp serve`` whose executors run on the host.

Shared-filesystem mode needs the ``none`` runtime: the task's executor must run in the
workflow directory itself. The file root covers pytest's temporary directories.
No warning filters are needed: the in-process runs of Snakemake's test base emit none with
snakemake 9.27 (checked with pytest's filterwarnings=error). The CLI runs are subprocesses.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import TespProcess


@pytest.fixture(scope="session")
def tesp_host_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TespProcess]:
    """A real ``tesp serve`` (embedded Pulsar, runtime ``none``) for the whole session."""
    base = tmp_path_factory.mktemp("tesp-smk")
    server = TespProcess(
        data_dir=base / "data",
        storage=base / "storage",
        extra_args=["--runtime", "none", "--file-root", str(tmp_path_factory.getbasetemp())],
    ).start()
    yield server
    server.stop()
