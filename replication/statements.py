"""``REPLICATE [target.]table [SELECT ...]`` and ``CACHE table [SELECT ...]``: sync as SQL.

The way commercial drivers spell it, run by ``sagesql query --replica URL``::

    REPLICATE contacts                       -- contacts into the replica's contacts
    REPLICATE crm.accounts                   -- into schema crm (PostgreSQL)
    REPLICATE big_customers SELECT id, name, balance FROM customers WHERE balance > 1000
    CACHE contacts                           -- every row copied again, then kept

REPLICATE copies what changed since the table's last run (the first run copies every
row); CACHE copies every row again (``sagesql sync --full``), deletions applied. The
SELECT names one table, its columns (``*`` or names) and at most a WHERE condition,
which the rows kept must meet: rows that stop meeting it leave the replica on the next
run (the window reads them with the condition as a flag where it reads by pages, and the
count and ids show them gone otherwise). In SQLite, which has no schemas,
``REPLICATE crm.accounts`` makes a table named ``crm.accounts``; ``query --replica``
reads it as ``FROM crm.accounts`` as in PostgreSQL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlglot import exp

from sagesql.engine.statement import READ_DIALECT, parse
from sagesql.errors import ProgrammingError
from sagesql.replication.sync import Replicated

_NAME = r'(?:"[^"]+"|[A-Za-z_][A-Za-z0-9_]*)'
_HEAD = re.compile(
    rf"^\s*(REPLICATE|CACHE)\s+({_NAME}(?:\s*\.\s*{_NAME})?)\s*(.*?)\s*;?\s*$",
    re.IGNORECASE | re.DOTALL,
)
_WORD = re.compile(r"^\s*(REPLICATE|CACHE)\b", re.IGNORECASE)


@dataclass(frozen=True)
class SyncStatement:
    """A REPLICATE or CACHE statement, read."""

    kind: str  # "REPLICATE" or "CACHE"
    table: Replicated

    @property
    def full(self) -> bool:
        return self.kind == "CACHE"


def is_sync_statement(sql: str) -> bool:
    return bool(_WORD.match(sql))


def _unquote(name: str) -> str:
    return ".".join(p.strip().strip('"') for p in name.split("."))


def read(sql: str) -> SyncStatement:
    """The statement, or ProgrammingError saying what is wrong with it."""
    found = _HEAD.match(sql)
    if found is None:
        raise ProgrammingError(
            f"cannot read {sql.strip()[:60]!r}",
            hint="write REPLICATE [target.]table [SELECT ... FROM table WHERE ...] "
            "or CACHE table [SELECT ...]",
        )
    kind, target, rest = found.group(1).upper(), _unquote(found.group(2)), found.group(3)
    if kind == "CACHE" and "." in target:
        raise ProgrammingError(f"CACHE {target}: name the table alone", hint=f"REPLICATE {target}")
    if not rest:
        return SyncStatement(kind, Replicated(target.rsplit(".", 1)[-1], target))
    tree = parse(rest)
    if not isinstance(tree, exp.Select):
        raise ProgrammingError(f"{kind} {target} {rest[:40]!r}: a SELECT must follow the table")
    unsupported = [
        name
        for name in ("joins", "group", "having", "order", "limit", "offset", "with", "distinct")
        if tree.args.get(name)
    ]
    source = tree.args.get("from") or tree.args.get("from_")
    tables = list(tree.find_all(exp.Table))
    if unsupported or source is None or len(tables) != 1 or tree.find(exp.Subquery):
        raise ProgrammingError(
            f"{kind} {target}: the SELECT may read one table, its columns and a WHERE only",
            hint="replicate the table, then query the replica for the rest",
        )
    columns: tuple[str, ...] | None = None
    if not any(isinstance(e, exp.Star) for e in tree.expressions):
        names = []
        for e in tree.expressions:
            if not isinstance(e, exp.Column):
                raise ProgrammingError(
                    f"{kind} {target}: {e.sql(READ_DIALECT)!r} is not a column",
                    hint="list columns of the table (the replica computes the rest)",
                )
            names.append(e.name)
        columns = tuple(names)
    where = tree.args.get("where")
    condition = where.this.sql(READ_DIALECT) if where is not None else None
    return SyncStatement(kind, Replicated(tables[0].name, target, condition, columns))
