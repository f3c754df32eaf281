"""Activity results: one per input record (index, status, key, record, error).

``status`` is one of ``created``, ``updated``, ``deleted``, ``voided``, ``ok``
(carried out), ``failed`` (refused by the API, or invalid and never sent),
``unknown`` (sent, but no answer came: Sage may have carried it out; check before
sending it again) and ``skipped`` (not sent because the run stopped). ``record`` is
the API's answer flattened into the table's columns, as a query returns them.
"""

from __future__ import annotations

from typing import Any

import msgspec

from sagesql.engine.fetch import flattener
from sagesql.engine.row_writes import SUCCESS, RowError, RowOutcome
from sagesql.engine.values import from_storage
from sagesql.schemas.catalog import Table

ActivityError = RowError
STATUSES = ("created", "updated", "deleted", "voided", "ok", "failed", "unknown", "skipped")


class ActivityResult(msgspec.Struct, frozen=True):
    index: int  # 0-based position of the record in the input
    status: str
    key: Any = None
    record: dict[str, Any] | None = None
    error: RowError | None = None
    response: Any = None  # the API's answer as sent (JSON), when there was one

    @property
    def ok(self) -> bool:
        return self.status in SUCCESS

    @classmethod
    def of(cls, outcome: RowOutcome, table: Table | None) -> ActivityResult:
        return cls(
            outcome.index,
            outcome.status,
            outcome.key,
            flatten(table, outcome.response) if table is not None else None,
            outcome.error,
            outcome.response,
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (decimals stay Decimal: the caller's encoder keeps their digits)."""
        return {
            "index": self.index,
            "status": self.status,
            "key": self.key,
            "record": self.record,
            "error": self.error.to_dict() if self.error else None,
        }


def flatten(table: Table, response: Any) -> dict[str, Any] | None:
    """An API record as the table's columns (typed as a query returns them)."""
    if not isinstance(response, dict):
        return None
    names = [c.name for c in table.columns if not c.path[0].startswith("$parent")]
    row = flattener(table, names)(response)
    types = [table.column(n).type for n in names]
    return {n: from_storage(t, v, table.product) for n, t, v in zip(names, types, row, strict=True)}
