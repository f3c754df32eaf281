"""Polling every instance in the service database: one poll session each, cycles on a worker pool.

Each instance is the polling library's own :class:`~runner.Session` (the same poller,
deliverer and state store as ``sagesql poll``), opened with the instance's tokens in
the service database and its state in the service's state store. One scheduler
thread looks at the database every ``refresh`` seconds (new, changed and deleted
instances) and hands due work to a pool of ``workers`` threads:

- a cycle when the instance's interval has passed since its last one began;
- a delivery when its outbox has a message due (retries included) or it was woken
  (a replay).

An instance's work never runs twice at once. A changed instance (PATCH) is closed
after its running task and opened again with its new configuration: its watermarks
are in the state store, keyed by instance and resource, so nothing is lost. A deleted
instance is closed within one refresh and its poll state dropped; its tokens left
the database with it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from sagesql.activities.polling.runner import Session, open_session
from sagesql.activities.polling.sinks import Sink
from sagesql.errors import Error
from sagesql.service.instances import Prepared, connect, prepare
from sagesql.service.secrets import SecretBox
from sagesql.service.storage import ServiceDatabase
from sagesql.service.tokens import DatabaseTokenStore

log = logging.getLogger("sagesql.service")

EVENT_FIELDS = ("eventId", "eventType", "objectType", "objectId")
RETRY_OPEN = 5.0  # seconds before an instance that failed to open is tried again


class RecordingSink(Sink):
    """A sink that also notes each message it delivered (for GET /instances/{id}/events)."""

    def __init__(self, inner: Sink, database: ServiceDatabase, instance_id: str) -> None:
        self.inner = inner
        self.name = inner.name
        self.database = database
        self.instance_id = instance_id

    def send(self, message_id: str, table: str, events: Sequence[Mapping[str, Any]]) -> None:
        self.inner.send(message_id, table, events)
        summary = [{k: e.get(k) for k in EVENT_FIELDS} for e in events]
        try:
            self.database.record_delivery(self.instance_id, message_id, table, self.name, summary)
        except Exception:  # the delivery happened; only its note is lost
            log.exception("instance %s: could not note a delivery", self.instance_id)

    def close(self) -> None:
        self.inner.close()


@dataclass
class Polled:
    """One instance as the scheduler runs it."""

    id: str
    version: float
    session: Session | None = None
    interval: float = 900.0
    next_cycle: float = 0.0  # monotonic time the next cycle is due
    next_delivery: float | None = None  # wall-clock time a delivery is due (None: none)
    busy: bool = False
    retired: bool = False
    error: str | None = None
    cycles: int = 0
    last_cycle_seconds: float | None = None
    lags: list[float] = field(default_factory=list)  # seconds a cycle started after it was due


class Scheduler:
    """Polls and delivers every instance of the database until stopped."""

    def __init__(
        self,
        database: ServiceDatabase,
        box: SecretBox,
        *,
        workers: int = 8,
        refresh: float = 1.0,
        tick: float = 0.1,
    ) -> None:
        self.database = database
        self.box = box
        self.workers = workers
        self.refresh = refresh
        self.tick = tick
        self.polled: dict[str, Polled] = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.woken = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sagesql-poll")
        self._thread: threading.Thread | None = None
        self._synced = 0.0

    # -- control ---------------------------------------------------------------------------

    def start(self) -> Scheduler:
        self._thread = threading.Thread(target=self._loop, name="sagesql-schedule", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the running tasks (a cycle ends at a commit), then close every session."""
        self.stopping.set()
        self.woken.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._pool.shutdown(wait=True, cancel_futures=True)
        with self.lock:
            for polled in self.polled.values():
                self._close(polled)
            self.polled.clear()

    def wake(self, instance_id: str | None = None) -> None:
        """Deliver now (after a replay), and look at the database at once (after a change)."""
        with self.lock:
            polled = self.polled.get(instance_id or "")
            if polled is not None:
                polled.next_delivery = 0.0
        self._synced = 0.0
        self.woken.set()

    def running(self, instance_id: str) -> Polled | None:
        with self.lock:
            return self.polled.get(instance_id)

    # -- the loop --------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self.stopping.is_set():
            try:
                if time.monotonic() - self._synced >= self.refresh:
                    self._sync()
                    self._synced = time.monotonic()
                self._dispatch()
            except Exception:  # keep scheduling: one bad moment must not stop every instance
                log.exception("the scheduler failed unexpectedly; going on")
            self.woken.wait(self.tick)
            self.woken.clear()

    def _sync(self) -> None:
        versions = self.database.versions()
        with self.lock:
            for instance_id, polled in list(self.polled.items()):
                if versions.get(instance_id) != polled.version:
                    polled.retired = True
                    if not polled.busy:
                        self._close(polled)
                        del self.polled[instance_id]
            for instance_id, version in versions.items():
                if instance_id not in self.polled:
                    self.polled[instance_id] = Polled(instance_id, version)

    def _dispatch(self) -> None:
        now_mono, now = time.monotonic(), time.time()
        with self.lock:
            for polled in self.polled.values():
                if polled.busy or polled.retired:
                    continue
                if polled.session is None and polled.next_cycle > now_mono:
                    continue  # failed to open: tried again later
                cycle = polled.session is None or now_mono >= polled.next_cycle
                deliver = polled.next_delivery is not None and polled.next_delivery <= now
                if cycle or deliver:
                    polled.busy = True
                    self._pool.submit(self._task, polled, cycle)

    def _task(self, polled: Polled, cycle: bool) -> None:
        try:
            if polled.session is None:
                polled.session = self._open(polled.id)
                polled.interval = polled.session.config.interval.total_seconds()
                polled.error = None
            if cycle:
                began = time.monotonic()
                if polled.next_cycle:
                    polled.lags.append(max(0.0, began - polled.next_cycle))
                    del polled.lags[:-100]
                polled.next_cycle = began + polled.interval
                polled.session.poller.cycle()
                polled.cycles += 1
                polled.last_cycle_seconds = time.monotonic() - began
            polled.session.deliverer.deliver_due()
            polled.next_delivery = polled.session.deliverer.next_due()
        except Exception as exc:
            polled.error = str(exc) if isinstance(exc, Error) else f"{type(exc).__name__}: {exc}"
            if polled.session is None:
                polled.next_cycle = time.monotonic() + RETRY_OPEN
                log.warning("instance %s cannot be polled: %s", polled.id, polled.error)
            else:
                log.exception("instance %s: a cycle failed unexpectedly", polled.id)
        finally:
            with self.lock:
                polled.busy = False
                if polled.retired:
                    self._close(polled)
                    if self.polled.get(polled.id) is polled:
                        del self.polled[polled.id]
            self.woken.set()

    def _open(self, instance_id: str) -> Session:
        row = self.database.instance(None, instance_id)
        if row is None:
            raise Error(f"instance {instance_id} is gone")
        prepared: Prepared = prepare(
            self.box.open(row.body), instance_id, self.database.state_path(instance_id)
        )
        tokens = DatabaseTokenStore(self.database, self.box, instance_id)
        client = connect(prepared, tokens)
        session = open_session(
            prepared.config,
            prepared.settings,
            connection=client,
            store=self.database.state_store(instance_id),
        )
        for name, sink in list(session.deliverer.sinks.items()):
            session.deliverer.sinks[name] = RecordingSink(sink, self.database, instance_id)
        return session

    def _close(self, polled: Polled) -> None:
        if polled.session is not None:
            try:
                polled.session.close()
            except Exception:
                log.exception("instance %s: closing failed", polled.id)
            polled.session = None
