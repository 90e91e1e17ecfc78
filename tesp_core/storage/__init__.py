"""Transfer drivers, one per URL scheme, shared by the worker and the service.

This package imports only the standard library (boto3 is imported lazily by the S3
driver), because it is shipped inside the worker zipapp to compute nodes where TESP is not
installed.

Errors::

    StorageError            a transfer failed; ``url`` is already redacted
    +-- NotFoundError       the source does not exist
    +-- AccessDeniedError   credentials refused, or a path outside the allowed roots
"""

from tesp_core.storage.base import (
    AccessDeniedError,
    NotFoundError,
    StorageError,
    Transport,
)
from tesp_core.storage.redact import redact_text, redact_url
from tesp_core.storage.registry import transport_for

__all__ = [
    "AccessDeniedError",
    "NotFoundError",
    "StorageError",
    "Transport",
    "redact_text",
    "redact_url",
    "transport_for",
]
