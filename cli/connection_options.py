"""The options every command that talks to Sage shares: how to find the connection."""

from __future__ import annotations

from contextlib import ExitStack
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from sagesql.connector.client import SageClient

ConnectionOption = Annotated[
    str | None,
    typer.Option(
        "--connection",
        "-c",
        help="Connection string: Name=Value;Name=Value "
        "(see 'sagesql properties'). Also read from SAGESQL_CONNECTION.",
    ),
]
ProfileOption = Annotated[
    str | None,
    typer.Option("--profile", help="Profile in profiles.toml of the config directory."),
]


def open_client(
    stack: ExitStack,
    connection: str | None,
    profile: str | None,
    product: str | None,
    sandbox: bool,
    verbose: int = 0,
) -> SageClient:
    """The client the options name, closed with ``stack``: on a sandbox started for this
    command (--sandbox, stopped with it too), or from the connection, profile and
    environment. Only the CLI starts a sandbox (activities/clients.py says why)."""
    from sagesql.activities.clients import connected

    if sandbox:
        from sagesql.sandbox.runner import Sandbox

        box = stack.enter_context(Sandbox(product))
        return stack.enter_context(connected(verbose=verbose, **box.client_properties()))
    return stack.enter_context(
        connected(connection, profile=profile, product=product, verbose=verbose)
    )


def settings_from(
    connection: str | None,
    profile: str | None,
    *,
    defaults: dict[str, Any] | None = None,
    **overrides: Any,
) -> Any:
    """Validated settings from the command line, the profile and the environment.

    ``overrides`` win over every source; ``defaults`` apply only where no source sets
    the property.
    """
    from sagesql.connector.sources import load_settings

    return load_settings(connection, profile=profile, defaults=defaults, **overrides)
