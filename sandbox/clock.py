"""The sandbox clock: real time, moved by an offset or frozen, for expiry and polling tests."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone


def utc(dt: datetime) -> datetime:
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt.astimezone(timezone.utc)


class Clock:
    """Now, as the sandbox sees it: the real clock plus an offset, or a frozen instant."""

    def __init__(self, offset_seconds: float = 0.0, frozen: datetime | None = None) -> None:
        self._lock = threading.Lock()
        self._offset = timedelta(seconds=offset_seconds)
        self._frozen = utc(frozen) if frozen else None

    def now(self) -> datetime:
        with self._lock:
            if self._frozen is not None:
                return self._frozen
            return datetime.now(timezone.utc) + self._offset

    def timestamp(self) -> float:
        return self.now().timestamp()

    def advance(self, seconds: float) -> datetime:
        """Move time forward (or back, with a negative number)."""
        with self._lock:
            if self._frozen is not None:
                self._frozen += timedelta(seconds=seconds)
            else:
                self._offset += timedelta(seconds=seconds)
        return self.now()

    def set(self, instant: datetime | None = None, *, frozen: bool = False) -> datetime:
        """Jump to an instant, frozen there or running from it; None goes back to real time."""
        with self._lock:
            real = datetime.now(timezone.utc)
            if instant is None:
                self._frozen, self._offset = None, timedelta(0)
            elif frozen:
                self._frozen = utc(instant)
            else:
                self._frozen, self._offset = None, utc(instant) - real
        return self.now()

    def state(self) -> dict[str, object]:
        with self._lock:
            return {
                "now": self.now_unlocked().isoformat(),
                "frozen": self._frozen is not None,
                "offset_seconds": self._offset.total_seconds(),
            }

    def now_unlocked(self) -> datetime:
        if self._frozen is not None:
            return self._frozen
        return datetime.now(timezone.utc) + self._offset


def iso(dt: datetime, precision: str = "seconds") -> str:
    """UTC ISO-8601 with a Z: 2025-01-02T03:04:05Z (seconds) or ...05.678Z (milliseconds)."""
    dt = utc(dt)
    if precision == "milliseconds":
        return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def sortable(dt: datetime) -> str:
    """Fixed-width UTC text that sorts chronologically (the store's time columns)."""
    return utc(dt).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> datetime:
    """A date or date-time as Sage APIs write them (Z, offsets, or a bare date = midnight UTC)."""
    value = text.strip()
    if len(value) == 10:
        return datetime.fromisoformat(value).replace(tzinfo=timezone.utc)
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    return utc(datetime.fromisoformat(value))
