"""Execution backends behind the :class:`Backend` protocol (Pulsar over REST today)."""

from tesp_core.backends.base import Backend
from tesp_core.backends.embedded import EmbeddedPulsar
from tesp_core.backends.pulsar import JobStatus, PulsarBackend

__all__ = ["Backend", "EmbeddedPulsar", "JobStatus", "PulsarBackend"]
