"""``sagesql query``: run a statement and write its rows as a table, JSON, JSON lines or CSV.

A write (INSERT, UPDATE, DELETE) prints one row per input row (row, key, status,
error) and a summary on stderr, and exits 1 if any row failed: a partial write is
never hidden. UPDATE or DELETE without WHERE is refused unless ``--all`` is given.

SQL that starts with a comment (``-- note``) is the statement, not an option: an
argument that starts with ``-`` and has white space before any ``=`` cannot be one.
"""

from __future__ import annotations

import gc
import sys
from contextlib import ExitStack
from enum import Enum
from typing import Annotated, Any

import typer
from typer.core import TyperCommand

from sagesql.cli import files
from sagesql.cli.connection_options import ConnectionOption, ProfileOption, open_client


class SQLArgument(TyperCommand):
    """``query``: an argument such as ``-- note\nSELECT 1`` is the SQL, not an option."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if "--" not in args:
            sql = [a for a in args if _is_sql(a)]
            if sql:
                args = [a for a in args if not _is_sql(a)] + ["--", *sql]
        return list(super().parse_args(ctx, args))


def _is_sql(arg: str) -> bool:
    """An argument starting with - that no option can be: white space before any '='."""
    if not arg.startswith("-") or arg == "-":
        return False
    name = arg.split("=", 1)[0]
    return any(c.isspace() for c in name)


class RowFormat(str, Enum):
    table = "table"
    json = "json"
    jsonl = "jsonl"
    csv = "csv"


def _params(values: list[str]) -> dict[str, Any] | list[Any] | None:
    """--param name=value (named) or --param 1=value (positional, for ? placeholders)."""
    from sagesql.errors import ProgrammingError

    if not values:
        return None
    pairs = []
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ProgrammingError(f"bad --param {item!r}", hint="write --param NAME=VALUE")
        pairs.append((name.strip().lstrip(":"), value))
    if all(name.isdigit() for name, _ in pairs):
        return [value for _, value in sorted(pairs, key=lambda p: int(p[0]))]
    return dict(pairs)


# -o FILE without --format: the format its extension names.
EXTENSIONS = {
    ".csv": RowFormat.csv,
    ".json": RowFormat.json,
    ".jsonl": RowFormat.jsonl,
    ".ndjson": RowFormat.jsonl,
}


def _default_format(output: str | None) -> RowFormat:
    """A table for a person at a terminal; the extension's format for -o; else JSON lines."""
    if output is not None:
        from pathlib import Path

        return EXTENSIONS.get(Path(output).suffix.lower(), RowFormat.jsonl)
    return RowFormat.table if sys.stdout.isatty() else RowFormat.jsonl


def _progress_line(chosen: RowFormat, to_file: bool) -> Any:
    """A progress line on stderr when it is a terminal, unless rows stream to that very
    terminal (the line would break them); None otherwise: piped, nothing is drawn."""
    if not sys.stderr.isatty():
        return None
    if not to_file and chosen is not RowFormat.table and sys.stdout.isatty():
        return None
    from sagesql.cli.progress import ProgressLine

    return ProgressLine(sys.stderr)


def _read_sql(sql: str | None) -> str:
    from sagesql.errors import ProgrammingError

    if sql is None or sql == "-":
        if sys.stdin.isatty() and sql is None:
            raise ProgrammingError("no SQL given", hint="pass it as an argument or on stdin")
        return files.read_stdin("the SQL on stdin")
    return files.checked_text(sql, "the SQL argument")


def query(
    sql: Annotated[
        str | None, typer.Argument(help="The statement (SELECT, INSERT, ...), or - for stdin.")
    ] = None,
    connection: ConnectionOption = None,
    profile: ProfileOption = None,
    sandbox: Annotated[
        bool,
        typer.Option(
            "--sandbox",
            help="Run against a local Sage sandbox with demo data, started for "
            "this query (no Sage account needed).",
        ),
    ] = False,
    product: Annotated[
        str | None,
        typer.Option(
            "--product",
            "-p",
            help="SageAccounting, Sage200 or SageCRM (with --sandbox, or "
            "overriding the connection's Product).",
        ),
    ] = None,
    format: Annotated[
        RowFormat | None,
        typer.Option(
            "--format",
            "-f",
            help="table (default on a terminal), json, jsonl (default when piped) or csv; "
            "with -o, the file's extension.",
        ),
    ] = None,
    param: Annotated[
        list[str],
        typer.Option(
            "--param",
            help="A parameter: NAME=VALUE for :NAME, or 1=VALUE for the first ?. Repeat for more.",
        ),
    ] = [],  # noqa: B006 - typer needs the literal
    output: Annotated[
        str | None,
        typer.Option(
            "--output",
            "-o",
            help="Write the rows to this file instead of stdout; without --format, the "
            "extension says how (.csv, .json, .jsonl; otherwise JSON lines).",
        ),
    ] = None,
    max_rows: Annotated[
        int | None, typer.Option("--max-rows", help="Stop after this many rows.", min=0)
    ] = None,
    show_secrets: Annotated[
        bool,
        typer.Option(
            "--show-secrets", help="Print the tokens an auth procedure returns (masked otherwise)."
        ),
    ] = False,
    verbose: Annotated[
        int,
        typer.Option(
            "--verbose",
            "-v",
            count=True,
            help="Log to stderr: -v statements, -vv requests, -vvv headers and bodies "
            "(secrets are always masked).",
        ),
    ] = 0,
    explain: Annotated[
        bool,
        typer.Option(
            "--explain", help="Print the plan (requests, pushed and local filters); send nothing."
        ),
    ] = False,
    all_rows: Annotated[
        bool,
        typer.Option("--all", help="Allow UPDATE or DELETE without WHERE (every row)."),
    ] = False,
    replica: Annotated[
        str | None,
        typer.Option(
            "--replica",
            help="Answer from this replica (sqlite:///PATH or postgresql://...) instead of "
            "Sage; REPLICATE and CACHE statements write into it.",
            envvar="SAGESQL_REPLICA",
        ),
    ] = None,
) -> None:
    """Run a statement against Sage and print the rows (a write: one result row per row)."""
    # A statement's objects die young and without cycles (decoded pages, rows): the
    # default, a collection every 700 allocations, spent ~0.8 s of a 30k-row scan's
    # 3.6 s of CPU to find 2,590 objects, and ~30 ms of the start.
    gc.set_threshold(50_000, 10, 10)
    from sagesql.cli import rows_output
    from sagesql.engine import pipeline, progress, writes

    # What start-up loaded (modules, the catalog) lives to the end: the collector need
    # not walk it again (a full collection during the first statement took ~25 ms).
    gc.freeze()
    text = _read_sql(sql)
    params = _params(param)
    if _sync_statement(text, replica):
        _replicate(text, replica, connection, profile, product, sandbox, verbose, format, output)
        return
    if replica is not None:
        from sagesql.replication.offline import answer
        from sagesql.replication.offline import explain as replica_plan

        if explain:
            typer.echo(replica_plan(replica, text, params))
            return
        with ExitStack() as stack:
            target = files.output_file(stack, output, "--output") if output else None
            result = answer(replica, text, params)
            stack.callback(result.close)
            chosen = format or _default_format(output)
            rows_output.write(result, chosen.value, target or sys.stdout)
        return
    with ExitStack() as stack:
        # Before anything is sent: a write's results must have somewhere to go.
        target = files.output_file(stack, output, "--output") if output and not explain else None
        conn = open_client(stack, connection, profile, product, sandbox, verbose)
        if explain:
            typer.echo(pipeline.explain(conn, text, params, max_rows=max_rows))
            return
        chosen = format or _default_format(output)
        line = _progress_line(chosen, target is not None)
        if line is not None:
            stack.enter_context(progress.watching(line))
            stack.callback(line.close)
        result = pipeline.run(conn, text, params, max_rows=max_rows, allow_all_rows=all_rows)
        stack.callback(result.close)
        rows_output.write(
            result, chosen.value, target or sys.stdout, progress=line, show_secrets=show_secrets
        )
        if isinstance(result, writes.WriteResult):
            typer.echo(result.summary(), err=True)
            if result.failed:
                raise typer.Exit(1)


def _sync_statement(text: str, replica: str | None) -> bool:
    """REPLICATE or CACHE: they need the replica they write into."""
    # replication imports the poller and sqlite-utils (and pandas when installed): a
    # statement whose first word is neither need not pay for them.
    if not text.lstrip().upper().startswith(("REPLICATE", "CACHE")):
        return False
    from sagesql.errors import ProgrammingError
    from sagesql.replication.statements import is_sync_statement

    if not is_sync_statement(text):
        return False
    if replica is None:
        raise ProgrammingError(
            "REPLICATE and CACHE write into a replica: none given",
            hint="pass --replica sqlite:///copy.sqlite (or set SAGESQL_REPLICA)",
        )
    return True


def _replicate(
    text: str,
    replica: Any,
    connection: str | None,
    profile: str | None,
    product: str | None,
    sandbox: bool,
    verbose: int,
    format: RowFormat | None,
    output: str | None,
) -> None:
    from sagesql.cli import rows_output
    from sagesql.replication.runs import EXIT_PARTIAL, run_statement

    with ExitStack() as stack:
        target = files.output_file(stack, output, "--output") if output else None
        conn = open_client(stack, connection, profile, product, sandbox, verbose)
        result, complete = run_statement(conn, replica, text)
        rows_output.write(result, (format or _default_format(output)).value, target or sys.stdout)
    if not complete:
        typer.echo(
            "sync incomplete: what was copied is committed: run the statement again to continue",
            err=True,
        )
        raise typer.Exit(EXIT_PARTIAL)


def procedures(
    product: Annotated[
        str | None, typer.Option("--product", "-p", help="SageAccounting, Sage200 or SageCRM.")
    ] = None,
    format: Annotated[str, typer.Option("--format", "-f", help="table or json.")] = "table",
) -> None:
    """List the stored procedures (EXEC Name @Param='value') with their parameters."""
    from sagesql.cli.output import print_json, print_table
    from sagesql.schemas.catalog import default_catalog

    catalog = default_catalog()
    found = catalog.procedures(product or "SageAccounting")
    if format == "json":
        print_json([p.to_description(table) for table, p in found])
        return
    print_table(
        ["procedure", "table", "parameters", "description"],
        ((p.name, table or "", p.signature, p.description) for table, p in found),
    )


def register(app: typer.Typer) -> None:
    app.command(cls=SQLArgument)(query)
    app.command()(procedures)
