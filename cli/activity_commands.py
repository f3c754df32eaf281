"""``sagesql activity`` and ``sagesql schema``: activities on the command line, JSON in and out.

::

    sagesql activity create contacts < in.jsonl > results.jsonl
    sagesql activity update contacts < changes.jsonl
    sagesql activity delete contacts < keys.jsonl
    sagesql activity query contacts --fields id,name --where name=Acme --limit 10
    sagesql activity execute VoidSalesInvoice < params.jsonl
    sagesql schema contacts --activity create

Input is JSON lines (one record a line; blank lines skipped) or one JSON array. Output
is one JSON line per record: ``{"index", "status", "key", "record", "error"}`` (query:
one line per row). A line that is not JSON is answered ``failed`` in its place. The
exit code is 1 when any record failed (nothing is hidden: every record has its line),
2 for bad input that stopped everything (an unknown table, a bad option).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from enum import Enum
from typing import IO, Annotated, Any

import typer

from sagesql.cli import files
from sagesql.cli.connection_options import ConnectionOption, ProfileOption, open_client

app = typer.Typer(
    help="Integration activities: create, update, delete, query, execute (JSON lines in and out).",
    no_args_is_help=True,
)

ProductOption = Annotated[
    str | None,
    typer.Option("--product", "-p", help="SageAccounting, Sage200 or SageCRM."),
]
SandboxOption = Annotated[
    bool,
    typer.Option("--sandbox", help="Run against a local sandbox with demo data (a throw-away)."),
]
InputOption = Annotated[
    str | None,
    typer.Option("--input", "-i", help="Read the records from this file instead of stdin."),
]
OutputOption = Annotated[
    str | None,
    typer.Option("--output", "-o", help="Write the results to this file instead of stdout."),
]
StopOption = Annotated[
    bool,
    typer.Option(
        "--stop-on-first-error",
        help="Stop at the first failed record (the rest are answered skipped).",
    ),
]
ConcurrencyOption = Annotated[
    int | None,
    typer.Option(
        "--max-concurrency", min=1, help="Requests in flight at once (default: MaxConcurrency)."
    ),
]


class Activity(str, Enum):
    create = "create"
    update = "update"
    delete = "delete"
    query = "query"
    execute = "execute"


# -- JSON ----------------------------------------------------------------------------------


class NotJSON:
    """An input line that is not JSON: the target answers it ``failed``."""

    def __init__(self, line: int, reason: str) -> None:
        self.line, self.reason = line, reason


def read_records(stream: IO[str]) -> Iterator[Any]:
    """JSON lines, or one JSON array; read lazily line by line."""
    from sagesql.errors import DataError

    try:
        yield from _records(stream)
    except UnicodeDecodeError as exc:
        raise DataError(
            f"the input is not UTF-8 text (byte 0x{exc.object[exc.start]:02x})",
            hint="save it as UTF-8",
        ) from None


def _records(stream: IO[str]) -> Iterator[Any]:
    first = ""
    for line in stream:
        if line.strip():
            first = line
            break
    if not first:
        return
    if first.lstrip().startswith("["):
        text = first + stream.read()
        try:
            data = json.loads(text)
        except ValueError as exc:
            from sagesql.errors import DataError

            raise DataError(f"the input is not a JSON array: {exc}", hint="fix the JSON") from None
        yield from data if isinstance(data, list) else [data]
        return
    number = 1
    yield _parse(first, number)
    for line in stream:
        number += 1
        if line.strip():
            yield _parse(line, number)


def _parse(line: str, number: int) -> Any:
    try:
        return json.loads(line)
    except ValueError as exc:
        return NotJSON(number, str(exc))


# -- files ---------------------------------------------------------------------------------


def _output(stack: ExitStack, output: str | None) -> IO[str]:
    if output:
        return files.output_file(stack, output, "--output")
    return sys.stdout


def _input(stack: ExitStack, path: str | None) -> IO[str]:
    if path:
        return files.input_file(stack, path, "--input")
    return sys.stdin


# -- targets --------------------------------------------------------------------------------


def _run_target(
    activity: str,
    name: str,
    connection: str | None,
    profile: str | None,
    product: str | None,
    sandbox: bool,
    input: str | None,
    output: str | None,
    stop_on_first_error: bool,
    max_concurrency: int | None,
    show_secrets: bool = False,
) -> None:
    from sagesql.activities import Create, Delete, Execute, Update
    from sagesql.activities.jsontext import to_json
    from sagesql.activities.results import ActivityResult
    from sagesql.engine.procedures import SECRET_RESULTS
    from sagesql.engine.row_writes import RowError

    failed = 0
    total = 0
    with ExitStack() as stack:
        conn = open_client(stack, connection, profile, product, sandbox)
        if activity == "execute":
            runner: Any = Execute(conn, name, stop_on_first_error=stop_on_first_error)
        else:
            kind = {"create": Create, "update": Update, "delete": Delete}[activity]
            runner = kind(
                conn,
                name,
                stop_on_first_error=stop_on_first_error,
                max_concurrency=max_concurrency,
            )
        records = read_records(_input(stack, input))
        bad: dict[int, NotJSON] = {}

        def checked() -> Iterator[Any]:
            for index, record in enumerate(records):
                if isinstance(record, NotJSON):
                    bad[index] = record
                    yield None  # answered below, never sent (None is no record)
                else:
                    yield record

        out = _output(stack, output)
        for result in runner.run(checked()):
            if result.index in bad:
                problem = bad.pop(result.index)
                result = ActivityResult(
                    result.index,
                    "failed",
                    error=RowError(f"not sent: line {problem.line} is not JSON: {problem.reason}"),
                )
            data = result.to_dict()
            if activity == "execute" and data["record"] and not show_secrets:
                data["record"] = {
                    k: ("********" if k in SECRET_RESULTS and v else v)
                    for k, v in data["record"].items()
                }
            out.write(to_json(data) + "\n")
            out.flush()
            total += 1
            failed += 0 if result.ok else 1
    if failed:
        typer.echo(f"{failed} of {total} records failed", err=True)
        raise typer.Exit(1)


def create(
    table: Annotated[str, typer.Argument(help="The table to create records in.")],
    connection: ConnectionOption = None,
    profile: ProfileOption = None,
    product: ProductOption = None,
    sandbox: SandboxOption = False,
    input: InputOption = None,
    output: OutputOption = None,
    stop_on_first_error: StopOption = False,
    max_concurrency: ConcurrencyOption = None,
) -> None:
    """Create one record per input line (columns as 'sagesql schema TABLE --activity create')."""
    _run_target(
        "create", table, connection, profile, product, sandbox, input, output,
        stop_on_first_error, max_concurrency,
    )  # fmt: skip


def update(
    table: Annotated[str, typer.Argument(help="The table whose records to update.")],
    connection: ConnectionOption = None,
    profile: ProfileOption = None,
    product: ProductOption = None,
    sandbox: SandboxOption = False,
    input: InputOption = None,
    output: OutputOption = None,
    stop_on_first_error: StopOption = False,
    max_concurrency: ConcurrencyOption = None,
) -> None:
    """Update one record per input line: its key and the columns to change."""
    _run_target(
        "update", table, connection, profile, product, sandbox, input, output,
        stop_on_first_error, max_concurrency,
    )  # fmt: skip


def delete(
    table: Annotated[str, typer.Argument(help="The table whose records to delete.")],
    connection: ConnectionOption = None,
    profile: ProfileOption = None,
    product: ProductOption = None,
    sandbox: SandboxOption = False,
    input: InputOption = None,
    output: OutputOption = None,
    stop_on_first_error: StopOption = False,
    max_concurrency: ConcurrencyOption = None,
) -> None:
    """Delete one record per input line (its key; void_reason to void a sales document)."""
    _run_target(
        "delete", table, connection, profile, product, sandbox, input, output,
        stop_on_first_error, max_concurrency,
    )  # fmt: skip


def execute(
    procedure: Annotated[str, typer.Argument(help="The procedure ('sagesql procedures').")],
    connection: ConnectionOption = None,
    profile: ProfileOption = None,
    product: ProductOption = None,
    sandbox: SandboxOption = False,
    input: InputOption = None,
    output: OutputOption = None,
    stop_on_first_error: StopOption = False,
    show_secrets: Annotated[
        bool, typer.Option("--show-secrets", help="Print tokens a procedure returns.")
    ] = False,
) -> None:
    """Run a procedure once per input line of parameters ({"Id": "..."})."""
    _run_target(
        "execute", procedure, connection, profile, product, sandbox, input, output,
        stop_on_first_error, None, show_secrets,
    )  # fmt: skip


def _where(items: list[str]) -> list[tuple[str, str, Any]]:
    """--where name=value, name!=value, name>=value ..., name~=pattern (LIKE)."""
    from sagesql.errors import ProgrammingError

    out = []
    for item in items:
        for op, sql in (
            ("!=", "!="),
            (">=", ">="),
            ("<=", "<="),
            ("~=", "LIKE"),
            ("=", "="),
            (">", ">"),
            ("<", "<"),
        ):
            name, sep, value = item.partition(op)
            if sep and name.strip():
                out.append((name.strip(), sql, value))
                break
        else:
            raise ProgrammingError(
                f"bad --where {item!r}", hint="write --where column=value (or != >= <= > < ~=)"
            )
    return out


def query(
    table: Annotated[str | None, typer.Argument(help="The table to read (or give --sql).")] = None,
    sql: Annotated[str | None, typer.Option("--sql", help="A SELECT instead of a table.")] = None,
    fields: Annotated[
        str | None, typer.Option("--fields", help="Columns, comma separated (default: all).")
    ] = None,
    where: Annotated[
        list[str],
        typer.Option("--where", help="column=value (or != >= <= > < ~= for LIKE); repeat."),
    ] = [],  # noqa: B006 - typer needs the literal
    order_by: Annotated[
        str | None, typer.Option("--order-by", help="Columns, comma separated; -col descends.")
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", min=0, help="Return at most this many records.")
    ] = None,
    offset: Annotated[
        int | None, typer.Option("--offset", min=0, help="Skip this many records first.")
    ] = None,
    connection: ConnectionOption = None,
    profile: ProfileOption = None,
    product: ProductOption = None,
    sandbox: SandboxOption = False,
    output: OutputOption = None,
) -> None:
    """Read records as JSON lines (one object per row)."""
    from sagesql.activities import Query
    from sagesql.activities.jsontext import to_json
    from sagesql.errors import ProgrammingError

    if (table is None) == (sql is None):
        raise ProgrammingError(
            "give a table or --sql (not both)", hint="sagesql activity query contacts"
        )
    with ExitStack() as stack:
        conn = open_client(stack, connection, profile, product, sandbox)
        if sql is not None:
            activity = Query(conn, sql)
        else:
            activity = Query(
                conn,
                table=table,
                fields=[f.strip() for f in fields.split(",") if f.strip()] if fields else None,
                conditions=_where(where) or None,
                order_by=[o.strip() for o in order_by.split(",") if o.strip()]
                if order_by
                else None,
                limit=limit,
                offset=offset,
            )
        out = _output(stack, output)
        for record in activity:
            out.write(to_json(record) + "\n")


# -- schema ----------------------------------------------------------------------------------


def schema(
    name: Annotated[str, typer.Argument(help="The table (or, for execute, the procedure).")],
    activity: Annotated[Activity, typer.Option("--activity", "-a", help="Which activity.")] = (
        Activity.create
    ),
    product: ProductOption = None,
    part: Annotated[
        str, typer.Option("--part", help="input, output or both (an object with the two).")
    ] = "both",
) -> None:
    """Print the JSON Schema of an activity's input and output records for a table."""
    from sagesql.activities import schema as schemas
    from sagesql.cli.output import print_json
    from sagesql.errors import ProgrammingError
    from sagesql.schemas.catalog import default_catalog

    catalog = default_catalog()
    chosen = product or "SageAccounting"
    if activity is Activity.execute:
        found = catalog.procedures(chosen)
        procedure = next((p for _, p in found if p.name.lower() == name.lower()), None)
        if procedure is None:
            raise ProgrammingError(
                f"unknown procedure {name!r}", hint="run 'sagesql procedures' to list them"
            )
        both = schemas.procedure_schemas(procedure)
    else:
        table = catalog.table(name, chosen)
        both = {
            "input": schemas.input_schema(table, activity.value, catalog),
            "output": schemas.output_schema(table, activity.value),
        }
    if part not in ("input", "output", "both"):
        raise ProgrammingError(f"bad --part {part!r}", hint="use input, output or both")
    print_json(both if part == "both" else both[part])


def register(parent: typer.Typer) -> None:
    for command in (create, update, delete, query, execute):
        app.command()(command)
    parent.add_typer(app, name="activity")
    parent.command()(schema)
