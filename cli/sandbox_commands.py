"""Commands of the local Sage emulator: ``sagesql sandbox serve``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    help="Run the local emulator of the Sage APIs (no Sage account needed).",
    no_args_is_help=True,
)


@app.command()
def serve(
    product: Annotated[
        str | None,
        typer.Option(
            "--product",
            "-p",
            help="SageAccounting, Sage200 or SageCRM. Default: all three, each on its own port.",
        ),
    ] = None,
    port: Annotated[
        int,
        typer.Option(
            help="Port of the (first) product; all three take PORT, PORT+1, PORT+2. 0: free ports."
        ),
    ] = 0,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    rows: Annotated[
        int | None,
        typer.Option(help="Rows of the main tables (default 50, or the --db file's)."),
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(help="Seed of the demo data (default 1, or the --db file's)."),
    ] = None,
    db: Annotated[
        Path | None,
        typer.Option(
            help="Keep the data in SQLite: a directory (one file per product) or, for one "
            "product, a file. "
            "Reused when it exists; refused if made with another product, seed or rows."
        ),
    ] = None,
    faults: Annotated[
        str,
        typer.Option(
            help="Faults to inject, e.g. latency=50,errors=0.1,statuses=500/503,"
            "throttle=0.05,drop=0.01,truncate=0.01,seed=3 (shares from 0 to 1)."
        ),
    ] = "",
    token_lifetime: Annotated[
        int | None,
        typer.Option(help="Access-token lifetime in seconds (default 300).", show_default=False),
    ] = None,
    rate_limit: Annotated[
        int | None,
        typer.Option(
            help="Requests per minute per business, company or user (default 200; 0: off).",
            show_default=False,
        ),
    ] = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Log every request to stderr.")
    ] = False,
) -> None:
    """Serve the sandbox in the foreground, printing URLs and connection strings; Ctrl-C stops."""
    from sagesql.sandbox.config import serve_config
    from sagesql.sandbox.serve import serve as serve_sandboxes
    from sagesql.sandbox.serve import start_sandboxes

    config = serve_config(
        every_product=product is None,
        port=port,
        rows=rows,
        token_lifetime=token_lifetime,
        rate_limit=rate_limit,
        faults=faults,
    )
    sandboxes = start_sandboxes(
        None if product is None else [product],
        config,
        seed=seed,
        rows=rows,
        db=db,
        host=host,
        port=port,
        quiet=not verbose,
        warn=lambda message: typer.echo(message, err=True),
    )
    serve_sandboxes(sandboxes, echo=typer.echo)
