"""A statement's result: typed columns and a stream of rows (what cursors and the CLI read)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import msgspec


class ResultColumn(msgspec.Struct, frozen=True):
    name: str
    sql_type: str | None  # the catalog type when the column is a plain column reference
    secret: bool = False  # a token a procedure returns: masked on the command line


class Result(msgspec.Struct, dict=True):
    """Rows come as tuples of Python values (values.from_storage applied), lazily."""

    # dict=True: a result takes attributes besides its fields (engine.query hangs the
    # statement's plan on one).

    columns: list[ResultColumn]
    rows: Iterator[tuple[Any, ...]]
    # Rows affected by a write; -1 for queries (PEP 249: unknown until read).
    rowcount: int = -1
    # Called when the consumer stops early or is done: frees SQLite, stops paging.
    on_close: list[Callable[[], None]] = msgspec.field(default_factory=list)
    closed: bool = False

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        close = getattr(self.rows, "close", None)
        if close is not None:
            close()
        for callback in self.on_close:
            callback()

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return self.rows
