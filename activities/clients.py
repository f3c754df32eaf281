"""What activities run on: a client, or the DB-API connection that wraps one.

::

    Create(sagesql.connect(profile="books"), "contacts")     # the DB-API connection
    Create(open_client(profile="books"), "contacts")         # or the client itself

    with connected(profile="books", verbose=2) as client:     # a command's client
        Query(client, table="contacts", limit=5)

``client_of`` is the one place an activity unwraps what it was given. ``connected``
opens the client a command asks for: settings from a connection string, a profile
and the environment, overridden by keyword properties, the log raised to ``verbose``.

Where the sandbox fits: a command run with ``--sandbox`` starts a ``Sandbox`` and hands
its ``client_properties()`` to ``connected`` (cli/connection_options.py, once for every
command). The pieces sit where the layers allow: the sandbox, which may use only the
errors and the catalog, knows how it is reached and that a throw-away login's tokens
stay in memory; this module, above the connector, opens the client; and starting the
sandbox, which only the CLI may do (tests/test_layers.py), is the CLI's one line.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeAlias

import msgspec

from sagesql.connector import logs
from sagesql.connector.client import SageClient
from sagesql.connector.seams import Client
from sagesql.connector.sources import load_settings
from sagesql.engine.dbapi import Connection
from sagesql.errors import InterfaceError

# What an activity accepts as its connection.
Connectable: TypeAlias = "Client | Connection"

# Verbosity's highest level (headers and bodies, secrets masked).
MAX_VERBOSITY = 5


def client_of(connection: Connectable) -> Client:
    """The client an activity sends through: the DB-API connection's, or ``connection``."""
    if isinstance(connection, Connection):
        if connection.closed:
            raise InterfaceError("the connection is closed", hint="open a new connection")
        client: Client = connection.client
        return client
    return connection


@contextmanager
def connected(
    connection: str | None = None,
    *,
    profile: str | None = None,
    product: str | None = None,
    verbose: int = 0,
    **properties: Any,
) -> Iterator[SageClient]:
    """An open client, closed on exit.

    Settings come from ``connection``, ``profile`` and the environment; ``product`` (when
    given) and ``properties`` override them. ``verbose`` (the CLI's -v count) raises the
    Verbosity to at least that (at most 5) and logs to stderr.
    """
    if product:
        properties["Product"] = product
    settings = load_settings(connection, profile=profile, **properties)
    if verbose:
        level = max(settings.verbosity, min(verbose, MAX_VERBOSITY))
        settings = msgspec.structs.replace(settings, verbosity=level)
        logs.configure(settings, to_stderr=True)
    with SageClient(settings) as client:
        yield client
