"""Per-key request limit (per business, company or user), answered with 429 and Retry-After."""

from __future__ import annotations

import math
import threading
from collections import deque

from sagesql.sandbox.clock import Clock

WINDOW_SECONDS = 60.0


class RateLimiter:
    """At most ``per_minute`` requests per key in any sliding minute; 0 turns it off."""

    def __init__(self, per_minute: int, clock: Clock) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._lock = threading.Lock()
        self._hits: dict[str, deque[float]] = {}

    def hit(self, key: str) -> int | None:
        """Count a request; None if allowed, else the seconds to wait (Retry-After)."""
        if self.per_minute <= 0:
            return None
        now = self._clock.timestamp()
        with self._lock:
            hits = self._hits.setdefault(key, deque())
            while hits and hits[0] <= now - WINDOW_SECONDS:
                hits.popleft()
            if len(hits) >= self.per_minute:
                return max(1, math.ceil(hits[0] + WINDOW_SECONDS - now))
            hits.append(now)
            return None
