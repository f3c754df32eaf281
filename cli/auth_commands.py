"""Commands about connections: ``sagesql properties``, ``sagesql test`` (also ``auth test``)
and ``sagesql auth login|status|logout``."""

from __future__ import annotations

from typing import Annotated

import typer

from sagesql.cli.connection_options import (
    ConnectionOption,
    ProfileOption,
    open_client,
    settings_from,
)
from sagesql.cli.output import ListFormat, print_json, print_table

auth_app = typer.Typer(
    help="Log in to Sage, see which token is used, log out.", no_args_is_help=True
)

FormatOption = Annotated[
    ListFormat, typer.Option("--format", "-f", help="table for people, json for tools.")
]


def properties(format: FormatOption = ListFormat.table) -> None:
    """List the connection properties with their defaults and meaning."""
    from sagesql.connector.sources import property_table

    rows = property_table()
    if format is ListFormat.json:
        print_json(rows)
        return
    print_table(
        ["property", "default", "values", "description"],
        (
            (
                r["name"],
                r["default"],
                ", ".join(r["values"])
                if isinstance(r["values"], list)
                # A secret is text that is masked wherever it is shown.
                else ("text (secret)" if r["secret"] else r["values"]),
                r["description"],
            )
            for r in rows
        ),
    )


# The tokens 'auth login' stored are those of GETANDREFRESH: status and logout look at
# them unless the connection says which mode it uses (OFF would demand an access token).
STORED_TOKENS = {"InitiateOAuth": "GETANDREFRESH"}


def _oauth_connection(connection: str | None, profile: str | None, **overrides: object):
    from sagesql.connector.client import SageClient
    from sagesql.errors import ConfigurationError

    conn = SageClient(settings_from(connection, profile, defaults=STORED_TOKENS, **overrides))
    if not conn.oauth:
        raise ConfigurationError(
            f"{conn.product.connection_name} uses User and Password, not OAuth",
            hint="nothing to log in to: set User and Password",
        )
    return conn


@auth_app.command()
def login(connection: ConnectionOption = None, profile: ProfileOption = None) -> None:
    """Log in with the browser (or a pasted redirect URL) and store the tokens."""
    from sagesql.connector.login import run_login
    from sagesql.connector.tokenstore import TokenSet

    conn = _oauth_connection(connection, profile, InitiateOAuth="GETANDREFRESH")
    tokens = TokenSet.from_response(run_login(conn.settings, conn.endpoints))
    with conn.store.locked():
        conn.store.save(tokens)
    typer.echo(f"logged in; tokens stored in {conn.store.location}", err=True)


@auth_app.command()
def status(
    connection: ConnectionOption = None,
    profile: ProfileOption = None,
    format: FormatOption = ListFormat.table,
    check: Annotated[
        bool,
        typer.Option(
            "--check/--no-check",
            help="Ask Sage whether the tokens still work (a refresh), or only read the store.",
        ),
    ] = True,
) -> None:
    """Which token this connection uses, when it expires and whether Sage still accepts it
    (never the token itself)."""
    info = _oauth_connection(connection, profile).login_status(check=check)
    if format is ListFormat.json:
        print_json(info)
    else:
        print_table(["", ""], [(k, v) for k, v in info.items()])


@auth_app.command()
def logout(connection: ConnectionOption = None, profile: ProfileOption = None) -> None:
    """Revoke the stored tokens at Sage and forget them."""
    typer.echo(_oauth_connection(connection, profile).logout(), err=True)


def test(
    connection: ConnectionOption = None,
    profile: ProfileOption = None,
    product: Annotated[
        str | None,
        typer.Option("--product", "-p", help="SageAccounting, Sage200 or SageCRM."),
    ] = None,
    sandbox: Annotated[
        bool, typer.Option("--sandbox", help="Test against a local sandbox started for it.")
    ] = False,
    format: FormatOption = ListFormat.table,
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="Log requests to stderr.")
    ] = 0,
) -> None:
    """Test the connection: reach the API, sign in, and name the business, company or user
    (exit 0), or say in one line where and why it failed."""
    from contextlib import ExitStack

    from sagesql.activities.check import check_connection

    with ExitStack() as stack:
        result = check_connection(
            open_client(stack, connection, profile, product, sandbox, verbose)
        )
    if format is ListFormat.json:
        print_json(
            {
                "ok": result.ok,
                "product": result.product,
                "api": result.api,
                **result.identity,
                "seconds": round(result.seconds, 3),
                **({"step": result.step, "error": str(result.error)} if result.error else {}),
            }
        )
    if result.error is not None:
        typer.echo(f"error: connection test failed ({result.step}): {result.error}", err=True)
        raise typer.Exit(result.error.exit_code)
    if format is ListFormat.table:
        typer.echo(f"ok: {result.product} at {result.api} ({result.seconds:.2f} s)")
        for name, value in result.identity.items():
            typer.echo(f"{name}: {value}")


def register(app: typer.Typer) -> None:
    app.command()(properties)
    app.command()(test)
    auth_app.command("test")(test)
    app.add_typer(auth_app, name="auth")
