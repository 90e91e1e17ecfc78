"""TESP core: TES 1.1 models, the task service, the Pulsar backend, storage and the server."""

__version__ = "0.1.0"

__all__ = ["__version__"]
