"""A write's per-row outcomes, as SQLAlchemy expects a DML result to look.

sagesql answers INSERT/UPDATE/DELETE with one row per input row, ``(row, key, status,
error, <RETURNING columns>)``, and a failed row does not stop the others. SQLAlchemy
expects a DML cursor to hold the RETURNING columns only, and an error to be raised.
So for a compiled insert()/update()/delete() the outcomes are read here: any row Sage
did not carry out raises (after the others were sent: nothing is rolled back, so the
message says how many were written), and what SQLAlchemy sees is the RETURNING part.
A text() statement is left as the DB-API gives it, outcome columns included.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from sagesql.engine.row_writes import SUCCESS
from sagesql.engine.writes import RESULT_COLUMNS
from sagesql.errors import IntegrityError, OperationalError

OUTCOME = [c.name for c in RESULT_COLUMNS]  # row, key, status, error
_STATUS = OUTCOME.index("status")


def is_outcome(description: Sequence[Sequence[Any]] | None) -> bool:
    return bool(description) and [d[0] for d in description[: len(OUTCOME)]] == OUTCOME  # type: ignore[index]


def check(rows: list[tuple[Any, ...]], written: int) -> None:
    """Raise naming the rows Sage did not carry out (the first three), if any."""
    bad = [r for r in rows if r[_STATUS] not in SUCCESS]
    if not bad:
        return
    shown = "; ".join(f"row {r[0]} {r[_STATUS]}: {r[3] or 'no answer'}" for r in bad[:3])
    more = f" (and {len(bad) - 3} more)" if len(bad) > 3 else ""
    # "unknown": sent without an answer, so Sage may have carried it out.
    kind = OperationalError if any(r[_STATUS] == "unknown" for r in bad) else IntegrityError
    raise kind(
        f"{len(bad)} of {len(rows)} rows were not written ({written} were): {shown}{more}",
        hint="nothing was rolled back (Sage has no transactions): fix those rows and send "
        "them again",
    )


class ReturningCursor:
    """Stands for the DB-API cursor after a write: the RETURNING columns and rows only."""

    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor
        rows = cursor.fetchall()
        self.rowcount = cursor.rowcount
        check(rows, self.rowcount)
        width = len(OUTCOME)
        extra = cursor.description[width:]
        self.description = tuple(extra) if extra else None
        self._rows: Iterator[tuple[Any, ...]] = iter([tuple(r[width:]) for r in rows])
        self.lastrowid = None
        self.arraysize = cursor.arraysize

    def fetchone(self) -> tuple[Any, ...] | None:
        return next(self._rows, None)

    def fetchmany(self, size: int | None = None) -> list[tuple[Any, ...]]:
        wanted = self.arraysize if size is None else size
        return [row for _, row in zip(range(wanted), self._rows, strict=False)]

    def fetchall(self) -> list[tuple[Any, ...]]:
        return list(self._rows)

    def close(self) -> None:
        self._cursor.close()

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return self._rows
