"""An external Pulsar server (Pulsar's own WSGI app) configured for a cluster manager.

The cluster fixtures pass the scheduler's manager (``queued_cli`` with a job plugin) and the
environment its client commands need (``SLURM_CONF``); :class:`tests.servers.PulsarServer`
does the rest.
"""

from __future__ import annotations

from tests.servers import PulsarServer

# The name the cluster fixtures and tests use.
ClusterPulsar = PulsarServer

__all__ = ["ClusterPulsar"]
