"""Client-side rate limiting: a thread-safe token bucket of RateLimit requests per minute.

Sage counts requests per business over a sliding minute and answers 429 past its
limit (about 200). Waiting here before each request keeps a large query under the
limit instead of bouncing off it. The bucket holds ``burst`` tokens and refills at
``(per_minute - burst) / 60`` per second, so no sliding minute ever sees more than
``per_minute`` requests, bursts included. Waiting callers reserve their slot before
sleeping (the bucket goes negative), so threads are served in turn.

>>> t = [0.0]
>>> def sleep(s): t[0] += s
>>> bucket = TokenBucket(60, burst=1, monotonic=lambda: t[0], sleep=sleep)
>>> [bucket.acquire() for _ in range(3)]  # one at once, then one a second (59/60 s apart)
[0.0, 1.0169491525423728, 1.0169491525423728]
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

WINDOW = 60.0


def default_burst(per_minute: int) -> int:
    """A small burst: a twentieth of the limit, between 1 and 10."""
    return max(1, min(10, per_minute // 20))


class TokenBucket:
    """``acquire()`` before each request; ``per_minute=0`` turns the bucket off."""

    def __init__(
        self,
        per_minute: int,
        *,
        burst: int | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.per_minute = max(0, per_minute)
        self.burst = max(1, burst if burst is not None else default_burst(self.per_minute))
        if self.per_minute:
            self.burst = min(self.burst, self.per_minute)
        # Refill slower by the burst, so that burst plus a minute of refill stays within the limit.
        self.rate = max(self.per_minute - self.burst, 1) / WINDOW if self.per_minute else 0.0
        self._monotonic = monotonic
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens = float(self.burst)
        self._stamp = monotonic()
        self._not_before = 0.0  # a pause asked for by the server (Retry-After)

    @property
    def enabled(self) -> bool:
        return self.per_minute > 0

    def _reserve(self) -> float:
        """Take a token (maybe one not yet refilled); the seconds to wait before using it."""
        with self._lock:
            now = self._monotonic()
            # Nothing goes out before a server-asked pause ends; the bucket's time starts there.
            start = max(now, self._not_before)
            if not self.enabled:
                return start - now
            if start > self._stamp:
                self._tokens = min(
                    float(self.burst), self._tokens + (start - self._stamp) * self.rate
                )
                self._stamp = start
            self._tokens -= 1.0
            deficit = 0.0 if self._tokens >= 0 else -self._tokens / self.rate
            return (self._stamp - now) + deficit

    def acquire(self) -> float:
        """Block until a request may be sent; returns the seconds waited."""
        wait = self._reserve()
        if wait > 0:
            self._sleep(wait)
        return wait

    def pause(self, seconds: float) -> None:
        """Hold every caller for ``seconds`` (the server said Retry-After)."""
        if seconds <= 0:
            return
        with self._lock:
            self._not_before = max(self._not_before, self._monotonic() + seconds)
