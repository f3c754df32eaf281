"""sagesql: SQL over Sage Business Cloud Accounting, Sage 200 and Sage CRM.

The repository root is this package: ``connector/`` talks to Sage, ``schemas/``
holds the virtual tables as data, ``activities/`` and ``cli/`` are thin layers
over the connector, ``sandbox/`` emulates the three APIs locally.
ARCHITECTURE.md maps it all.
"""

from __future__ import annotations

from sagesql.connector.errors import (
    APIError,
    AuthError,
    ConfigurationError,
    DatabaseError,
    DataError,
    Error,
    IntegrityError,
    InterfaceError,
    InternalError,
    NotSupportedError,
    OperationalError,
    ProgrammingError,
    RetriableAPIError,
    UnknownColumnError,
    UnknownTableError,
    Warning,
)

__all__ = [
    "APIError",
    "AuthError",
    "ConfigurationError",
    "DataError",
    "DatabaseError",
    "Error",
    "IntegrityError",
    "InterfaceError",
    "InternalError",
    "NotSupportedError",
    "OperationalError",
    "ProgrammingError",
    "RetriableAPIError",
    "UnknownColumnError",
    "UnknownTableError",
    "Warning",
    "__version__",
]

__version__ = "0.1.0"
