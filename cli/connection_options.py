"""The options every command that talks to Sage shares: how to find the connection."""

from __future__ import annotations

from typing import Annotated, Any

import typer

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
