"""Waking idle workers on PostgreSQL: ``NOTIFY`` where the schedule changes, ``LISTEN`` in workers.

An idle worker sleeps until the earliest due time of the schedule (bounded: worker.py).
What makes a row due earlier than that happens in some other process: the API creates,
changes or deletes an instance (its rows must be synced first), a replay makes an
instance's rows due now, a worker syncs new rows. Each of those sends :func:`notify`
inside its own transaction, so PostgreSQL delivers it when (and only if) the change
commits, to every connection that listens on :data:`CHANNEL`.

A :class:`Listener` holds one such connection per worker (psycopg, autocommit) on a
thread of its own and calls back on each notification, and after every (re)connect:
whatever happened while it was not listening is then looked at too.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

log = logging.getLogger("sagesql.worker")

CHANNEL = "sagesql_schedule"
INSTANCES = "instances"  # payload: an instance changed, the schedule must be synced
DUE = "due"  # payload: rows are due now
RECONNECT = 5.0  # seconds between attempts to listen again
PATIENCE = 1.0  # seconds the listening thread waits before checking for a stop


def notify(conn: Connection, payload: str) -> None:
    """Wake the listening workers when this transaction commits (PostgreSQL only)."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_notify(:c, :p)"), {"c": CHANNEL, "p": payload})


class Listener:
    """``LISTEN`` on :data:`CHANNEL` on a thread; ``wake(payload)`` for each notification
    (``INSTANCES`` after each connect, as changes may have been missed)."""

    def __init__(self, engine: Engine, wake: Callable[[str], None]) -> None:
        # Its own connection, not one of the pool: it listens for the process's life.
        self.conninfo = engine.url.set(drivername="postgresql").render_as_string(
            hide_password=False
        )
        self.wake = wake
        self.listening = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sagesql-listen", daemon=True)

    def start(self) -> Listener:
        self._thread.start()
        return self

    def close(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        import psycopg  # the service extra, as the engine's driver

        while not self._stop.is_set():
            try:
                with psycopg.connect(self.conninfo, autocommit=True, connect_timeout=10) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.listening.set()
                    self.wake(INSTANCES)
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=PATIENCE):
                            self.wake(note.payload)
            except Exception as exc:  # a restarted server: listen again, meanwhile poll
                log.warning("listening for schedule changes failed (%s); retrying", exc)
            finally:
                self.listening.clear()
            self._stop.wait(RECONNECT)
