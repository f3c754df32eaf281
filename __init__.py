"""sagesql: SQL over Sage Business Cloud Accounting, Sage 200 and Sage CRM.

The repository root is this package: ``connector/`` talks to Sage, ``schemas/``
holds the virtual tables as data, ``activities/`` and ``cli/`` are thin layers
over the connector, ``sandbox/`` emulates the three APIs locally.
ARCHITECTURE.md maps it all.
"""

from __future__ import annotations

from sagesql.engine.dbapi import (
    BINARY,
    DATETIME,
    NUMBER,
    ROWID,
    STRING,
    Binary,
    Date,
    DateFromTicks,
    Time,
    TimeFromTicks,
    Timestamp,
    TimestampFromTicks,
    apilevel,
    connect,
    paramstyle,
    threadsafety,
)
from sagesql.errors import (
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
from sagesql.version import __version__

__all__ = [
    "BINARY",
    "DATETIME",
    "NUMBER",
    "ROWID",
    "STRING",
    "APIError",
    "AuthError",
    "Binary",
    "ConfigurationError",
    "DataError",
    "DatabaseError",
    "Date",
    "DateFromTicks",
    "Error",
    "IntegrityError",
    "InterfaceError",
    "InternalError",
    "NotSupportedError",
    "OperationalError",
    "ProgrammingError",
    "RetriableAPIError",
    "Time",
    "TimeFromTicks",
    "Timestamp",
    "TimestampFromTicks",
    "UnknownColumnError",
    "UnknownTableError",
    "Warning",
    "__version__",
    "apilevel",
    "connect",
    "paramstyle",
    "threadsafety",
]
