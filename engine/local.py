"""Local evaluation: SQLite runs the statement over the rows fetched from the API."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass
class LocalSource:
    """One table's rows for the local database: ``name`` is the SQLite table to create."""

    name: str
    columns: Sequence[tuple[str, str]]  # (column name, catalog SQL type)
    rows: Iterator[tuple[Any, ...]]
