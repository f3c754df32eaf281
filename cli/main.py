"""The ``sagesql`` application: command groups joined, and errors turned into exit codes.

Library errors (``sagesql.Error``) become one line on stderr and the exit code their
class names (2 bad input, 1 API failure); no traceback is shown, and none of the
locals typer could print (they may hold secrets).
"""

from __future__ import annotations

import os
import sys

import typer

from sagesql.cli import (
    activity_commands,
    auth_commands,
    catalog_commands,
    poll_commands,
    query_commands,
    sandbox_commands,
)

app = typer.Typer(
    name="sagesql",
    help="SQL over Sage Business Cloud Accounting, Sage 200 and Sage CRM.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    pretty_exceptions_show_locals=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
catalog_commands.register(app)
auth_commands.register(app)
query_commands.register(app)
activity_commands.register(app)
app.add_typer(sandbox_commands.app, name="sandbox")
app.add_typer(poll_commands.app, name="poll")


def run() -> None:
    """Console-script entry point."""
    from sagesql.errors import Error

    try:
        app(standalone_mode=True)
    except Error as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # a bug: say so in one line unless asked for the traceback
        if os.environ.get("SAGESQL_DEBUG"):
            raise
        typer.echo(
            f"internal error: {type(exc).__name__}: {exc}. "
            "Set SAGESQL_DEBUG=1 for the traceback and please report it",
            err=True,
        )
        sys.exit(1)


if __name__ == "__main__":
    run()
