"""Names: the statement's tables resolved in the catalog, and every column qualified.

Each reference to a catalog table gets a private local name (the SQLite table its rows
will fill) and keeps the alias the statement uses; CTE names are left alone. Columns
are then qualified and ``*`` expanded by sqlglot's qualifier against the catalog's
columns, so that unknown or ambiguous names fail here, before anything is sent.

Every table also has a column it does not list, :data:`RECORD_COLUMN`: the record as
the API returned it, as JSON text (for a line table, the line). Its JSON path is empty
(the record itself), so fetching fills it like any column, and only a statement that
names it pays for it: ``*`` never includes it (stars are expanded before it joins the
tables' columns), and a statement that does not name it reads and stores nothing more.
"""

from __future__ import annotations

import re

import msgspec
from sqlglot import exp
from sqlglot.errors import OptimizeError
from sqlglot.optimizer.qualify import qualify

from sagesql.engine.statement import READ_DIALECT, position
from sagesql.engine.values import SQLITE_TYPES
from sagesql.errors import ProgrammingError, UnknownColumnError, UnknownTableError
from sagesql.schemas.catalog import Catalog, Column, Table, did_you_mean

LOCAL_PREFIX = "__sagesql_t"
# The record as the API returned it (module docstring): the poller's events carry it.
RECORD_COLUMN = "sagesql_record"
_RECORD = Column(
    name=RECORD_COLUMN,
    type="JSON",
    path=(),
    nullable=False,
    read_only=True,
    required_on_create=False,
    description="The record as the API returned it (JSON); for a line table, the line.",
)


def with_record(table: Table) -> Table:
    """The table with its record column (for one statement: the catalog's stays as is)."""
    if table.has_column(RECORD_COLUMN):
        return table
    columns = (*table.columns, _RECORD)
    return msgspec.structs.replace(
        table, columns=columns, _by_name={c.name.lower(): c for c in columns}
    )


def names_record(tree: exp.Expression) -> bool:
    """Whether the statement names the record column anywhere."""
    return any(c.name.lower() == RECORD_COLUMN for c in tree.find_all(exp.Column))


class TableRef(msgspec.Struct):
    """One reference to a catalog table in the statement."""

    table: Table
    local_name: str  # the SQLite table that will hold its rows
    alias: str  # how the statement's columns name it


def _where(node: exp.Expression) -> str:
    at = position(node)
    return f" at {at}" if at else ""


def resolve(
    tree: exp.Expression, catalog: Catalog, product: str
) -> tuple[exp.Expression, list[TableRef]]:
    """The qualified tree and its table references (in order of appearance)."""
    ctes = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}
    record = names_record(tree)
    refs: list[TableRef] = []
    _name_output_columns(tree)  # before tables get their private names
    for node in list(tree.find_all(exp.Table)):
        if not isinstance(node.this, exp.Identifier):
            continue  # a table-valued function such as json_each(...)
        name = node.name
        if not node.args.get("db") and name.lower() in ctes:
            continue
        scope = node.args.get("db")
        try:
            table = catalog.table(name, scope.name if scope else product)
        except UnknownTableError as exc:
            raise UnknownTableError(exc.message + _where(node), hint=exc.hint) from None
        if table.product != product:  # sage_200.customers on an Accounting connection
            other, own = catalog.product(table.product), catalog.product(product)
            raise UnknownTableError(
                f"table {node.sql(READ_DIALECT)}{_where(node)} is in {other.connection_name}, "
                f"but the connection is to {own.connection_name}",
                hint=f"connect with Product={other.connection_name} to query it",
            )
        alias = node.alias_or_name
        local = f"{LOCAL_PREFIX}{len(refs)}"
        node.set("this", exp.to_identifier(local))
        node.set("db", None)
        node.set("catalog", None)
        node.set("alias", exp.TableAlias(this=exp.to_identifier(alias)))
        refs.append(TableRef(table, local, alias))
    _check_qualifiers(tree)
    try:
        if record:
            # Stars first, over the listed columns only (the record column unknown,
            # so left alone); then every column, the record column among them.
            tree = _qualify(tree, refs, validate=False)
            for ref in refs:
                ref.table = with_record(ref.table)
        qualified = _qualify(tree, refs, validate=True)
    except OptimizeError as exc:
        raise _column_error(str(exc), refs) from None
    return qualified, refs


def _qualify(tree: exp.Expression, refs: list[TableRef], *, validate: bool) -> exp.Expression:
    schema: dict[str, object] = {
        ref.local_name: {c.name: SQLITE_TYPES[c.type] for c in ref.table.columns} for ref in refs
    }
    return qualify(
        tree,
        schema=schema,
        dialect=READ_DIALECT,
        validate_qualify_columns=validate,
        allow_partial_qualification=not validate,
        quote_identifiers=False,
        identify=False,
    )


def _name_output_columns(tree: exp.Expression) -> None:
    """Unnamed result columns keep their expression's text (count(*)), as SQLite names
    them, instead of the qualifier's generated _col_0: the statement's own, and those of
    every derived table, CTE and set operation's branch (``SELECT * FROM (SELECT
    count(*) FROM t)`` answers a column named count(*) too)."""
    selects = list(tree.find_all(exp.Select))  # every enclosing query before its parts
    named = [
        (item, item.sql(READ_DIALECT))  # the text as written, before any inner alias
        for select in selects
        for item in select.expressions
        if not isinstance(item, (exp.Alias, exp.Column, exp.Star))
    ]
    for item, name in reversed(named):  # inner queries first: the outer copies keep them
        item.replace(exp.alias_(item.copy(), name, quoted=True))


def _check_qualifiers(tree: exp.Expression) -> None:
    """A column qualified by a name no table, subquery or CTE in the statement has."""
    known = {n.alias_or_name.lower() for n in tree.find_all(exp.Table, exp.Subquery, exp.CTE)}
    known |= {n.name.lower() for n in tree.find_all(exp.Table)}
    for column in tree.find_all(exp.Column):
        qualifier = column.table
        if qualifier and qualifier.lower() not in known:
            raise ProgrammingError(
                f"unknown table or alias {qualifier!r} in {column.sql(READ_DIALECT)}"
                f"{_where(column)}",
                hint=did_you_mean(qualifier, known) or "use a table name or alias of the FROM",
            )


def _column_error(message: str, refs: list[TableRef]) -> ProgrammingError:
    """A one-line error from the qualifier's message, with close matches."""
    where = ""
    found = re.search(r"Line: (\d+), Col: (\d+)", message)
    if found:
        where = f" at line {found.group(1)}, column {found.group(2)}"
    text = message.split(". Line:")[0].split("\n")[0]
    column = re.search(r"Column '([^']+)' could not be resolved", text) or re.search(
        r"Unknown column: (\S+)", text
    )
    if column:
        name = column.group(1).strip('"')
        owners = [ref for ref in refs if ref.table.has_column(name)]
        if len(owners) > 1 and "Unknown column" not in text:
            listed = ", ".join(f"{ref.table.name} {ref.alias}" for ref in owners)
            return ProgrammingError(
                f"column {name!r}{where} is ambiguous (in {listed})",
                hint=f"qualify it, e.g. {owners[0].alias}.{name}",
            )
        candidates = {c.name for ref in refs for c in ref.table.columns} | {RECORD_COLUMN}
        tables = ", ".join(sorted({ref.table.name for ref in refs})) or "the query"
        hint = did_you_mean(name, candidates)
        if hint is None:
            hint = (
                f"run 'sagesql describe {refs[0].table.name}' to list its columns"
                if refs
                else "check the column names"
            )
        return UnknownColumnError(f"unknown column {name!r}{where} (in {tables})", hint=hint)
    if "ambiguous" in text.lower():
        return ProgrammingError(f"{text}{where}", hint="qualify the column with its table alias")
    for ref in refs:
        text = text.replace(ref.local_name, ref.alias)
    return ProgrammingError(f"{text}{where}", hint="check the names in the statement")
