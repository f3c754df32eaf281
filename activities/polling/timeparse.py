"""Durations and instants as poller configuration writes them (15m, 30s, 2025-01-01T00:00:00Z).

A duration is one or more ``<number><unit>`` parts, units ``ms``, ``s``, ``m``, ``h`` and
``d`` (``1h30m``, ``0.5s``); a bare number is refused unless the caller names its unit
(the platforms' ``refresh_interval`` is in minutes). Instants are ISO 8601; without a
zone they are UTC. Stored instants are written back as UTC ISO text with microseconds
only when there are some, so that text order is time order within one precision.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

from sagesql.errors import ConfigurationError

_UNITS = {
    "ms": timedelta(milliseconds=1),
    "s": timedelta(seconds=1),
    "m": timedelta(minutes=1),
    "h": timedelta(hours=1),
    "d": timedelta(days=1),
}
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)", re.I)
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def duration(value: object, *, what: str, bare_unit: str | None = None) -> timedelta:
    """A duration from ``15m``, ``1h30m``, ``0.5s`` (or a bare number of ``bare_unit``)."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ConfigurationError(f"{what}: {value!r} is not a duration", hint="write 15m or 30s")
    if isinstance(value, int | float):
        if bare_unit is None:
            raise ConfigurationError(
                f"{what}: {value!r} has no unit", hint="write it with a unit: 30s, 15m, 1h"
            )
        return _UNITS[bare_unit] * float(value)
    text = str(value).strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        if bare_unit is not None:
            return _UNITS[bare_unit] * float(text)
        raise ConfigurationError(
            f"{what}: {value!r} has no unit", hint="write it with a unit: 30s, 15m, 1h"
        )
    total = timedelta(0)
    position = 0
    for match in _PART.finditer(text):
        if text[position : match.start()].strip():
            break
        total += _UNITS[match.group(2).lower()] * float(match.group(1))
        position = match.end()
    else:
        if position and not text[position:].strip():
            return total
    raise ConfigurationError(
        f"{what}: {value!r} is not a duration",
        hint="write a number and a unit (ms, s, m, h, d), such as 30s, 15m or 1h30m",
    )


def instant(value: object, *, what: str) -> datetime:
    """An aware UTC datetime from ISO 8601 text (a bare date is midnight UTC)."""
    if isinstance(value, datetime):
        return (
            value.astimezone(timezone.utc) if value.tzinfo else value.replace(tzinfo=timezone.utc)
        )
    text = str(value).strip()
    try:
        if text[-1:] in ("Z", "z"):
            text = text[:-1] + "+00:00"
        parsed = datetime.fromisoformat(text.replace(" ", "T", 1) if "T" not in text else text)
    except ValueError:
        raise ConfigurationError(
            f"{what}: {value!r} is not a date or date-time",
            hint="write ISO 8601, such as 2025-01-31T09:00:00Z",
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


def iso(value: datetime) -> str:
    """UTC ISO 8601 with a Z; microseconds only when there are some."""
    value = value.astimezone(timezone.utc)
    if value.microsecond:
        return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(text: str) -> datetime:
    """The inverse of :func:`iso` (any ISO 8601 text, as stored by the engine, too)."""
    return instant(text, what="time")


def describe(delta: timedelta) -> str:
    """A short human form: 90 s -> 1m30s, 0.5 s -> 500ms."""
    seconds = delta.total_seconds()
    if seconds < 1 and seconds != 0:
        return f"{round(seconds * 1000)}ms"
    whole = round(seconds)
    sign = "-" if whole < 0 else ""
    whole = abs(whole)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if whole >= size:
            parts.append(f"{whole // size}{unit}")
            whole %= size
    return sign + ("".join(parts) or "0s")
