"""The exception tree: one root, subclasses grouped by what the caller should do.

The tree follows PEP 249 so that DB-API users can catch the names they know, and
each class says how the CLI exits::

    Warning
    Error                               root of everything sagesql raises
    ├── InterfaceError                  the caller used sagesql wrongly       exit 2
    │   └── ConfigurationError          bad connection properties             exit 2
    └── DatabaseError
        ├── ProgrammingError            bad SQL or names                      exit 2
        │   ├── UnknownTableError
        │   └── UnknownColumnError
        ├── DataError                   a value of the wrong type or form     exit 2
        ├── NotSupportedError           the table or API cannot do that       exit 2
        ├── IntegrityError              Sage refused a record (422)           exit 1
        ├── InternalError               a bug in sagesql                      exit 1
        └── OperationalError            talking to Sage failed                exit 1
            ├── AuthError               log in again or fix the credentials
            ├── RetriableAPIError       Sage was busy or down; try later
            └── APIError                Sage answered with an error

Messages are one line: the problem, then the fix. They never contain a secret.
"""

from __future__ import annotations

import builtins

EXIT_BAD_INPUT = 2
EXIT_API_FAILURE = 1


class Warning(builtins.Warning):  # the PEP 249 name
    """Important warnings, such as a query that needs a full table scan."""


class Error(Exception):
    """Root of every error sagesql raises."""

    exit_code = EXIT_API_FAILURE

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(message if not hint else f"{message}. {hint}")


class InterfaceError(Error):
    """sagesql itself was used wrongly (a closed cursor, a bad argument)."""

    exit_code = EXIT_BAD_INPUT


class ConfigurationError(InterfaceError):
    """Connection properties that are unknown, missing or invalid."""


class DatabaseError(Error):
    """Errors about the data source: the statement or Sage's answer."""


class ProgrammingError(DatabaseError):
    """Malformed SQL, unknown names, wrong number of parameters."""

    exit_code = EXIT_BAD_INPUT


class UnknownTableError(ProgrammingError):
    """A table (or product) name that the catalog does not know."""


class UnknownColumnError(ProgrammingError):
    """A column name that the table does not have."""


class DataError(DatabaseError):
    """A value of the wrong type, out of range, or badly formed."""

    exit_code = EXIT_BAD_INPUT


class NotSupportedError(DatabaseError):
    """An operation the table or the API does not support."""

    exit_code = EXIT_BAD_INPUT


class IntegrityError(DatabaseError):
    """Sage refused a record as invalid (422 and its field errors)."""


class InternalError(DatabaseError):
    """A bug in sagesql; please report it."""


class OperationalError(DatabaseError):
    """Talking to Sage failed."""


class AuthError(OperationalError):
    """Credentials were refused or have expired: log in again."""


class RetriableAPIError(OperationalError):
    """Sage was busy, rate limited or unreachable, and retries ran out."""


class APIError(OperationalError):
    """Sage answered with an error that retrying will not fix."""
