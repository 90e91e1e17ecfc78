"""Session fixtures: a real Slurm cluster, a Pulsar submitting to it, a TESP in front."""

from __future__ import annotations

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
        env={"TESP_WORKER_PYTHON": sys.executable},
    ).start()
    yield server
    server.stop()
