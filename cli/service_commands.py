"""``sagesql serve`` and ``sagesql org create``: the instances service, thin over the library."""

from __future__ import annotations

import json
from typing import Annotated

import typer

DatabaseOption = Annotated[
    str | None,
    typer.Option(
        "--database",
        envvar="SAGESQL_DATABASE",
        help="sqlite:///PATH (default: service.sqlite in the user's data directory) or "
        "postgresql://USER@HOST/DATABASE (workers on many machines).",
    ),
]

org_app = typer.Typer(
    help="Organizations of the instances service.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


db_app = typer.Typer(
    help="The service database's schema.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)

SecretKeyOption = Annotated[
    str | None,
    typer.Option(
        "--secret-key",
        envvar="SAGESQL_SECRET_KEY",
        show_default=False,
        show_envvar=True,
        help="The Fernet key instance secrets are encrypted with (better in the environment).",
    ),
]


def _database_url(database: str | None) -> str:
    from sagesql.connector.sources import data_dir
    from sagesql.service.storage import default_url

    return database or default_url(data_dir())


@org_app.command("create")
def org_create(
    name: Annotated[str, typer.Argument(help="The organization's name.")],
    database: DatabaseOption = None,
) -> None:
    """Create an organization and its first user; prints their secrets (shown once)."""
    from sagesql.service.operations import create_org
    from sagesql.service.storage import ServiceDatabase

    db = ServiceDatabase(_database_url(database))
    try:
        typer.echo(json.dumps(create_org(db, name), indent=2))
    finally:
        db.close()


def serve(
    host: Annotated[str, typer.Option("--host", help="The address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="0: any free port.")] = 8080,
    database: DatabaseOption = None,
    workers: Annotated[
        int,
        typer.Option("--workers", min=0, help="Polling threads (0: the API only, no polling)."),
    ] = 8,
    rate_limit: Annotated[
        int,
        typer.Option(
            "--rate-limit", min=0, help="API requests a minute per organization (0: none)."
        ),
    ] = 600,
    secret_key: SecretKeyOption = None,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose", "-v", help="Log instances' changes and cycles too, not only problems."
        ),
    ] = False,
) -> None:
    """Serve the instances API and poll every instance in the database (SIGTERM stops it)."""
    from sagesql.service.server import log_to_stderr, open_service
    from sagesql.service.server import serve as run

    log_to_stderr(verbose)
    service = open_service(
        _database_url(database), secret_key, workers=workers, rate_limit=rate_limit
    )
    run(service, host, port, listening=lambda url: typer.echo(f"sagesql serving on {url}"))


def worker(
    database: DatabaseOption = None,
    concurrency: Annotated[
        int, typer.Option("--concurrency", min=1, help="Claims polled and delivered at once.")
    ] = 4,
    lease: Annotated[
        float,
        typer.Option("--lease", min=1.0, help="Seconds a claim is held without a heartbeat."),
    ] = 30.0,
    secret_key: SecretKeyOption = None,
) -> None:
    """Poll and deliver instances of a PostgreSQL service database (SIGTERM stops it)."""
    from sagesql.service.server import run_worker

    run_worker(_database_url(database), secret_key, concurrency=concurrency, lease=lease)


@db_app.command("upgrade")
def db_upgrade(database: DatabaseOption = None) -> None:
    """Create the service schema or migrate it to this sagesql's version."""
    from sagesql.service.storage import ServiceDatabase

    db = ServiceDatabase(_database_url(database))
    try:
        typer.echo(f"{db.describe()}: schema version {db.schema_version()}")
    finally:
        db.close()


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.command("worker")(worker)
    app.add_typer(org_app, name="org")
    app.add_typer(db_app, name="db")
