"""A replica table's shape: its name in the target, the catalog table it copies, its key.

A line table (``sales_invoice_lines``) is keyed by its parent's key and its own, and
indexed on the parent's key: its rows are replaced with their parent's.
"""

from __future__ import annotations

from dataclasses import dataclass

from sagesql.schemas.catalog import Table


@dataclass(frozen=True)
class Shape:
    """A replica table: its name in the target and the catalog table it copies."""

    name: str  # in the target; "schema.table" in PostgreSQL
    table: Table
    key: tuple[str, ...]  # the primary key (a line table: the parent's key and its own)
    parent_key: str | None = None  # a line table: the column naming its parent's key
    chosen: tuple[str, ...] | None = None  # REPLICATE t SELECT a, b: those columns only

    @property
    def columns(self) -> list[str]:
        if self.chosen is not None:
            return list(self.chosen)
        return [c.name for c in self.table.columns]

    @property
    def indexed(self) -> list[str]:
        """Columns indexed besides the primary key: the updated column, a line's parent."""
        out = [c for c in (self.table.updated_column, self.parent_key) if c]
        return [c for c in dict.fromkeys(out) if (c,) != self.key]


def shape_of(
    table: Table, name: str | None = None, columns: tuple[str, ...] | None = None
) -> Shape:
    if table.parent is not None:
        parent_key = table.parent.key_column
        key = (parent_key, table.key) if table.key and table.key != parent_key else (parent_key,)
        return Shape(name or table.name, table, key if table.key else (), parent_key)
    assert table.key is not None
    return Shape(name or table.name, table, (table.key,), chosen=columns)
