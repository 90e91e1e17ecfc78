"""Session fixtures: a real Slurm cluster, a Pulsar submitting to it, a TESP in front."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator

import pytest

from tests.cluster.pulsar import ClusterPulsar
from tests.cluster.slurm import SlurmCluster, slurm_cluster
from tests.conftest import TespProcess

# The Pulsar manager the Slurm tests use (also shown in docs/deployment-slurm.md).
SLURM_MANAGER = {"type": "queued_cli", "job_plugin": "Slurm", "min_polling_interval": 0.5}


@pytest.fixture(scope="session")
def slurm() -> Iterator[SlurmCluster]:
    """munged + slurmctld + slurmd on loopback for the whole session."""
    with slurm_cluster() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def slurm_pulsar(
    slurm: SlurmCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ClusterPulsar]:
    """A real Pulsar whose default manager submits with sbatch to ``slurm``."""
    pulsar = ClusterPulsar(
        root=tmp_path_factory.mktemp("pulsar-slurm"), manager=SLURM_MANAGER, env=slurm.env
    ).start()
    yield pulsar
    pulsar.stop()


@pytest.fixture(scope="session")
def slurm_tesp(
    slurm_pulsar: ClusterPulsar, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TespProcess]:
    """``tesp serve --pulsar-url`` in front of the Slurm Pulsar (runtime ``none``)."""
    base = tmp_path_factory.mktemp("tesp-slurm")
    server = TespProcess(
        data_dir=base / "data",
        storage=base / "storage",
        extra_args=["--pulsar-url", slurm_pulsar.url, "--runtime", "none"],
        env={"TESP_WORKER_PYTHON": sys.executable, "TESP_PULSAR_SCHEDULER": "slurm"},
    ).start()
    yield server
    server.stop()


# heartbeat_stale_seconds' smallest allowed value: a dead worker is noticed in 20 s.
STALE_SECONDS = 20


@pytest.fixture(scope="session")
def slurm_tesp_backends(
    slurm_pulsar: ClusterPulsar, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TespProcess]:
    """A TESP with two named backends on the Slurm Pulsar (tasks name theirs).

    ``slurm`` fits 2 cores at most (docs/deployment-slurm.md shows this configuration);
    ``broken`` has a worker Python that does not exist, so its job script fails before the
    worker starts. Heartbeats go stale after STALE_SECONDS.
    """
    base = tmp_path_factory.mktemp("tesp-slurm-backends")
    backends = {
        "slurm": {
            "url": slurm_pulsar.url,
            "max_cpu_cores": 2,
            "worker_python": sys.executable,
            "scheduler": "slurm",
        },
        "broken": {
            "url": slurm_pulsar.url,
            "worker_python": "/nonexistent/bin/python3",
            "scheduler": "slurm",
        },
    }
    server = TespProcess(
        data_dir=base / "data",
        storage=base / "storage",
        extra_args=["--runtime", "none"],
        env={
            "TESP_BACKENDS": json.dumps(backends),
            "TESP_HEARTBEAT_STALE_SECONDS": str(STALE_SECONDS),
            "TESP_MAX_TASK_SECONDS": "600",
        },
    ).start()
    yield server
    server.stop()
