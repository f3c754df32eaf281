"""The progress line a person sees on stderr while a statement reads from Sage.

``1,500 rows read · 3 pages · 2,310 rows/s · 30% · ETA 4s`` (the share and ETA when
the API gave a total), redrawn in place at most ten times a second, shown only after
half a second (a quick query shows nothing) and erased when done, so the rows that
follow stand alone. The command shows it only when stderr is a terminal: piped or
redirected, there is no line at all.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from typing import TextIO

DELAY = 0.5  # seconds before the line first shows
INTERVAL = 0.1  # seconds between redraws


def _duration(seconds: float) -> str:
    seconds = int(seconds + 0.5)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class ProgressLine:
    """An engine.progress observer that draws one line on a terminal stream."""

    def __init__(
        self,
        stream: TextIO,
        *,
        delay: float = DELAY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.delay = delay
        self.clock = clock
        self.started = clock()
        self.pages = 0
        self.read = 0
        self.totals: dict[int, int] = {}  # list (observed paginator) -> its total
        self.unknown: set[int] = set()  # lists that gave no total
        self._drawn = False
        self._last = 0.0
        self._lock = threading.Lock()
        self.closed = False

    # -- engine.progress.Observer ---------------------------------------------------------

    def page(self, records: int, total: int | None, source: int = 0) -> None:
        with self._lock:
            self.pages += 1
            self.read += records
            if total is not None:
                self.totals[source] = max(total, self.totals.get(source, 0))
                self.unknown.discard(source)
            elif source not in self.totals:
                self.unknown.add(source)
            self._draw()

    def counted(self, total: int | None, source: int = 0) -> None:
        with self._lock:
            if total is not None:
                self.totals[source] = total
                self.unknown.discard(source)

    # -- drawing -----------------------------------------------------------------------

    def line(self) -> str:
        elapsed = max(self.clock() - self.started, 1e-9)
        parts = [
            f"{self.read:,} rows read",
            f"{self.pages:,} page{'s' if self.pages != 1 else ''}",
        ]
        rate = self.read / elapsed
        if elapsed >= self.delay and self.read:
            parts.append(f"{rate:,.0f} rows/s")
        total = sum(self.totals.values())
        if total and not self.unknown and self.read <= total:
            parts.append(f"{min(self.read * 100 // total, 99)}%")
            if rate > 0:
                parts.append(f"ETA {_duration((total - self.read) / rate)}")
        return " · ".join(parts)

    def _draw(self) -> None:
        if self.closed:
            return
        now = self.clock()
        if now - self.started < self.delay or now - self._last < INTERVAL:
            return
        self._last = now
        width = shutil.get_terminal_size().columns
        self.stream.write("\r" + self.line()[: max(width - 1, 1)] + "\x1b[K")
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        """Erase the line (if it was ever shown); nothing is drawn after this."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
            if self._drawn:
                self.stream.write("\r\x1b[K")
                self.stream.flush()
