"""The deliverer: the outbox sent in order per table, with bounded retries, then dead letters.

Deliveries are grouped in lanes, one per (table, sink). A lane sends its messages in
the order they entered the outbox, one at a time: a message waiting for a retry holds
back the lane's later ones, so a receiver sees each table's changes in order. Lanes
are independent of each other.

A failed attempt is retried after an exponential backoff with jitter: the n-th wait is
``backoff * 2**(n-1)``, capped at ``backoff_cap``, times a random factor between 0.5
and 1 (``Retry-After`` is honoured as a minimum). A message is given up after
``max_attempts`` attempts, or once its lane has been failing for ``give_up_after``,
whichever comes first, or at once when the receiver's answer says a retry cannot
help (a 4xx): it is then parked as a dead letter, kept in the outbox until ``sagesql
poll replay``. While a lane keeps failing past ``give_up_after``, each further message
is parked after one attempt, so a long outage parks the backlog in order instead of
delivering it out of order; the first success closes the outage.

Lanes of ``held`` sinks (configured, but replaced for one run by ``--sink`` or
``--callback-url``) are left as they are, for a later run to deliver.

Time is a parameter (``clock``), and nothing here sleeps: :meth:`Deliverer.deliver_due`
sends what is due now, :meth:`Deliverer.run` waits for the next due time or a wake-up.
Tests move the clock instead of waiting minutes.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

from sagesql.activities.polling.config import DeliveryConfig
from sagesql.activities.polling.sinks import DeliveryFailed, Sink
from sagesql.activities.polling.state import Delivery, Lane, StateStore

log = logging.getLogger("sagesql.poll")

BATCH = 200  # deliveries read from a lane at a time


@dataclass
class DeliveryReport:
    delivered: int = 0
    retried: int = 0
    parked: int = 0

    def __iadd__(self, other: DeliveryReport) -> DeliveryReport:
        self.delivered += other.delivered
        self.retried += other.retried
        self.parked += other.parked
        return self


class Deliverer:
    """Sends one instance's outbox through its sinks."""

    def __init__(
        self,
        store: StateStore,
        instance: str,
        sinks: Mapping[str, Sink],
        policy: DeliveryConfig,
        *,
        clock: Callable[[], float] = time.time,
        jitter: Callable[[], float] = random.random,
        held: Collection[str] = (),
    ) -> None:
        self.store = store
        self.instance = instance
        self.sinks = dict(sinks)
        self.policy = policy
        self.clock = clock
        self.jitter = jitter
        self.held = frozenset(held)
        self.wake = threading.Event()

    def wait_for(self, attempts: int) -> float:
        """Seconds before attempt ``attempts + 1`` (jittered)."""
        base = self.policy.backoff.total_seconds() * 2 ** max(0, attempts - 1)
        nominal = min(self.policy.backoff_cap.total_seconds(), base)
        return nominal * (0.5 + 0.5 * self.jitter())

    def deliver_due(self) -> DeliveryReport:
        """Send every message that is due now, lane by lane, until none is."""
        report = DeliveryReport()
        for lane in self.store.lanes(self.instance):
            if lane.sink not in self.held:
                report += self._lane(lane)
        return report

    def _lane(self, lane: Lane) -> DeliveryReport:
        report = DeliveryReport()
        failing_since = lane.failing_since
        while True:
            batch = self.store.pending(self.instance, lane.table, lane.sink, BATCH)
            if not batch:
                return report
            for delivery in batch:
                now = self.clock()
                if delivery.next_at > now:
                    return report
                outcome = self._attempt(delivery, failing_since, now)
                if outcome == "delivered":
                    report.delivered += 1
                    failing_since = None
                    continue
                if outcome == "parked":
                    report.parked += 1
                    failing_since = failing_since or now
                    continue
                report.retried += 1
                return report

    def _attempt(self, delivery: Delivery, failing_since: float | None, now: float) -> str:
        sink = self.sinks.get(delivery.sink)
        attempts = delivery.attempts + 1
        if sink is None:
            self.store.park(
                delivery,
                attempts=delivery.attempts,
                error=f"sink {delivery.sink!r} is no longer configured",
                now=now,
            )
            return "parked"
        try:
            sink.send(delivery.message_id, delivery.table, delivery.events)
        except DeliveryFailed as failure:
            since = failing_since if failing_since is not None else now
            # Whichever bound comes first: max_attempts is the most a message gets. In a
            # lane failing past give_up_after, a message is parked after one attempt:
            # the head before it was parked in this outage (order is kept).
            spent = now - since >= self.policy.give_up_after.total_seconds()
            if failure.permanent or spent or attempts >= self.policy.max_attempts:
                why = "" if failure.permanent else f" (failing for {now - since:.0f} s)"
                self.store.park(delivery, attempts=attempts, error=failure.reason + why, now=now)
                log.warning(
                    "%s -> %s: message %s parked as a dead letter after %d attempt(s): %s",
                    delivery.table,
                    delivery.sink,
                    delivery.message_id,
                    attempts,
                    failure.reason,
                )
                return "parked"
            wait = max(self.wait_for(attempts), failure.retry_after or 0.0)
            self.store.retry(
                delivery, attempts=attempts, next_at=now + wait, error=failure.reason, now=now
            )
            log.debug(
                "%s -> %s: attempt %d of %d failed: %s; next in %.1f s",
                delivery.table,
                delivery.sink,
                attempts,
                self.policy.max_attempts,
                failure.reason,
                wait,
            )
            return "retry"
        self.store.delivered(delivery, self.clock())
        return "delivered"

    def next_due(self) -> float | None:
        return self.store.next_due(self.instance, skip=self.held)

    def waiting(self) -> int:
        """Messages still pending to this deliverer's sinks (a retry, or not yet sent)."""
        return self.store.waiting(self.instance, list(self.sinks))

    def drain(self, *, within: float = 0.0) -> DeliveryReport:
        """Deliver what is due, waiting up to ``within`` seconds for retries to come due."""
        report = self.deliver_due()
        deadline = time.monotonic() + within
        while True:
            due = self.next_due()
            if due is None:
                return report
            wait = due - self.clock()
            if time.monotonic() + max(0.0, wait) > deadline:
                return report
            if wait > 0:
                time.sleep(wait)
            report += self.deliver_due()

    def run(self, stop: threading.Event, *, idle: float = 5.0) -> None:
        """Deliver until ``stop`` is set: as messages come due, or when woken."""
        while not stop.is_set():
            try:
                self.deliver_due()
            except Exception:  # keep delivering: a bad moment must not stop the thread
                log.exception("delivery failed unexpectedly; trying again shortly")
                stop.wait(1.0)
            due = self.next_due()
            timeout = idle if due is None else min(idle, max(0.01, due - self.clock()))
            self.wake.wait(timeout)
            self.wake.clear()

    def close(self) -> None:
        for sink in self.sinks.values():
            sink.close()
