"""``sagesql query``: run a statement and write its rows as a table, JSON, JSON lines or CSV.

A write (INSERT, UPDATE, DELETE) prints one row per input row (row, key, status,
error) and a summary on stderr, and exits 1 if any row failed: a partial write is
never hidden. UPDATE or DELETE without WHERE is refused unless ``--all`` is given.
"""

from __future__ import annotations

import sys
from contextlib import ExitStack
from enum import Enum
from typing import Annotated, Any

import typer

from sagesql.cli.connection_options import ConnectionOption, ProfileOption, settings_from


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


def _read_sql(sql: str | None) -> str:
    from sagesql.errors import ProgrammingError

    if sql is None or sql == "-":
        if sys.stdin.isatty() and sql is None:
            raise ProgrammingError("no SQL given", hint="pass it as an argument or on stdin")
        return sys.stdin.read()
    return sql


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
            help="table (default on a terminal), json, jsonl (default when piped) or csv.",
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
        typer.Option("--output", "-o", help="Write the rows to this file instead of stdout."),
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
) -> None:
    """Run a statement against Sage and print the rows (a write: one result row per row)."""
    from sagesql.cli import rows_output
    from sagesql.connector.client import SageClient
    from sagesql.engine import pipeline, writes

    text = _read_sql(sql)
    params = _params(param)
    if not explain and not all_rows:
        _refuse_every_row(text)
    with ExitStack() as stack:
        if sandbox:
            from sagesql.sandbox.runner import Sandbox, resolve_product

            box = stack.enter_context(Sandbox(resolve_product(product or "SageAccounting")))
            props = box.connection_properties()
            # Tokens of a throw-away sandbox stay in memory, not in the user's token files.
            props["OAuthSettingsLocation"] = f"memory://sandbox-{box.server.port}"
            settings = settings_from(None, None, **props)
        else:
            settings = settings_from(
                connection, profile, **({"Product": product} if product else {})
            )
        if verbose:
            from dataclasses import replace

            from sagesql.connector import logs

            settings = replace(settings, verbosity=max(settings.verbosity, min(verbose, 5)))
            logs.configure(settings, to_stderr=True)
        conn = stack.enter_context(SageClient(settings))
        if explain:
            typer.echo(pipeline.explain(conn, text, params))
            return
        result = pipeline.run(conn, text, params, max_rows=max_rows)
        stack.callback(result.close)
        chosen = format or (
            RowFormat.table if (output is None and sys.stdout.isatty()) else RowFormat.jsonl
        )
        target = (
            stack.enter_context(open(output, "w", encoding="utf-8", newline=""))
            if output
            else sys.stdout
        )
        rows_output.write(
            result, chosen.value, target, progress=sys.stderr.isatty(), show_secrets=show_secrets
        )
        if isinstance(result, writes.WriteResult):
            typer.echo(result.summary(), err=True)
            if result.failed:
                raise typer.Exit(1)


def _refuse_every_row(text: str) -> None:
    """UPDATE or DELETE without WHERE needs --all."""
    from sagesql.engine import procedures, writes
    from sagesql.engine.statement import parse
    from sagesql.errors import ProgrammingError

    if procedures.is_exec(text):
        return
    tree = parse(text)
    if writes.affects_every_row(tree):
        kind = type(tree).__name__.upper()
        raise ProgrammingError(
            f"{kind} without WHERE acts on every row of {tree.this.name}",
            hint="add a WHERE clause, or pass --all if every row is meant",
        )


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
    rows = [
        {
            "name": p.name,
            "table": table,
            "parameters": [
                {"name": q.name, "type": q.type, "required": q.required} for q in p.parameters
            ],
            "returns": [name for name, _, _ in p.result_columns],
            "description": p.description,
        }
        for table, p in found
    ]
    if format == "json":
        print_json(rows)
        return
    print_table(
        ["procedure", "table", "parameters", "description"],
        (
            (
                r["name"],
                r["table"] or "",
                ", ".join(f"@{q['name']}{'' if q['required'] else '?'}" for q in r["parameters"]),
                r["description"],
            )
            for r in rows
        ),
    )


def register(app: typer.Typer) -> None:
    app.command()(query)
    app.command()(procedures)
