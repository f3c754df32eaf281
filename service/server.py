"""Starting the service: database, key check, scheduler, the ASGI app under uvicorn; a clean stop.

:func:`open_service` builds everything from the options of ``sagesql serve``;
:func:`serve` runs it in the foreground until SIGTERM or Ctrl-C (uvicorn finishes the
requests in flight, then the scheduler ends its running cycles at a commit and closes
every session). :class:`RunningService` runs it on a thread (tests, benchmarks).
"""

from __future__ import annotations

import logging
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import uvicorn
from starlette.applications import Starlette

from sagesql.connector.logs import HTTP_LOGGER, LOGGER, RedactingFilter, quiet_token_loggers
from sagesql.errors import ConfigurationError
from sagesql.service.http import MAX_BODY, build_app
from sagesql.service.operations import Operations
from sagesql.service.polling import Scheduler
from sagesql.service.ratelimit import RateLimiter
from sagesql.service.refresher import RefreshRelay
from sagesql.service.secrets import KEY_CHECK, SecretBox
from sagesql.service.storage import ServiceDatabase
from sagesql.service.worker import Worker

log = logging.getLogger("sagesql.service")

DEFAULT_RATE_LIMIT = 600  # API requests a minute per organization


@dataclass
class Service:
    database: ServiceDatabase
    box: SecretBox
    scheduler: Scheduler | None
    operations: Operations
    app: Starlette
    worker: Worker | None = None  # PostgreSQL: this process's worker (--workers N)

    def close(self) -> None:
        if self.scheduler is not None:
            self.scheduler.stop()
        if self.worker is not None:
            self.worker.stop()
        self.operations.close()
        self.database.close()


def open_service(
    database_url: str,
    secret_key: str | None,
    *,
    workers: int = 8,
    rate_limit: int = DEFAULT_RATE_LIMIT,
    max_body: int = MAX_BODY,
    refresh: float = 1.0,
) -> Service:
    database, box = open_database(database_url, secret_key)
    # SQLite: this process polls every instance (the scheduler). PostgreSQL: a worker
    # claims its share of the schedule, beside any number of `sagesql worker`s.
    worker = (
        Worker(
            database,
            box,
            concurrency=workers,
            relay=RefreshRelay(database_url, secret_key) if secret_key else None,
        )
        if workers and database.postgresql
        else None
    )
    scheduler = (
        Scheduler(database, box, workers=workers, refresh=refresh)
        if workers and not database.postgresql
        else None
    )
    operations = Operations(database, box, scheduler)
    app = build_app(operations, RateLimiter(rate_limit), max_body=max_body)
    if scheduler is not None:
        scheduler.start()
    if worker is not None:
        worker.start()
    return Service(database, box, scheduler, operations, app, worker)


def open_database(database_url: str, secret_key: str | None) -> tuple[ServiceDatabase, SecretBox]:
    """The service database (schema upgraded), with the operator's key checked against it."""
    box = SecretBox(secret_key)
    database = ServiceDatabase(database_url)
    check = database.meta_value(KEY_CHECK)
    if check is None:
        database.set_meta_value(KEY_CHECK, box.check_value())
    elif not box.matches(check):
        database.close()
        raise ConfigurationError(
            f"SAGESQL_SECRET_KEY is not the key {database.describe()} was created with",
            hint="start the service with that key",
        )
    return database, box


def run_worker(
    database_url: str,
    secret_key: str | None,
    *,
    concurrency: int = 4,
    lease: float = 30.0,
    stop: threading.Event | None = None,
) -> None:
    """``sagesql worker``: claim, poll and deliver until SIGTERM or Ctrl-C."""
    database, box = open_database(database_url, secret_key)
    stop = stop or threading.Event()
    previous = {
        sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        relay = RefreshRelay(database_url, secret_key) if secret_key else None
        worker = Worker(database, box, concurrency=concurrency, lease=lease, relay=relay)
        worker.run(stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        database.close()


class _Server(uvicorn.Server):
    """uvicorn's server, but a SIGTERM or Ctrl-C only makes it return.

    uvicorn raises the signal again once it has stopped, which would end the process
    before the scheduler drains; here :func:`serve` closes the service and returns, and
    ``sagesql serve`` exits 0.
    """

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        handled = (signal.SIGINT, signal.SIGTERM)
        original = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)


def log_to_stderr(verbose: bool = False) -> None:
    """The service's log on stderr: warnings (an instance that cannot be polled, a
    delivery that failed...), and with ``verbose`` instances created, changed and
    deleted and each cycle's summary. Every line goes through the redaction of
    connector/logs.py (instance secrets are registered with it as bodies are read)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger(LOGGER)
    root.addHandler(handler)
    root.setLevel(logging.INFO if verbose else logging.WARNING)
    logging.getLogger(HTTP_LOGGER).setLevel(logging.WARNING)  # no line per request
    quiet_token_loggers()


def serve(
    service: Service, host: str, port: int, *, listening: Callable[[str], None] | None = None
) -> None:
    """Serve until SIGTERM or Ctrl-C, then stop everything cleanly (and return)."""
    sock = _bind(host, port)
    url = f"http://{_host(host)}:{sock.getsockname()[1]}"
    config = uvicorn.Config(service.app, log_level="warning", access_log=False)
    server = _Server(config)
    if listening is not None:
        listening(url)
    try:
        server.run(sockets=[sock])
    finally:
        service.close()


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigurationError(
            f"cannot listen on {host}:{port}: {exc.strerror}", hint="choose another --port"
        ) from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class RunningService:
    """The service on a thread, on a free loopback port."""

    def __init__(self, service: Service, host: str = "127.0.0.1", port: int = 0) -> None:
        self.service = service
        self.sock = _bind(host, port)
        self.url = f"http://{_host(host)}:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(service.app, log_level="warning", access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    def start(self) -> RunningService:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()
        self.service.close()
