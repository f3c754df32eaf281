"""Running a poller: its state lock, connection, cycles at an interval and the delivery thread.

The library side of ``sagesql poll`` (the CLI only parses options and prints):

- :func:`run` polls every ``interval`` (or once) while a thread delivers the outbox;
  SIGTERM or Ctrl-C stop it between steps, and a SIGKILL at any moment loses nothing
  (the state store's transactions see to that). Once, its exit code says what is
  left: 1 when a table failed, 3 when messages wait for a retry or were parked.
- :func:`explain` says what the next cycle of each table will send, from the state
  when there is one (the stored watermark, when the id set is compared next).
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
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from sagesql.activities.polling.config import COMPARE_EVERY_CYCLES, PollConfig
from sagesql.activities.polling.deliverer import Deliverer, DeliveryReport
from sagesql.activities.polling.events import Origin
from sagesql.activities.polling.instance import render
from sagesql.activities.polling.poller import (
    Poller,
    PollingClient,
    TableResult,
    cycles_to_compare,
    id_page_size,
)
from sagesql.activities.polling.sinks import Sink, build
from sagesql.activities.polling.sqlite_state import SQLiteStateStore
from sagesql.activities.polling.state import StateStore, TableState
from sagesql.activities.polling.tables import TableSpec, resolve
from sagesql.activities.polling.timeparse import describe, iso, parse_iso
from sagesql.activities.polling.window import Window
from sagesql.connector import files, products
from sagesql.connector.client import SageClient
from sagesql.connector.properties import Settings
from sagesql.errors import ConfigurationError
from sagesql.schemas.catalog import default_catalog, did_you_mean

log = logging.getLogger("sagesql.poll")

# run(once=True)'s exit codes besides 0: a table failed; messages are left undelivered.
TABLE_FAILED, UNDELIVERED = 1, 3


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
    held: Collection[str] = (),
) -> Session:
    """Everything checked and built (the tables before any request). ``store`` replaces
    the SQLite file at ``config.state`` (the service keeps every instance's state); the
    lanes of the ``held`` sinks are left for another run (see sinks.redirect)."""
    product = check_product(config, settings)
    if settings.offline:  # Offline reads a replica: polling it would report nothing real
        raise ConfigurationError(
            "poll reads Sage, but the connection is Offline=True",
            hint="drop Offline=True from the connection (or profile) poll uses",
        )
    connection = connection or SageClient(settings)
    try:
        specs = resolve(config, connection.catalog, product)
        store = store or SQLiteStateStore(config.state)
    except BaseException:
        connection.close()
        raise
    sinks = build(config.sinks, origin_of(config, product))
    poller = Poller(config, specs, connection, store, sinks=list(sinks))
    deliverer = Deliverer(store, config.instance_id, sinks, config.delivery, held=held)
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
    held: Collection[str] = (),
) -> int:
    """Poll until stopped (or once); the exit code: 0, or once TABLE_FAILED when a table
    failed, else UNDELIVERED when messages still wait or were parked in this run."""
    stop = stop or threading.Event()
    every = (interval or config.interval).total_seconds()
    code = 0
    with state_lock(config):
        session = open_session(config, settings, connection=connection, held=held)
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
                waiting = session.deliverer.waiting()
                log.debug(
                    "delivered %d message(s), %d parked; %d wait for a retry",
                    delivered.delivered,
                    delivered.parked,
                    waiting,
                )
                if waiting or delivered.parked:
                    log.warning(
                        "%d message(s) not delivered: %d wait for a retry, %d parked as "
                        "dead letters (see 'sagesql poll status')",
                        waiting + delivered.parked,
                        waiting,
                        delivered.parked,
                    )
                    code = UNDELIVERED
                if failed:
                    code = TABLE_FAILED
        except KeyboardInterrupt:
            stop.set()
        finally:
            stop.set()
            session.deliverer.wake.set()
            if thread is not None:
                thread.join(timeout=30)
            restore()
            session.close()
    return code


def _on_sigterm(stop: threading.Event) -> Callable[[], None]:
    """Stop at SIGTERM (main thread only); returns the undo."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    def undo() -> None:
        signal.signal(signal.SIGTERM, previous)

    return undo


# -- explain --------------------------------------------------------------------------------


def explain(config: PollConfig, product: str) -> str:
    """What each table's next cycle reads, and how: from the stored watermark when the
    state file has one (else as the first cycles will), the requests and what the API
    applies, and when the id set is compared next. Nothing is sent."""
    catalog = default_catalog()
    states = _stored_states(config)
    now = datetime.now(timezone.utc).replace(microsecond=0)
    out: list[str] = []
    for spec in resolve(config, catalog, product):
        state = states.get(spec.name)
        out.append(
            f"{spec.name}: table {spec.table.name}, {spec.mode}"
            f", lookback {describe(spec.lookback)}, delay {describe(spec.delay)}"
            f", deletions: {spec.deletes}"
        )
        window = Window(
            spec,
            min(spec.table.paging.max_page_size, spec.page_size or 10**9),
            catalog,
            id_chunk=id_page_size(spec, None),
        )
        if spec.updated is None:
            out.append("  every cycle reads every row (snapshot comparison)")
            continue
        watermark, lower, said = _next_window(config, spec, state, now)
        out.append(f"  {said}")
        if spec.placeholders:
            shown = ", ".join(
                f"{p} -> {render(p, watermark, spec.date_timezone)}" for p in spec.placeholders
            )
            out.append(f"  placeholders (at the watermark): {shown}")
        chunked, flagged = window.keyset
        if chunked:
            how = f"  read in keyset chunks of {window.chunk_size}"
            out.append(how + (" (the filter applied by SQLite)" if flagged else ""))
        else:
            out.append("  read as one query paged by the API")
        explained = window.explain(window.updated(iso(lower), iso(now - spec.delay), None))
        out.extend("  " + line for line in _requests_of(explained))
        if spec.deletes == "compare":
            out.extend("  " + line for line in _comparison(spec, state, window, now))
    return "\n".join(out)


def _stored_states(config: PollConfig) -> dict[str, TableState]:
    """The tables' stored states (none when the state file does not exist yet)."""
    if not config.state.exists():
        return {}
    store = SQLiteStateStore(config.state, write=False)
    try:
        return {row.state.name: row.state for row in store.status(config.instance_id, [])}
    finally:
        store.close()


def _next_window(
    config: PollConfig, spec: TableSpec, state: TableState | None, now: datetime
) -> tuple[datetime, datetime, str]:
    """The next window's watermark and lower bound, and where they come from."""
    if state is not None and state.watermark:
        watermark = parse_iso(state.watermark)
        lower = watermark - spec.lookback
        if state.baseline:
            lower = max(lower, parse_iso(state.baseline))
        return (
            watermark,
            lower,
            (
                f"from the stored watermark {state.watermark} ({config.state}): rows updated "
                f"from {iso(lower)} to the server's now - {describe(spec.delay)}"
            ),
        )
    if config.start is not None:
        said = f"no state yet: the first cycle reads from start = {iso(config.start)}"
        return config.start, config.start - spec.lookback, said
    watermark = now - config.interval
    return (
        watermark,
        watermark - spec.lookback,
        (
            "no state yet: the first cycle reads nothing and starts at the server's now; "
            f"a later window (one interval, {describe(config.interval)}) looks like this"
        ),
    )


def _requests_of(explained: str) -> list[str]:
    """The requests and what the API applies (the local SQL is sagesql query's business)."""
    return explained.split("\nlocal (SQLite):", 1)[0].splitlines()


def _comparison(
    spec: TableSpec, state: TableState | None, window: Window, now: datetime
) -> list[str]:
    """When the id set is compared next (the API reports no deletions), and its reads."""
    if spec.compare_every is not None:
        every = f"every {describe(spec.compare_every)}"
        due = (
            parse_iso(state.compared_at) + spec.compare_every
            if state and state.compared_at
            else now
        )
        when = "at the next cycle" if due <= now else f"at the first cycle from {iso(due)}"
    else:
        every = f"every {COMPARE_EVERY_CYCLES} cycles"
        coming = cycles_to_compare(state)
        when = "at the next cycle" if coming == 1 else f"at the {_ordinal(coming)} cycle from now"
    chunked, _ = window.scan_keyset(keys_only=True)
    size = f"pages of {window.id_chunk_size}" if chunked else "one query paged by the API"
    # Only an API that selects fields sends the keys alone (CRM sends whole records).
    what = "keys only" if spec.table.pushdown.projection else "whole records, keys kept"
    lines = [f"ids compared {every}: the next comparison runs {when} ({what}, {size})"]
    query = window.scan(None, keys_only=True)
    lines.extend("  " + line for line in _requests_of(window.explain(query)))
    return lines


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


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
    """Dead letters back into the outbox; sent now unless a running poller will send them.

    ``product`` (the connection's) names the product in webhook notifications when the
    configuration does not."""
    product = product or config.product
    unnamed = not (product or config.element_key)
    webhooks = any(s.kind == "webhook" for s in config.sinks)
    store = SQLiteStateStore(config.state)
    try:
        if unnamed and webhooks and store.dead_letters(config.instance_id, table):
            raise ConfigurationError(
                "replay cannot tell which product the webhook notifications name "
                "(their elementKey)",
                hint="pass -c/--profile as to 'sagesql poll', or set product = ... in "
                f"{config.source or 'the configuration'}",
            )
        count = store.replay(config.instance_id, table)
        if not count or not lock_is_free(config):
            return count, None
        with state_lock(config):
            origin = (
                origin_of(config, product)
                if product
                else Origin(config.instance_id, config.instance_name, config.element_key or "")
            )
            sinks = build(config.sinks, origin)
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
