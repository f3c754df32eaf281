"""Rows as a person reads them at a terminal: aligned columns, or records when too wide.

Like psql's ``\\x auto``: when the columns fit the terminal's width (each cut to at most
``MAX_CELL`` characters) they are a grid; when they do not, each row is a block of
``name | value`` lines, its values cut to the width left. Nothing is ever squeezed to
zero width. NULL shows as ``NULL``, booleans as true/false, a DECIMAL with its places
(``7800.00``), dates and times in ISO 8601; numbers are right-aligned; line breaks and
tabs in text show as ``↵`` and a space so that one row stays one line.

>>> print(grid(["id", "name"], [(1, "Acme"), (22, None)], width=40))
 id │ name
────┼──────
  1 │ Acme
 22 │ NULL
(2 rows)
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

from rich.cells import cell_len, set_cell_size

NULL = "NULL"
MAX_CELL = 40  # a grid cell's widest, before it is cut with …
ELLIPSIS = "…"
SEPARATOR = " │ "


def text(value: Any) -> str:
    """One value as the terminal shows it."""
    if value is None:
        return NULL
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    shown = str(value)
    if "\n" in shown or "\r" in shown or "\t" in shown:
        shown = shown.replace("\r\n", "↵").replace("\n", "↵").replace("\r", "↵")
        shown = shown.replace("\t", " ")
    return shown


def _numeric(value: Any) -> bool:
    return isinstance(value, (int, float, Decimal)) and not isinstance(value, bool)


def cut(shown: str, width: int) -> str:
    """``shown`` in at most ``width`` cells, ending in … when cut."""
    if cell_len(shown) <= width:
        return shown
    if width <= 1:
        return ELLIPSIS[:width]
    return set_cell_size(shown, width - 1) + ELLIPSIS


def _pad(shown: str, width: int, right: bool) -> str:
    gap = " " * (width - cell_len(shown))
    return gap + shown if right else shown + gap


def _count(n: int) -> str:
    return f"({n} row{'s' if n != 1 else ''})"


def widths(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[int]:
    """Each column's grid width: its header and its values, each at most MAX_CELL."""
    out = [min(cell_len(h), MAX_CELL) for h in headers]
    for row in rows:
        for i, value in enumerate(row):
            out[i] = max(out[i], min(cell_len(text(value)), MAX_CELL))
    return out


def fits(headers: Sequence[str], rows: Sequence[Sequence[Any]], width: int) -> bool:
    if not headers:
        return True
    columns = widths(headers, rows)
    return sum(columns) + len(SEPARATOR) * (len(columns) - 1) + 2 <= width


def grid(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, width: int) -> str:
    """The rows as aligned columns (the caller checked that they fit)."""
    columns = widths(headers, rows)
    right = [
        bool(rows) and all(_numeric(r[i]) or r[i] is None for r in rows)
        for i in range(len(headers))
    ]
    heads = [_pad(cut(h, w), w, False) for h, w in zip(headers, columns, strict=True)]
    lines = [(" " + SEPARATOR.join(heads)).rstrip()]
    lines.append("─" + "─┼─".join("─" * w for w in columns) + "─")
    for row in rows:
        cells = [_pad(cut(text(v), w), w, r) for v, w, r in zip(row, columns, right, strict=True)]
        lines.append((" " + SEPARATOR.join(cells)).rstrip())
    lines.append(_count(len(rows)))
    return "\n".join(lines)


def records(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, width: int) -> str:
    """Each row as a block of ``name │ value`` lines, values cut to the width left."""
    names = min(max((cell_len(h) for h in headers), default=0), max(width // 2, 8))
    room = max(width - names - len(SEPARATOR) - 1, 10)
    lines: list[str] = []
    for n, row in enumerate(rows, 1):
        title = f"-[ RECORD {n} ]"
        lines.append(title + "-" * max(width - len(title) - 1, 0))
        for header, value in zip(headers, row, strict=True):
            name = _pad(cut(header, names), names, False)
            lines.append((name + SEPARATOR + cut(text(value), room)).rstrip())
    lines.append(_count(len(rows)))
    return "\n".join(lines)


def render(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, width: int) -> str:
    """A grid when the columns fit ``width``, else records (psql's ``\\x auto``)."""
    if fits(headers, rows, width):
        return grid(headers, rows, width=width)
    return records(headers, rows, width=width)
