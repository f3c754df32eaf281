"""``sagesql poll``: poll tables for changes and deliver them as events; status, replay, reset.

Thin: options are parsed here, the work is sagesql.activities.polling's.
"""

from __future__ import annotations

import sys
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
# -v repeats (-vv): a count, never a value ('-v 1' would read 1 as a command).
VerboseOption = Annotated[
    int,
    typer.Option(
        "--verbose",
        "-v",
        count=True,
        metavar="",
        show_default=False,
        help="Log every cycle, delivery and retry to stderr; -vv also each request to Sage.",
    ),
]


def _config(path: str | None, state: str | None) -> Any:
    from sagesql.activities.polling.loading import load
    from sagesql.errors import ConfigurationError

    if not path:
        raise ConfigurationError("no configuration given", hint="pass --config FILE")
    return load(path, state=state)


def _logging(verbose: int, quiet: bool) -> None:
    """The poller's log on stderr, the one place its lines are printed: tables with
    events (INFO) and failures by default, every cycle and retry with -v (DEBUG)."""
    import logging

    logger = logging.getLogger("sagesql.poll")
    if not any(getattr(h, "_sagesql_poll", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        handler._sagesql_poll = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(logging.ERROR if quiet else logging.DEBUG if verbose else logging.INFO)


def _requests_logged(settings: Any, verbose: int) -> Any:
    """-vv and more: the connection's requests logged too, as 'sagesql query -vv' does."""
    if verbose < 2:
        return settings
    import msgspec

    from sagesql.activities.clients import MAX_VERBOSITY
    from sagesql.connector import logs

    settings = msgspec.structs.replace(
        settings, verbosity=max(settings.verbosity, min(verbose, MAX_VERBOSITY))
    )
    logs.configure(settings, to_stderr=True)
    return settings


@app.callback(invoke_without_command=True)
def poll(
    ctx: typer.Context,
    config: ConfigOption = None,
    once: Annotated[
        bool,
        typer.Option(
            "--once",
            help="One cycle, deliver what is due, and stop. Exit 1 when a table failed, 3 "
            "when messages wait for a retry or were parked as dead letters.",
        ),
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
            "--explain",
            help="Print each table's next window (from the stored watermark when the state "
            "exists), its requests, and when ids are compared next; send nothing.",
        ),
    ] = False,
    callback_url: Annotated[
        str | None,
        typer.Option(
            "--callback-url",
            metavar="<url>",
            help="A trial run: this run's events go to URL instead of the webhook sinks' URL "
            "(their signature key and auth kept). The state moves as usual: give --state "
            "to keep the real one untouched.",
        ),
    ] = None,
    sink: Annotated[
        str | None,
        typer.Option(
            "--sink",
            metavar="<stdout|jsonl:path>",
            help="A trial run: this run's events go to stdout or a JSON lines file instead "
            "of every configured sink (messages pending for those wait for a later run).",
        ),
    ] = None,
    verbose: VerboseOption = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only errors on stderr.")] = False,
) -> None:
    """Poll the configured tables every interval and deliver their change events."""
    if ctx.invoked_subcommand is not None:
        return
    from dataclasses import replace

    from sagesql.activities.polling import runner
    from sagesql.activities.polling.sinks import redirect
    from sagesql.activities.polling.timeparse import duration

    _logging(verbose, quiet)  # before reading: the instance's warnings go to stderr too
    conf = _config(config, state)
    sinks, held = redirect(conf.sinks, callback_url=callback_url, to=sink)
    conf = replace(conf, sinks=sinks)
    if explain:
        typer.echo(runner.explain(conf, _product(conf, connection, profile)))
        return
    settings = _requests_logged(_settings(conf, connection, profile), verbose)
    every = duration(interval, what="--interval") if interval else None
    code = runner.run(conf, settings, once=once, interval=every, held=held)
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


# The subcommands take the connection options 'poll' takes (integration tools pass the
# same options to every subcommand); status and reset need no connection.
def _replay_product(conf: Any, connection: str | None, profile: str | None) -> str | None:
    """The product webhook notifications name: the configuration's, else the connection's
    (when one is given or configured; replay needs no credentials)."""
    from sagesql.errors import ConfigurationError

    if conf.product:
        return str(conf.product)
    try:
        return _product(conf, connection, profile)
    except ConfigurationError:
        return None


@app.command("status")
def status_command(
    config: ConfigOption = None,
    state: StateOption = None,
    format: Annotated[str, typer.Option("--format", "-f", help="table or json.")] = "table",
    connection: ConnectionOption = None,
    profile: ProfileOption = None,
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
    connection: ConnectionOption = None,
    profile: ProfileOption = None,
) -> None:
    """Send the dead letters again, in their original order."""
    from sagesql.activities.polling import runner

    conf = _config(config, state)
    _logging(0, False)
    count, report = runner.replay(
        conf, table=table, product=_replay_product(conf, connection, profile)
    )
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
    connection: ConnectionOption = None,
    profile: ProfileOption = None,
) -> None:
    """Rewind a table: its changes since TIME are polled (and delivered) again."""
    from sagesql.activities.polling import runner
    from sagesql.activities.polling.timeparse import instant

    conf = _config(config, state)
    when = instant(since, what="--since")
    runner.reset(conf, table=table, since=when)
    typer.echo(f"{table}: rewound to {when.isoformat()}; the next cycle polls from there")
