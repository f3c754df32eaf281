"""The Sage CRM dialect: conjuncts as one SData ``where=``, with ``orderBy``.

The walk is odata.FilterDialect's (``and``, ``or``, ``not`` with the same exactness
rules); what differs is the syntax Sage CRM takes (SAGE-APIS.md section 3):

- comparisons ``eq ne lt le gt ge``, lists ``f in ('a', 'b')``, ``f like 'Acme%'``;
  strings single-quoted with quotes doubled, numbers plain.
- dates ``@2025-01-31@``; date-times carry an explicit UTC designator,
  ``@2025-01-31T10:00:00Z@``, so the server's own time zone (CRM writes local times)
  cannot shift them; whole seconds, CRM's precision.
- ``like``: SQLite's ``_`` (one character) and ``[`` (a character class on SQL Server,
  a plain character in SQLite) are sent as ``%``, which matches them too: a superset.
- booleans and NULLs cannot be filtered: such predicates stay local. Text compares
  case-insensitively, as on SQL Server: never exact, and only ``=``/``IN``/``LIKE``.
- ``orderBy=a desc, b``: several keys, when the API orders as SQLite does. No
  projection: CRM returns whole records.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime

from sagesql.connector.dialects.odata import NAME, Filter, FilterDialect
from sagesql.schemas.catalog import Column


class SDataDialect(FilterDialect):
    """Sage CRM's SData 2.0: ``where`` and ``orderBy``."""

    name = "sdata"

    def field(self, column: Column) -> str | None:
        if len(column.path) == 1 and NAME.match(column.path[0]):
            return column.path[0]
        return None

    @staticmethod
    def boolean_literal(value: bool) -> str | None:
        return None  # Sage CRM cannot filter on booleans

    @staticmethod
    def datetime_literal(value: datetime) -> str:
        return "@" + value.strftime("%Y-%m-%dT%H:%M:%S") + "Z@"

    @staticmethod
    def date_literal(value: date) -> str:
        return f"@{value.isoformat()}@"

    def null_test(self, field: str, op: str, why: list[str]) -> Filter | None:
        why.append(f"{self.product} cannot filter on NULL")
        return None

    def in_list(self, field: str, literals: Sequence[str], exact: bool) -> Filter:
        if len(literals) == 1:
            return Filter(f"{field} eq {literals[0]}", exact)
        return Filter(f"{field} in ({', '.join(literals)})", exact)

    def like(self, field: str, pattern: str, why: list[str]) -> Filter | None:
        chars: list[str] = []
        for ch in pattern:
            wide = "%" if ch in "_[" else ch
            if not (wide == "%" and chars and chars[-1] == "%"):
                chars.append(wide)
        return Filter(f"{field} like {self.string_literal(''.join(chars))}", exact=False)

    def sort_term(self, field: str, descending: bool) -> str:
        return f"{field} desc" if descending else field
