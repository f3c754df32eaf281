"""Fault injection: added latency, server errors, throttling, dropped connections, cut bodies."""

from __future__ import annotations

import contextlib
import random
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

from sagesql.sandbox.config import Faults

# What happens to one request.
PASS, ERROR, THROTTLE, DROP, TRUNCATE = "pass", "error", "throttle", "drop", "truncate"


class FaultInjector:
    """Draws, per request, whether and how to misbehave (seeded, so runs repeat)."""

    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self._rng = random.Random(faults.seed)
        self._lock = threading.Lock()

    def reconfigure(self, faults: Faults) -> None:
        with self._lock:
            self.faults = faults
            self._rng = random.Random(faults.seed)

    def draw(self) -> tuple[str, int]:
        """(what to do, status for ERROR) for the next request; sleeps the latency first."""
        with self._lock:
            f = self.faults
            roll = self._rng.random()
            status = self._rng.choice(f.error_statuses) if f.error_statuses else 500
        if f.latency_ms:
            time.sleep(f.latency_ms / 1000.0)
        for kind, share in (
            (ERROR, f.errors),
            (THROTTLE, f.throttle),
            (DROP, f.drop),
            (TRUNCATE, f.truncate),
        ):
            if roll < share:
                return kind, status
            roll -= share
        return PASS, 0


def drop_connection(environ: dict[str, Any]) -> None:
    """Close the client's connection without an answer (werkzeug's server exposes the socket)."""
    sock = environ.get("werkzeug.socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def truncated(body: Iterable[bytes], environ: dict[str, Any]) -> Iterator[bytes]:
    """Send half the body (the Content-Length still promises all of it), then hang up."""
    data = b"".join(body)
    yield data[: len(data) // 2]
    drop_connection(environ)
