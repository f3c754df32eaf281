"""``sagesql poll``: poll tables for changes and deliver them as events; status, replay, reset.

Thin: options are parsed here, the work is sagesql.activities.polling's.
"""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from typing import Annotated, Any

import typer

from sagesql.cli.connection_options import ConnectionOption, ProfileOption, settings_from

app = typer.Typer(
    help="Poll Sage tables for changes and deliver them as events (webhook, JSON lines, "
    "stdout), without loss: 'sagesql poll --config FILE'.",
    no_args_is_help=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

ConfigOption = Annotated[
    str | None,
    typer.Option(
        "--config",
        help="The poller's configuration: native TOML/JSON, or an integration platform's "
        "instance JSON as-is.",
    ),
]
StateOption = Annotated[
    str | None,
    typer.Option("--state", help="The state file (default: beside the configuration)."),
]


def _config(path: str | None, state: str | None) -> Any:
    from sagesql.activities.polling.loading import load
    from sagesql.errors import ConfigurationError

    if not path:
        raise ConfigurationError("no configuration given", hint="pass --config FILE")
    return load(path, state=state)


def _logging(verbose: int, quiet: bool) -> None:
    import logging

    logger = logging.getLogger("sagesql.poll")
    if not any(getattr(h, "_sagesql_poll", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        handler._sagesql_poll = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(logging.ERROR if quiet else logging.INFO if verbose else logging.WARNING)


@app.callback(invoke_without_command=True)
def poll(
    ctx: typer.Context,
    config: ConfigOption = None,
    once: Annotated[
        bool, typer.Option("--once", help="One cycle, deliver what is due, and stop.")
    ] = False,
    interval: Annotated[
        str | None,
        typer.Option("--interval", help="Time between cycles (15m, 30s, 1h); overrides the file."),
    ] = None,
    connection: ConnectionOption = None,
    profile: ProfileOption = None,
    state: StateOption = None,
    explain: Annotated[
        bool,
        typer.Option(
            "--explain", help="Print each table's window query and requests; send nothing."
        ),
    ] = False,
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="Log every cycle to stderr.")
    ] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only errors on stderr.")] = False,
) -> None:
    """Poll the configured tables every interval and deliver their change events."""
    if ctx.invoked_subcommand is not None:
        return
    from sagesql.activities.polling import runner
    from sagesql.activities.polling.timeparse import duration

    _logging(verbose, quiet)  # before reading: the instance's warnings go to stderr too
    conf = _config(config, state)
    if explain:
        typer.echo(_explain(conf, _product(conf, connection, profile)))
        return
    settings = _settings(conf, connection, profile)
    every = duration(interval, what="--interval") if interval else None

    def report(results: list[Any]) -> None:
        if quiet:
            return
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        for result in results:
            if verbose or result.events or result.error:
                typer.echo(f"{stamp} {result.summary()}", err=True)

    code = runner.run(conf, settings, once=once, interval=every, report=report)
    if code:
        raise typer.Exit(code)


def _settings(conf: Any, connection: str | None, profile: str | None) -> Any:
    """The connection: -c and --profile over the file's own (an instance's credentials)."""
    return settings_from(
        connection or conf.connection,
        profile or conf.profile,
        defaults=conf.connection_defaults(),
    )


def _product(conf: Any, connection: str | None, profile: str | None) -> str:
    """The product to explain for: the connection's, or the instance's element when the
    connection is incomplete (explaining needs no credentials)."""
    from sagesql.activities.polling.runner import check_product
    from sagesql.errors import ConfigurationError

    try:
        settings = _settings(conf, connection, profile)
    except ConfigurationError:
        if conf.product:
            return str(conf.product)
        raise
    return check_product(conf, settings)


def _explain(conf: Any, product: str) -> str:
    from sagesql.activities.polling.tables import resolve
    from sagesql.activities.polling.timeparse import describe, iso
    from sagesql.activities.polling.window import Window
    from sagesql.schemas.catalog import default_catalog

    catalog = default_catalog()
    upper = datetime.now(timezone.utc).replace(microsecond=0)
    lower = upper - conf.interval
    out = []
    for spec in resolve(conf, catalog, product):
        size = min(spec.table.paging.max_page_size, spec.page_size or 10**9)
        head = (
            f"{spec.name}: table {spec.table.name}, {spec.mode}"
            f", lookback {describe(spec.lookback)}, delay {describe(spec.delay)}"
            f", deletions: {spec.deletes}"
        )
        out.append(head)
        if spec.placeholders:
            from sagesql.activities.polling.instance import render

            shown = ", ".join(
                f"{p} -> {render(p, lower, spec.date_timezone)}" for p in spec.placeholders
            )
            out.append(f"  placeholders (at the watermark): {shown}")
        if spec.updated is None:
            out.append("  every cycle reads every row (snapshot comparison)")
            continue
        window = Window(spec, size, catalog)
        chunked, flagged = window.keyset
        if chunked:
            how = f"  read in keyset chunks of {size}"
            out.append(how + (" (the filter applied by SQLite)" if flagged else ""))
        else:
            out.append("  read as one query paged by the API")
        explained = window.explain(iso(lower - spec.lookback), iso(upper - spec.delay))
        # The requests and what the API applies; the local SQL is sagesql query's business.
        shown = explained.split("\nlocal (SQLite):", 1)[0]
        out.extend("  " + line for line in shown.splitlines())
    return "\n".join(out)


@app.command("status")
def status_command(
    config: ConfigOption = None,
    state: StateOption = None,
    format: Annotated[str, typer.Option("--format", "-f", help="table or json.")] = "table",
) -> None:
    """Per table: watermark, last cycle, lag, outbox depth and dead letters."""
    from sagesql.activities.polling import runner
    from sagesql.cli.output import print_json, print_table

    conf = _config(config, state)
    rows = runner.status(conf)
    if format == "json":
        print_json(rows)
        return
    headers = ["table", "watermark", "last cycle", "result", "lag", "outbox", "dead letters"]
    print_table(
        headers,
        (
            [
                r["table"],
                r["watermark"],
                r["last_cycle"],
                r["last_result"],
                r["lag"],
                f"{r['outbox']}" + (f" (oldest {r['oldest_pending']})" if r["outbox"] else ""),
                r["dead_letters"],
            ]
            for r in rows
        ),
        title=f"{conf.instance_name} ({conf.state})",
    )


@app.command("replay")
def replay_command(
    config: ConfigOption = None,
    state: StateOption = None,
    table: Annotated[
        str | None, typer.Option("--table", help="Only this table's dead letters.")
    ] = None,
) -> None:
    """Send the dead letters again, in their original order."""
    from sagesql.activities.polling import runner

    conf = _config(config, state)
    _logging(0, False)
    count, report = runner.replay(conf, table=table)
    if report is None:
        where = "the running poller will send them" if count else "nothing to replay"
        typer.echo(f"{count} dead letter(s) back in the outbox: {where}")
        return
    typer.echo(
        f"{count} dead letter(s) replayed: {report.delivered} delivered, "
        f"{report.parked} parked again, {count - report.delivered - report.parked} waiting"
    )
    if report.parked or count - report.delivered:
        raise typer.Exit(1)


@app.command("reset")
def reset_command(
    table: Annotated[str, typer.Option("--table", help="The table to rewind (its name).")],
    since: Annotated[str, typer.Option("--since", help="Poll again from this time (ISO 8601).")],
    config: ConfigOption = None,
    state: StateOption = None,
) -> None:
    """Rewind a table: its changes since TIME are polled (and delivered) again."""
    from sagesql.activities.polling import runner
    from sagesql.activities.polling.timeparse import instant

    conf = _config(config, state)
    when = instant(since, what="--since")
    runner.reset(conf, table=table, since=when)
    typer.echo(f"{table}: rewound to {when.isoformat()}; the next cycle polls from there")
