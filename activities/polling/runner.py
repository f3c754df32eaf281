"""Running a poller: its state lock, connection, cycles at an interval and the delivery thread.

The library side of ``sagesql poll`` (the CLI only parses options and prints):

- :func:`run` polls every ``interval`` (or once) while a thread delivers the outbox;
  SIGTERM or Ctrl-C stop it between steps, and a SIGKILL at any moment loses nothing
  (the state store's transactions see to that).
- :func:`status`, :func:`replay` and :func:`reset` read or change the state store;
  replay and reset also work while no poller runs.

One poller per state file: a lock file beside it (``<state>.lock``, an OS lock that
dies with its process) refuses a second one.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from sagesql.activities.polling.config import PollConfig
from sagesql.activities.polling.deliverer import Deliverer, DeliveryReport
from sagesql.activities.polling.events import Origin
from sagesql.activities.polling.poller import Poller, PollingClient, TableResult
from sagesql.activities.polling.sinks import Sink, build
from sagesql.activities.polling.sqlite_state import SQLiteStateStore
from sagesql.activities.polling.state import StateStore
from sagesql.activities.polling.tables import TableSpec, resolve
from sagesql.activities.polling.timeparse import describe, iso, parse_iso
from sagesql.connector import files, products
from sagesql.connector.client import SageClient
from sagesql.connector.properties import Settings
from sagesql.errors import ConfigurationError
from sagesql.schemas.catalog import default_catalog, did_you_mean

log = logging.getLogger("sagesql.poll")


@contextlib.contextmanager
def state_lock(config: PollConfig) -> Iterator[None]:
    """Hold the state file's lock, or say at once that another poller holds it."""

    def busy(held_by: str) -> ConfigurationError:
        return ConfigurationError(
            f"another 'sagesql poll' is running with the state {config.state} ({held_by})",
            hint="stop it first, or give this one its own state file",
        )

    with files.held(lock_path(config), timeout=0, busy=busy, what="poll state's lock file"):
        yield


def lock_path(config: PollConfig) -> str:
    return str(config.state) + ".lock"


def lock_is_free(config: PollConfig) -> bool:
    return files.is_free(lock_path(config))


def origin_of(config: PollConfig, product: str) -> Origin:
    return Origin(
        config.instance_id,
        config.instance_name,
        config.element_key or products.get(product).element_key,
    )


def check_product(config: PollConfig, settings: Settings) -> str:
    product = str(settings.product_id)
    if config.product:
        wanted = default_catalog().resolve_product(config.product)
        if wanted != product:
            name = default_catalog().product(wanted).connection_name
            raise ConfigurationError(
                f"{config.source or 'the configuration'} polls {name}, but the connection is "
                f"to {settings.product}",
                hint=f"connect with Product={name}",
            )
    return product


@dataclass
class Session:
    """A poller ready to run: connection, tables, store, sinks, poller and deliverer."""

    config: PollConfig
    connection: PollingClient
    store: StateStore
    specs: list[TableSpec]
    sinks: dict[str, Sink]
    poller: Poller
    deliverer: Deliverer

    def close(self) -> None:
        self.deliverer.close()
        self.store.close()
        self.connection.close()


def open_session(
    config: PollConfig,
    settings: Settings,
    *,
    connection: PollingClient | None = None,
    store: StateStore | None = None,
) -> Session:
    """Everything checked and built (the tables before any request). ``store`` replaces
    the SQLite file at ``config.state`` (the service keeps every instance's state)."""
    product = check_product(config, settings)
    connection = connection or SageClient(settings)
    try:
        specs = resolve(config, connection.catalog, product)
        store = store or SQLiteStateStore(config.state)
    except BaseException:
        connection.close()
        raise
    sinks = build(config.sinks, origin_of(config, product))
    poller = Poller(config, specs, connection, store, sinks=list(sinks))
    deliverer = Deliverer(store, config.instance_id, sinks, config.delivery)
    return Session(config, connection, store, specs, sinks, poller, deliverer)


def run(
    config: PollConfig,
    settings: Settings,
    *,
    once: bool = False,
    interval: timedelta | None = None,
    stop: threading.Event | None = None,
    report: Callable[[list[TableResult]], None] | None = None,
    connection: PollingClient | None = None,
) -> int:
    """Poll until stopped (or once); the exit code: 0, or 1 when a table failed (--once)."""
    stop = stop or threading.Event()
    every = (interval or config.interval).total_seconds()
    with state_lock(config):
        session = open_session(config, settings, connection=connection)
        restore = _on_sigterm(stop)
        thread: threading.Thread | None = None
        failed = False
        try:
            if not once:
                thread = threading.Thread(
                    target=session.deliverer.run, args=(stop,), name="sagesql-deliver", daemon=True
                )
                thread.start()
            while not stop.is_set():
                began = time.monotonic()
                results = session.poller.cycle()
                failed = any(r.error for r in results)
                if report is not None:
                    report(results)
                session.deliverer.wake.set()
                if once:
                    break
                stop.wait(max(0.0, every - (time.monotonic() - began)))
            if once:
                delivered = session.deliverer.drain()
                waiting = sum(s.pending for s in session.store.status(config.instance_id, []))
                log.info(
                    "delivered %d message(s), %d parked; %d wait for a retry",
                    delivered.delivered,
                    delivered.parked,
                    waiting,
                )
        except KeyboardInterrupt:
            stop.set()
        finally:
            stop.set()
            session.deliverer.wake.set()
            if thread is not None:
                thread.join(timeout=30)
            restore()
            session.close()
    return 1 if failed and once else 0


def _on_sigterm(stop: threading.Event) -> Callable[[], None]:
    """Stop at SIGTERM (main thread only); returns the undo."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    def undo() -> None:
        signal.signal(signal.SIGTERM, previous)

    return undo


# -- status, replay, reset --------------------------------------------------------------------


def status(config: PollConfig, store: StateStore | None = None) -> list[dict[str, Any]]:
    """Per table: watermark, last cycle, lag, outbox depth, dead letters (from ``store``
    when given, else from the state file, read only)."""
    reader = store or SQLiteStateStore(config.state, write=False)
    try:
        rows = reader.status(config.instance_id, [t.name for t in config.tables])
    finally:
        if store is None:
            reader.close()
    now = time.time()
    out = []
    for row in rows:
        s = row.state
        lag = None
        if s.watermark and s.last_server_now:
            lag = parse_iso(s.last_server_now) - parse_iso(s.watermark)
        out.append(
            {
                "table": s.name,
                "watermark": s.watermark,
                "deleted_watermark": s.deleted_watermark,
                "last_cycle": s.last_cycle,
                "last_result": f"failed: {s.last_error}" if s.last_error else s.last_result,
                "lag": describe(lag) if lag is not None else None,
                "lag_seconds": lag.total_seconds() if lag is not None else None,
                "outbox": row.pending,
                "oldest_pending": describe(timedelta(seconds=now - row.oldest_pending))
                if row.oldest_pending
                else None,
                "dead_letters": row.dead,
                "delivered": row.delivered,
                "delivery_error": row.last_delivery_error,
                "events": s.events,
                "cycles": s.cycles,
            }
        )
    return out


def replay(
    config: PollConfig, *, table: str | None = None, product: str | None = None
) -> tuple[int, DeliveryReport | None]:
    """Dead letters back into the outbox; sent now unless a running poller will send them."""
    store = SQLiteStateStore(config.state)
    try:
        count = store.replay(config.instance_id, table)
        if not count or not lock_is_free(config):
            return count, None
        with state_lock(config):
            sinks = build(config.sinks, origin_of(config, product or config.product or ""))
            deliverer = Deliverer(store, config.instance_id, sinks, config.delivery)
            try:
                return count, deliverer.drain()
            finally:
                deliverer.close()
    finally:
        store.close()


def reset(config: PollConfig, *, table: str, since: datetime | None) -> None:
    """Rewind one table (the poller must be stopped)."""
    names = {t.name.lower(): t.name for t in config.tables}
    if table.lower() not in names:
        raise ConfigurationError(
            f"{table!r} is not a polled table of {config.source or 'the configuration'}",
            hint=did_you_mean(table, names.values()) or f"polled: {', '.join(names.values())}",
        )
    with state_lock(config):
        store = SQLiteStateStore(config.state)
        try:
            when = iso(since.astimezone(timezone.utc)) if since is not None else None
            store.reset(config.instance_id, names[table.lower()], when)
        finally:
            store.close()
