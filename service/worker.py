"""A worker: polls and delivers the (instance, resource) rows it claims from the schedule.

``sagesql worker --database postgresql://...`` runs one on any machine; any number
share the database (``serve --database postgresql://... --workers N`` runs one inside
the API process). A worker:

- brings the schedule in step with the instances (new, changed by a PATCH, deleted:
  schedule.py) when the API NOTIFYs a change (wakeups.py), and every ``refresh``
  seconds in case a notification was missed;
- claims due rows, at most ``concurrency`` at a time, under a lease of ``lease``
  seconds that a heartbeat renews while the work runs; with nothing due it sleeps
  until the next row is due or a held row's lease expires (at most ``idle`` seconds),
  or until a NOTIFY or the end of one of its claims wakes it;
- for each claim, polls that one resource with the polling library's own poller
  (at most ``chunks_per_claim`` keyset chunks: a backfill goes on at its cursor in
  the next claim, so one huge instance cannot starve the others), then delivers that
  resource's lanes in order, then hands the row back with its next due times.

Every write of the poll state checks the claim in its transaction (pg_state.py): a
worker paused past its lease cannot commit. A worker killed at any moment loses
nothing: its rows come back when their leases expire, the next claim polls from the
last commit and sends what was not marked delivered again, with the same eventIds.

An instance's session (connection, tokens in the database, a request budget shared
per Sage business: shared_limit.py) is opened once per worker and reopened after a
PATCH; its claims run one at a time in this worker.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from sagesql.activities.polling.runner import Session, open_session
from sagesql.activities.polling.tables import resolve
from sagesql.connector.auth import OAuthAuth
from sagesql.errors import Error
from sagesql.schemas.catalog import default_catalog
from sagesql.service.instances import connect, prepare
from sagesql.service.pg_state import Claim, LeaseLost, PostgresStateStore
from sagesql.service.polling import RecordingSink
from sagesql.service.refresher import RefreshRelay
from sagesql.service.schedule import Due, Schedule, each_stale
from sagesql.service.secrets import SecretBox
from sagesql.service.shared_limit import SharedBucket, bucket_key
from sagesql.service.storage import ServiceDatabase
from sagesql.service.tokens import DatabaseTokenStore
from sagesql.service.wakeups import INSTANCES, Listener

log = logging.getLogger("sagesql.worker")

LEASE = 30.0  # seconds a claim holds without a heartbeat
IDLE = 5.0  # longest sleep of an idle claim loop (a missed notification costs at most this)
SOON = 0.05  # shortest: rows due now but not taken were being claimed by another worker
RETRY_OPEN = 5.0  # seconds before an instance that failed to open is tried again
CHUNKS_PER_CLAIM = 10  # keyset chunks one claim reads of a window


@dataclass
class _Opened:
    version: float
    session: Session
    store: PostgresStateStore
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class WorkerStats:
    claims: int = 0
    polls: int = 0
    lost: int = 0
    failures: int = 0


class Worker:
    """Claims, polls and delivers until stopped."""

    def __init__(
        self,
        database: ServiceDatabase,
        box: SecretBox,
        *,
        concurrency: int = 4,
        lease: float = LEASE,
        refresh: float = IDLE,
        idle: float = IDLE,
        chunks_per_claim: int | None = CHUNKS_PER_CLAIM,
        relay: RefreshRelay | None = None,
    ) -> None:
        if not database.postgresql:
            raise Error(
                "sagesql worker needs the service on PostgreSQL",
                hint="give --database postgresql://USER@HOST/DATABASE (sqlite:/// is polled "
                "by sagesql serve itself)",
            )
        self.database = database
        self.box = box
        self.concurrency = max(1, concurrency)
        self.lease = lease
        self.refresh = refresh
        self.idle = idle
        self.chunks_per_claim = chunks_per_claim
        self.relay = relay
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.schedule = Schedule(database.engine)
        self.stats = WorkerStats()
        self.stopping = threading.Event()
        self.woken = threading.Event()
        self._lock = threading.Lock()
        self._active: dict[Claim, float] = {}
        self._opened: dict[str, _Opened] = {}
        self._opening: dict[str, threading.Lock] = {}
        self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="sagesql-work")
        self._threads: list[threading.Thread] = []
        self._synced = 0.0
        self._settled: dict[str, float] = {}  # instances left stale at this version
        # When the claim loop looks next (monotonic); a claim ending with its row due
        # before that wakes it (any ending does when every slot was busy: inf).
        self._wake_at = 0.0
        self._listener = Listener(database.engine, self._notified)

    # -- control ---------------------------------------------------------------------------

    def start(self) -> Worker:
        self._listener.start()
        for target, name in ((self._loop, "sagesql-claim"), (self._heartbeat, "sagesql-lease")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def run(self, stop: threading.Event) -> None:
        """In the foreground until ``stop`` is set (SIGTERM), then a clean stop."""
        self.start()
        stop.wait()
        self.stop()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the running claims (each ends at a commit), then close every session."""
        self.stopping.set()
        self.woken.set()
        for thread in self._threads:
            thread.join(timeout)
        self._listener.close()
        self._pool.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            opened, self._opened = dict(self._opened), {}
        for instance, entry in opened.items():
            self._close(instance, entry)
        if self.relay is not None:
            self.relay.close()

    def wake(self, instance_id: str | None = None) -> None:
        """Look at the database now (an instance was changed or replayed)."""
        if instance_id:
            self.schedule.wake(instance_id)
        self._synced = 0.0
        self.woken.set()

    def _notified(self, payload: str) -> None:
        """A NOTIFY from another process (wakeups.py): an instance changed, or rows due."""
        if payload == INSTANCES:
            self._synced = 0.0
        self.woken.set()

    # -- the loops -------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self.stopping.is_set():
            with self._lock:  # while looking, any claim that ends wakes it once more
                self._wake_at = math.inf
            self.woken.clear()  # before looking: a wake-up from now on is not lost
            wait = self.idle
            try:
                if time.monotonic() - self._synced >= self.refresh:
                    self._sync()
                    self._synced = time.monotonic()
                with self._lock:
                    free = self.concurrency - len(self._active)
                busy = free <= 0
                if not busy:
                    dues, due_in = self.schedule.claim_next(self.owner, free, self.lease)
                    for due in dues:
                        with self._lock:
                            self._active[due.claim] = time.monotonic()
                        self.stats.claims += 1
                        self._pool.submit(self._task, due)
                    busy = len(dues) == free  # more may be due: look again when one ends
                    if not busy and due_in is not None:
                        wait = min(wait, max(due_in, SOON))
                wait = max(0.0, min(wait, self._synced + self.refresh - time.monotonic()))
            except Exception:  # keep claiming: one bad moment (a restarted server) must not stop it
                log.exception("the worker's claim loop failed; going on")
                busy, wait = False, 1.0
            with self._lock:
                self._wake_at = math.inf if busy else time.monotonic() + wait
            self.woken.wait(wait)

    def _ended(self, due_in: float | None) -> None:
        """A claim ended; its row is due again in ``due_in`` seconds (None: not ours)."""
        with self._lock:
            wake_at = self._wake_at
        if wake_at == math.inf or (due_in is not None and time.monotonic() + due_in < wake_at):
            self.woken.set()

    def _heartbeat(self) -> None:
        while not self.stopping.wait(self.lease / 3):
            with self._lock:
                claims = list(self._active)
            try:
                held = self.schedule.renew(claims, self.lease)
            except Exception:
                log.exception("renewing leases failed; the next beat tries again")
                continue
            for lost in set(claims) - held:
                with self._lock:
                    still = lost in self._active
                if still:
                    log.warning(
                        "instance %s, %s: lease lost (expired); its writes will be refused",
                        lost.instance,
                        lost.resource,
                    )

    def _sync(self) -> None:
        def resources_of(instance_id: str) -> tuple[list[str], float] | None:
            row = self.database.instance(None, instance_id)
            if row is None:
                return None
            try:
                prepared = prepare(
                    self.box.open(row.body), instance_id, self.database.state_path(instance_id)
                )
                product = default_catalog().resolve_product(str(prepared.config.product))
                specs = resolve(prepared.config, default_catalog(), product)
            except Error as exc:
                log.warning("instance %s cannot be scheduled: %s", instance_id, exc)
                return None
            return [s.name for s in specs], prepared.config.interval.total_seconds()

        each_stale(self.schedule, resources_of, self._settled)

    # -- one claim -------------------------------------------------------------------------

    def _task(self, due: Due) -> None:
        claim = due.claim
        due_in: float | None = None
        try:
            due_in = self._work(due)
        except LeaseLost as exc:
            self.stats.lost += 1
            log.warning("%s", exc)
        except Exception as exc:
            self.stats.failures += 1
            error = str(exc) if isinstance(exc, Error) else f"{type(exc).__name__}: {exc}"
            log.warning("instance %s, %s: %s", claim.instance, claim.resource, error)
            try:
                due_in = self.schedule.release(
                    claim, poll_in=RETRY_OPEN, deliver_at=None, error=error
                )
            except Exception:
                log.exception("could not hand back instance %s, %s", claim.instance, claim.resource)
        finally:
            with self._lock:
                self._active.pop(claim, None)
            self._ended(due_in)

    def _work(self, due: Due) -> float | None:
        claim = due.claim
        opened = self._open(claim.instance, due.version)
        with opened.lock:
            session = opened.session
            error: str | None = None
            paused = False
            with opened.store.claimed(claim):
                if due.poll:
                    spec = next((s for s in session.specs if s.name == claim.resource), None)
                    if spec is None:
                        raise Error(f"{claim.resource} is not polled by this instance any more")
                    result = session.poller.poll(spec)
                    self.stats.polls += 1
                    error, paused = result.error, result.paused
                session.deliverer.deliver_due()
                deliver_at = session.deliverer.next_due()
        poll_in = (0.0 if paused else due.interval) if due.poll else None
        return self.schedule.release(
            claim, poll_in=poll_in, deliver_at=deliver_at, error=error, polled=due.poll
        )

    def _open(self, instance_id: str, version: float) -> _Opened:
        with self._lock:
            gate = self._opening.setdefault(instance_id, threading.Lock())
        with gate:
            with self._lock:
                opened = self._opened.get(instance_id)
            if opened is not None and opened.version == version:
                return opened
            if opened is not None:  # PATCHed: reopen with the new configuration
                with self._lock:
                    self._opened.pop(instance_id, None)
                with opened.lock:
                    self._close(instance_id, opened)
            opened = self._session(instance_id, version)
            with self._lock:
                self._opened[instance_id] = opened
            return opened

    def _session(self, instance_id: str, version: float) -> _Opened:
        row = self.database.instance(None, instance_id)
        if row is None:
            raise Error(f"instance {instance_id} is gone")
        prepared = prepare(
            self.box.open(row.body), instance_id, self.database.state_path(instance_id)
        )
        # A dead worker's grant in flight is waited for past its own deadline (Timeout).
        tokens = DatabaseTokenStore(
            self.database, self.box, instance_id, relay_wait=prepared.settings.timeout + 15.0
        )
        client = connect(prepared, tokens)
        if self.relay is not None and isinstance(client.auth, OAuthAuth):
            # Refresh grants through the relay: their answers outlive this process.
            client.auth = OAuthAuth(
                prepared.settings,
                tokens,
                token_url=client.auth.token_url,
                grant=self.relay.grant_for(
                    self.database,
                    instance_id,
                    client.auth.token_url,
                    wait=prepared.settings.timeout + 15.0,
                ),
            )
        client.limiter = SharedBucket(
            self.database.engine,
            bucket_key(prepared.settings, client.base_url),
            prepared.settings.rate_limit,
        )
        store = PostgresStateStore(self.database.engine)
        session = open_session(prepared.config, prepared.settings, connection=client, store=store)
        session.poller.chunk_budget = self.chunks_per_claim
        for name, sink in list(session.deliverer.sinks.items()):
            session.deliverer.sinks[name] = RecordingSink(sink, self.database, instance_id)
        return _Opened(version, session, store)

    @staticmethod
    def _close(instance_id: str, opened: _Opened) -> None:
        try:
            opened.session.close()
        except Exception:
            log.exception("instance %s: closing failed", instance_id)
