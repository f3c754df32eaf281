"""The position of one replicated table, kept in the replica beside the rows it covers.

One row per replicated table in ``_sagesql_sync``; it is written in the same transaction
as the rows a page brought, so that after a crash the replica and its position always
agree: the next run starts after the last committed page (rows are upserted by key, so
a page read twice changes nothing).

``cursor`` is JSON while a read is under way::

    {"phase": "copy", "ck": <last key>, "began": ...}            keyset copy by key
    {"phase": "copy", "offset": 400, "began": ...}               paged copy (Accounting)
    {"phase": "window", "lower": ..., "cu": ..., "ck": ..., "began": ...}
    {"phase": "window", "lower": ..., "offset": 200, "began": ...}

``began`` is the server's time at the read's first answer: the watermark a finished
read moves to (minus the delay), never later, however long it ran or was interrupted.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import Any

STATE_TABLE = "_sagesql_sync"

# The state table's columns and their SQL types (TEXT unless said).
STATE_COLUMNS: dict[str, str] = {
    "name": "TEXT",
    "source": "TEXT",
    "product": "TEXT",
    "filter": "TEXT",
    "watermark": "TEXT",
    "deleted_watermark": "TEXT",
    "cursor": "TEXT",
    "copied": "TEXT",
    "rows": "INTEGER",
    "last_sync": "TEXT",
    "last_result": "TEXT",
    "last_error": "TEXT",
    "requests": "INTEGER",
    "compared": "TEXT",
    "scales": "TEXT",
    "columns": "TEXT",
}


@dataclass
class SyncState:
    """Where the replica of one table stands."""

    name: str  # the table in the replica
    source: str  # the catalog table it copies
    product: str
    filter: str | None = None  # REPLICATE t SELECT ... WHERE: the rows kept
    watermark: str | None = None  # every change before this (less the lookback) is in
    deleted_watermark: str | None = None  # deletions reported before this are applied
    cursor: str | None = None  # a read under way (JSON, see the module)
    # When the last whole copy finished (None: started --since, holding recent rows only).
    copied: str | None = None
    rows: int = 0
    last_sync: str | None = None
    last_result: str | None = None
    last_error: str | None = None
    requests: int = 0
    # Sage 200 / CRM: when the ids were last compared in full (the server's time).
    compared: str | None = None
    # JSON {replica table: {DECIMAL column: the most decimal places the API wrote}}: the
    # table's and its lines'. Read back, a DECIMAL has those places, as online (120.00).
    scales: str | None = None
    # REPLICATE t SELECT a, b: the columns asked for (JSON list; None: every column).
    columns: str | None = None

    def position(self) -> dict[str, Any] | None:
        return json.loads(self.cursor) if self.cursor else None

    def as_row(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> SyncState:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in row.items() if k in names})

    def describe_position(self) -> str:
        """The position as a person reads it: a read under way, or the watermark."""
        cursor = self.position()
        if cursor is None:
            return f"changes since {self.watermark}" if self.watermark else "not started"
        at = cursor.get("ck", cursor.get("offset"))
        where = f"after key {at}" if "ck" in cursor else f"at row {at}"
        return f"{cursor['phase']} under way, {where}" if at is not None else cursor["phase"]
