"""The ``sagesql`` application: command groups joined, and errors turned into exit codes.

Library errors (``sagesql.Error``) become one line on stderr and the exit code their
class names (2 bad input, 1 API failure); no traceback is shown, and none of the
locals typer could print (they may hold secrets). Usage errors (an unknown option, a
bad value) are one line too, with exit 2, rather than typer's boxed panel.
"""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Sequence
from typing import Any

import typer
from typer.core import TyperGroup

from sagesql.cli import (
    activity_commands,
    auth_commands,
    catalog_commands,
    poll_commands,
    query_commands,
    sandbox_commands,
    service_commands,
    sync_commands,
)

# The modules loaded so far live as long as the command: later collections skip them.
gc.freeze()

try:  # typer vendors click from 0.22 on; its errors are those classes
    from typer._click import exceptions as click_errors
except ImportError:  # an older typer: click itself
    from click import exceptions as click_errors  # type: ignore[no-redef]


class OneLineErrors(TyperGroup):
    """The top-level group: click's errors printed as one line (exit 2 for usage errors)."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        extra["windows_expand_args"] = windows_expand_args
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click_errors.NoArgsIsHelpError as exc:  # the help is printed already
            sys.exit(exc.exit_code)
        except click_errors.UsageError as exc:
            where = f"'{exc.ctx.command_path} --help'" if exc.ctx is not None else "--help"
            typer.echo(f"error: {_line(exc.format_message())} (see {where})", err=True)
            sys.exit(exc.exit_code)
        except click_errors.ClickException as exc:
            typer.echo(f"error: {_line(exc.format_message())}", err=True)
            sys.exit(exc.exit_code)
        except typer.Abort:
            typer.echo("aborted", err=True)
            sys.exit(1)
        sys.exit(result if isinstance(result, int) else 0)


def _line(text: str) -> str:
    return " ".join(text.split()).rstrip(".")


app = typer.Typer(
    cls=OneLineErrors,
    name="sagesql",
    help="SQL over Sage Business Cloud Accounting, Sage 200 and Sage CRM.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    pretty_exceptions_show_locals=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        from sagesql.version import __version__

        typer.echo(f"sagesql {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(
        False, "--version", help="Print the version and exit.", callback=_version, is_eager=True
    ),
) -> None:
    """SQL over Sage Business Cloud Accounting, Sage 200 and Sage CRM."""


catalog_commands.register(app)
auth_commands.register(app)
query_commands.register(app)
activity_commands.register(app)
app.add_typer(sandbox_commands.app, name="sandbox")
app.add_typer(poll_commands.app, name="poll")
service_commands.register(app)
sync_commands.register(app)


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
