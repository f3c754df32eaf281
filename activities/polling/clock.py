"""The server's "now": learnt from the ``Date`` header of every answer, never the local clock alone.

Windows are bounded by the server's time, because the rows' updated dates are
written by the server's clock: a poller whose own clock is ahead would freeze an
upper bound the server has not reached yet and skip what it writes meanwhile.

Each answer's ``Date`` (whole seconds, so never ahead of the server) gives the offset
between the server's clock and ours; between answers, now is our clock plus the
latest offset. The latest, not the largest: a server whose clock was set back must
move the estimate back too. Without any ``Date`` header, the newest timestamp seen
in the data stands in for the server's now.

:meth:`ServerClock.hook` is a requests response hook; the poller adds it to the
connection's session, so every request the engine makes keeps the clock current.
"""

from __future__ import annotations

import email.utils
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any


class ServerClock:
    """The server's time as last seen, carried forward by the local clock."""

    def __init__(self, local: Callable[[], float] = time.time) -> None:
        self._local = local
        self._lock = threading.Lock()
        self._offset: float | None = None  # server seconds minus local seconds
        self._seen = 0  # answers observed so far
        self._first_after: dict[int, datetime | None] = {}
        self._newest_data: datetime | None = None

    # -- observing ------------------------------------------------------------------------

    def observe(self, server: datetime, local: float | None = None) -> None:
        """An answer said the server's time was ``server`` when we read it at ``local``."""
        local = self._local() if local is None else local
        server = server.astimezone(timezone.utc)
        with self._lock:
            self._offset = server.timestamp() - local
            self._seen += 1
            for mark in [m for m in self._first_after if m < self._seen]:
                if self._first_after[mark] is None:
                    self._first_after[mark] = server

    def observe_data(self, newest: datetime) -> None:
        """The newest updated date seen in the rows (used only when no Date header came)."""
        with self._lock:
            if self._newest_data is None or newest > self._newest_data:
                self._newest_data = newest

    def hook(self, response: Any, *args: Any, **kwargs: Any) -> None:
        """A requests response hook: observe the answer's ``Date`` header."""
        header = response.headers.get("Date") if response is not None else None
        if not header:
            return
        try:
            server = email.utils.parsedate_to_datetime(header)
        except (TypeError, ValueError, IndexError):
            return
        if server.tzinfo is None:
            server = server.replace(tzinfo=timezone.utc)
        self.observe(server)

    # -- reading --------------------------------------------------------------------------

    @property
    def known(self) -> bool:
        with self._lock:
            return self._offset is not None or self._newest_data is not None

    def now(self) -> datetime | None:
        """The server's time now, or None when nothing was seen yet."""
        with self._lock:
            if self._offset is not None:
                return datetime.fromtimestamp(self._local() + self._offset, timezone.utc)
            return self._newest_data

    def mark(self) -> int:
        """A bookmark: :meth:`first_since` then gives the first server time seen after it."""
        with self._lock:
            if len(self._first_after) > 64:  # marks left by reads that failed
                for stale in sorted(self._first_after)[:-32]:
                    del self._first_after[stale]
            self._first_after[self._seen] = None
            return self._seen

    def first_since(self, mark: int) -> datetime | None:
        """The server time of the first answer observed after ``mark`` (and forget the mark)."""
        with self._lock:
            return self._first_after.pop(mark, None)

    def offset(self) -> timedelta | None:
        with self._lock:
            return None if self._offset is None else timedelta(seconds=self._offset)
