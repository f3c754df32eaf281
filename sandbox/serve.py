"""Serving sandboxes in the foreground: start them, say how to connect, wait for a stop signal.

``sagesql sandbox serve`` is a thin layer over :func:`start_sandboxes` and :func:`serve`.
Without a product it serves all three, each on its own port (``port``, ``port + 1``,
``port + 2`` in the order Accounting, Sage 200, CRM when a port is given, else free
ones). With ``db`` the data is kept in SQLite: a directory holds ``<product>.sqlite``
per product (and is what serving all three needs); one product may also use a file. A
seed or row count left out is taken from an existing file (or the defaults for a new one).
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import Any

from sagesql.errors import ConfigurationError, NotSupportedError
from sagesql.sandbox.config import SandboxConfig
from sagesql.sandbox.products import SITES
from sagesql.sandbox.runner import Sandbox, resolve_product, stored_settings

PRODUCTS = tuple(SITES)  # sage_accounting, sage_200, sage_crm: the order of their ports
DEFAULT_SEED, DEFAULT_ROWS = SandboxConfig().seed, SandboxConfig().rows


def _db_path(db: Path, product: str, several: bool) -> Path:
    if db.is_dir():
        return db / f"{product}.sqlite"
    if not several:
        return db
    if db.exists() and not db.is_dir():
        raise ConfigurationError(
            f"--db {db} is a file, and serving every product needs a directory",
            hint="name a directory, or serve one product with --product",
        )
    return db / f"{product}.sqlite"


def start_sandboxes(
    products: Sequence[str] | None,
    base: SandboxConfig,
    *,
    seed: int | None = None,
    rows: int | None = None,
    db: Path | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    quiet: bool = True,
    warn: Callable[[str], None] | None = None,
) -> list[Sandbox]:
    """Started sandboxes for ``products`` (None: every product whose emulator is installed).

    Bad settings raise ConfigurationError before anything is left running. When every
    product is asked for, one without an emulator is skipped with a warning.
    """
    several = products is None
    wanted = list(PRODUCTS) if products is None else [resolve_product(p) for p in products]
    started: list[Sandbox] = []
    try:
        for product in wanted:
            config = replace(base, product=product)
            settings: dict[str, str] = {}
            if db is not None:
                config.db = _db_path(db, product, several)
                settings = stored_settings(config.db)
                if settings.get("product", product) != product:
                    raise ConfigurationError(
                        f"--db {config.db} holds {settings['product']} data, not {product}",
                        hint="name another --db file",
                    )
            config.seed = seed if seed is not None else int(settings.get("seed", DEFAULT_SEED))
            config.rows = rows if rows is not None else int(settings.get("rows", DEFAULT_ROWS))
            own_port = port + PRODUCTS.index(product) if port and several else port
            try:
                sandbox = Sandbox(product, config, host=host, port=own_port, quiet=quiet)
            except NotSupportedError as exc:
                if not several:
                    raise
                if warn is not None:
                    warn(f"warning: {exc.message}; serving the others")
                continue
            started.append(sandbox.start())
        if not started:
            raise NotSupportedError("no product emulator is installed in sagesql.sandbox")
    except BaseException:
        stop_sandboxes(started)
        raise
    return started


def stop_sandboxes(sandboxes: Sequence[Sandbox]) -> None:
    """Stop them all at once (each stop waits for its server loop to notice)."""
    threads = [threading.Thread(target=s.stop) for s in sandboxes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)


def describe(sandbox: Sandbox) -> list[str]:
    """What a person needs to reach one sandbox: URLs and a ready connection string."""
    config = sandbox.config
    where = f"data in {config.db}" if config.db else "data in memory"
    lines = [
        f"{sandbox.title} sandbox (seed {config.seed}, {config.rows} rows, {where})",
        f"  API            {sandbox.base_url}",
    ]
    if sandbox.uses_oauth:
        lines += [
            f"  authorize URL  {sandbox.authorization_url}",
            f"  token URL      {sandbox.token_url}",
            f"  client         {next(iter(config.clients))} (access tokens last "
            f"{config.access_token_lifetime} s)",
        ]
    lines.append(f"  connection     {sandbox.connection_string()}")
    return lines


def wait_for_stop(stop: threading.Event | None = None) -> None:
    """Block until SIGINT or SIGTERM (or ``stop`` is set); a signal here ends cleanly."""
    stop = stop or threading.Event()
    previous: dict[int, Any] = {}

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    in_main = threading.current_thread() is threading.main_thread()
    if in_main:
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, handler)
    try:
        # A timeout keeps the wait interruptible on every platform.
        while not stop.wait(0.2):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        for number, old in previous.items():
            signal.signal(number, old)


def serve(
    sandboxes: Sequence[Sandbox],
    *,
    echo: Callable[[str], None] = print,
    stop: threading.Event | None = None,
) -> None:
    """Print how to reach each sandbox, serve until stopped, then stop them all."""
    try:
        for sandbox in sandboxes:
            for line in describe(sandbox):
                echo(line)
            echo("")
        echo(
            "Admin endpoints: <server>/_sandbox/clock, faults, lag, requests. Press Ctrl-C to stop."
        )
        sys.stdout.flush()
        wait_for_stop(stop)
    finally:
        stop_sandboxes(sandboxes)
