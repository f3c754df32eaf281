"""Listings for the command line: a table for a person at a terminal, plain lines when piped.

At a terminal, ``print_table`` draws a rich table that fits the width: every column but
the last keeps its values whole on one line, the last (a description) wraps. Piped or
redirected, the same rows are tab-separated lines with a header line, never cut or
wrapped, so ``sagesql tables | grep invoice`` and ``cut -f2`` find every name.
``print_text`` is the same: rich markup at a terminal, its plain text otherwise.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from enum import Enum
from typing import Any

# A column whose values are all at most this wide is shown whole at a terminal.
WHOLE = 40


class ListFormat(str, Enum):
    table = "table"
    json = "json"


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _plain(value: Any) -> str:
    """One tab-separated field: tabs and line breaks would split it, so they are spaces."""
    return (
        " ".join(_cell(value).split()) if any(c in _cell(value) for c in "\t\r\n") else _cell(value)
    )


def print_table(
    headers: Sequence[str], rows: Iterable[Sequence[Any]], *, title: str | None = None
) -> None:
    if not sys.stdout.isatty():
        if title:
            sys.stdout.write(f"# {_plain(title)}\n")
        if any(headers):
            sys.stdout.write("\t".join(headers) + "\n")
        for row in rows:
            sys.stdout.write("\t".join(_plain(v) for v in row) + "\n")
        return
    from rich.cells import cell_len
    from rich.console import Console
    from rich.table import Table

    cells = [[_cell(v) for v in row] for row in rows]
    table = Table(title=title, title_justify="left", show_lines=False, header_style="bold")
    for i, header in enumerate(headers):
        widest = max([cell_len(header)] + [cell_len(r[i]) for r in cells])
        # Short values (names, types, flags) are never squeezed: rich would fold them
        # to nothing. Long ones (descriptions, pushdown) wrap in the width left.
        if widest <= WHOLE or i == 0:  # the first column names the row: always whole
            table.add_column(header, no_wrap=True, min_width=widest)
        else:
            table.add_column(header, overflow="fold", min_width=min(widest, 12))
    for row in cells:
        table.add_row(*row)
    Console(soft_wrap=False).print(table)


def print_text(text: str) -> None:
    """Text with rich markup: styled at a terminal, plain (the markup dropped) when piped."""
    if not sys.stdout.isatty():
        from rich.text import Text

        sys.stdout.write(Text.from_markup(text).plain + "\n")
        return
    from rich.console import Console

    Console(highlight=False).print(text)
