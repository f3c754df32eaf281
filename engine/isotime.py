"""ISO 8601 date-time text read as aware UTC datetimes: the one reader the engine uses.

Kept apart from values.py (which knows the products) so that the DB-API, which converts
result text to datetimes, imports it without loading the connector: ``import sagesql``
stays cheap.

>>> parse_datetime("2025-01-16 12:00:00.5").isoformat()
'2025-01-16T12:00:00.500000+00:00'
"""

from __future__ import annotations

import re
from datetime import datetime, timezone

_FRACTION = re.compile(r"(?<=:\d\d)\.(\d+)", re.ASCII)


def parse_datetime(text: str) -> datetime:
    """An ISO-8601 date or date-time as aware UTC (no zone: UTC; a bare date: midnight)."""
    value = text.strip()
    if not value:
        raise ValueError("empty")
    if value[-1] in "Zz":
        value = value[:-1] + "+00:00"
    if " " in value and "T" not in value:
        value = value.replace(" ", "T", 1)
    # A fraction of any length ('.5', .NET's seven digits) as the six digits Python 3.10
    # reads (3.11 reads any; digits past the microsecond are dropped, as 3.11 does).
    value = _FRACTION.sub(lambda m: "." + m.group(1)[:6].ljust(6, "0"), value, count=1)
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)
