"""The TES 1.1 REST server (FastAPI), served at ``/ga4gh/tes/v1`` and ``/v1``."""

from tesp_core.server.app import create_app

__all__ = ["create_app"]
