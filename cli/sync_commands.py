"""``sagesql sync``: keep a copy of Sage tables in SQLite or PostgreSQL; ``--status`` tells where.

Thin: options are parsed here, the work is sagesql.replication's. A run that could not
finish every table (the API's quota, a failure) says so and exits 3; what it committed
stays, and the next run continues from there.
"""

from __future__ import annotations

import sys
from contextlib import ExitStack
from typing import Annotated, Any

import typer

from sagesql.cli.connection_options import ConnectionOption, ProfileOption, open_client

EXIT_INTERRUPTED = 130  # Ctrl-C, as a shell reports SIGINT


class TableProgress:
    """One line per table on a terminal's stderr, rewritten as pages arrive."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.shown = False

    def __call__(self, table: str, phase: str, rows: int) -> None:
        self.stream.write(f"\r\x1b[K{table}: {phase} {rows:,} rows")
        self.stream.flush()
        self.shown = True

    def clear(self) -> None:
        if self.shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self.shown = False


def _status(url: str) -> None:
    from sagesql.cli.output import print_table
    from sagesql.replication.runs import status

    rows = status(url)
    if not rows:
        typer.echo("no table has been synced into this replica yet", err=True)
        return
    print_table(
        ["table", "rows", "last sync", "position", "lag", "error", "ids compared"],
        (
            (
                r["table"],
                str(r["rows"]),
                r["last_sync"],
                r["position"],
                r["lag"],
                r["error"],
                f"{r['compared']} ago" if r["compared"] else "",
            )
            for r in rows
        ),
    )


def sync(
    tables: Annotated[
        list[str] | None,
        typer.Argument(
            help="Tables to copy (default: those the replica holds, else every readable "
            "table with an updated-date column)."
        ),
    ] = None,
    to: Annotated[
        str | None,
        typer.Option(
            "--to",
            help="The replica: sqlite:///PATH or postgresql://USER@HOST/DB.",
            envvar="SAGESQL_REPLICA",
        ),
    ] = None,
    connection: ConnectionOption = None,
    profile: ProfileOption = None,
    product: Annotated[
        str | None,
        typer.Option("--product", "-p", help="SageAccounting, Sage200 or SageCRM."),
    ] = None,
    full: Annotated[
        bool,
        typer.Option("--full", help="Copy every row again (deletions since the last run applied)."),
    ] = False,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            help="On a table's first run, copy only rows changed since this instant "
            "(ISO 8601) instead of every row.",
        ),
    ] = None,
    compare_every: Annotated[
        str | None,
        typer.Option(
            "--compare-every",
            help="Sage 200 and CRM: compare every id with the replica's at least this often "
            "(e.g. 6h; default 24h); in between, one count per table finds deletions.",
        ),
    ] = None,
    show_status: Annotated[
        bool,
        typer.Option("--status", help="Show each table's rows, last sync, position and lag."),
    ] = False,
    verbose: Annotated[
        int,
        typer.Option("--verbose", "-v", count=True, help="Log requests to stderr (-vv more)."),
    ] = 0,
) -> None:
    """Copy Sage tables into SQLite or PostgreSQL; later runs copy only what changed."""
    from sagesql.errors import ConfigurationError

    if not to:
        raise ConfigurationError("no replica given", hint="pass --to sqlite:///copy.sqlite")
    if show_status:
        _status(to)
        return
    from sagesql.activities.polling.timeparse import instant
    from sagesql.replication.runs import EXIT_PARTIAL, replicate

    start = instant(since, what="--since") if since else None
    options: dict[str, Any] = {}
    if compare_every is not None:
        from sagesql.activities.polling.timeparse import duration

        options["compare_every"] = duration(compare_every, what="--compare-every")
    line = TableProgress(sys.stderr) if sys.stderr.isatty() else None
    try:
        with ExitStack() as stack:
            client = open_client(stack, connection, profile, product, False, verbose)
            outcomes = replicate(
                client, to, tables or [], full=full, since=start, progress=line, **options
            )
    except KeyboardInterrupt:
        # Ctrl-C: the page being written was rolled back, the ones before it stay.
        if line is not None:
            line.clear()
        typer.echo(
            "sync interrupted: what was copied is committed: run the same command again "
            "to continue",
            err=True,
        )
        raise typer.Exit(EXIT_INTERRUPTED) from None
    if line is not None:
        line.clear()
    for outcome in outcomes:
        typer.echo(outcome.summary(), err=True)
    unfinished = [o for o in outcomes if not o.complete]
    if unfinished:
        typer.echo(
            f"sync incomplete: {len(unfinished)} of {len(outcomes)} tables did not finish; "
            "what was copied is committed: run the same command again to continue",
            err=True,
        )
        raise typer.Exit(EXIT_PARTIAL)


def register(app: typer.Typer) -> None:
    app.command()(sync)
