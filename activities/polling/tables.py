"""Polled tables: each configured resource resolved against the catalog, checked before any request.

A configured name resolves to a catalog table (any case, aliases included: CRM
``accounts`` is ``company``); the platforms' names for Sage 200 resources that are not
tables (``invoices``, ``payments``: posted transactions of one type) resolve to the
table and a filter. Then everything the poller will ask is checked, so that a mistake
is reported at start and names where it was configured:

- the updated-date, created-date and id columns exist (close matches offered);
- a platform where clause parses, its placeholder compares the updated-date column
  (or the API parameter standing for it) and its other conditions name real columns;
- the entry's name and its url's resource are the same table;
- the filter plans: the same planner as ``sagesql query``, without a request.

How a table is polled follows from its definition: by its updated-date column over
a frozen window; deletions through the API's parameter where it has one (Accounting's
``deleted_since``), else by comparing id sets now and then; by snapshots when there is
no updated-date column at all (every cycle reads every row: the cost is logged).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from sagesql.activities.polling.config import PollConfig, TableConfig
from sagesql.activities.polling.instance import SINCE, warn_once
from sagesql.connector import products
from sagesql.connector.products import SageProduct
from sagesql.engine.conditions import split_and
from sagesql.engine.pipeline import prepare
from sagesql.engine.statement import READ_DIALECT, too_deep
from sagesql.errors import (
    ConfigurationError,
    Error,
    ProgrammingError,
    UnknownTableError,
)
from sagesql.schemas.catalog import Catalog, Table, close_matches, did_you_mean

WINDOW, SNAPSHOT = "window", "snapshot"


@dataclass(frozen=True)
class TableSpec:
    """A table as the poller polls it (every name checked)."""

    origin: str
    name: str  # objectType
    table: Table
    product: str
    filter: str | None  # SQL condition on the table's columns
    updated: str | None  # updated-date column (None: snapshot comparison)
    created: str | None
    key: str  # the table's key: cursors and dedupe
    id_field: str  # objectId
    lookback: timedelta
    delay: timedelta
    tolerance: timedelta
    page_size: int | None
    deletes: str  # api | compare | off (snapshot tables: the snapshot reports them)
    compare_every: timedelta | None  # None: every COMPARE_EVERY_CYCLES cycles
    where: str | None = None
    placeholders: tuple[str, ...] = ()
    date_timezone: str | None = None
    # The columns read (None: all): an instance's attributes='a,b' asks Sage for those
    # fields only, and the events carry what Sage returned.
    columns: tuple[str, ...] | None = None

    @property
    def mode(self) -> str:
        return WINDOW if self.updated else SNAPSHOT


@dataclass(frozen=True)
class PlanningOnly:
    """What the planner needs of a connection (a seams.Planning): no network."""

    catalog: Catalog
    product: SageProduct


def planning_connection(catalog: Catalog, product: str) -> PlanningOnly:
    return PlanningOnly(catalog, products.get(product))


def condition(text: str, what: str = "the filter") -> exp.Expression:
    """A configured SQL condition as a syntax tree: one condition, nothing before or after
    it (so that it can only ever be a condition of the statements built around it)."""
    try:
        tree = sqlglot.parse_one(text, read=READ_DIALECT, into=exp.Condition)
    except ParseError as exc:
        detail = exc.errors[0] if exc.errors else {}
        at = f" at line {detail['line']}, column {detail['col']}" if detail.get("line") else ""
        near = f" near {detail['highlight']!r}" if detail.get("highlight") else ""
        problem = str(detail.get("description", "")).split(". Line")[0]
        raise ProgrammingError(
            f"{what} {text!r}: SQL syntax error{at}{near}: {problem}",
            hint="write one SQL condition on the table's columns",
        ) from None
    except TokenError as exc:
        raise ProgrammingError(
            f"{what} {text!r}: SQL syntax error: {exc}",
            hint="check quotes and brackets are closed",
        ) from None
    except RecursionError:  # sqlglot recurses once per level of nesting
        raise too_deep() from None
    assert isinstance(tree, exp.Expression)  # a parsed condition is a node of the tree
    return tree


def _all(conditions: Sequence[exp.Expr]) -> exp.Expr | None:
    """``(a) AND (b) ...``, or None."""
    if not conditions:
        return None
    return exp.and_(*(exp.paren(c, copy=False) for c in conditions), copy=False)


def resolve_resource(name: str, catalog: Catalog, product: str) -> tuple[Table, str | None]:
    """The table (and the filter) a configured resource name stands for."""
    try:
        return catalog.table(name, product), None
    except UnknownTableError as exc:
        platform = products.get(product).platform_resources
        mapped = platform.get(name.strip().lower())
        if mapped is not None:
            return catalog.table(mapped[0], product), mapped[1]
        if "-" in name:  # the platforms' urls write warehouse-holdings for warehouse_holdings
            try:
                return resolve_resource(name.replace("-", "_"), catalog, product)
            except UnknownTableError:
                pass
        extra = list(platform)
        summaries = catalog.tables(product)
        names = [t.name for t in summaries] + [a for t in summaries for a in t.aliases] + extra
        raise UnknownTableError(
            exc.message, hint=did_you_mean(name, names) or "run 'sagesql tables' to list them"
        ) from None


def resolve(config: PollConfig, catalog: Catalog, product: str) -> list[TableSpec]:
    """Every configured table, checked; one error listing every problem."""
    problems: list[str] = []
    specs: list[TableSpec] = []
    for entry in config.tables:
        try:
            specs.append(_resolve(entry, config, catalog, product))
        except Error as exc:
            problems.append(f"{entry.origin}: {exc}")
    if problems:
        raise ConfigurationError(
            "the poll configuration has problems: " + " | ".join(problems),
            hint="fix them in " + (str(config.source) if config.source else "the configuration"),
        )
    return specs


def platform_field(table: Table, name: str) -> str | None:
    """The column a platform's field name stands for (``lastModifiedDate``: the updated-date
    column; CRM's ``key``: the key), from the product's ``platform_fields``."""
    role = products.get(table.product).platform_fields.get(name.strip().lower())
    return {"updated": table.updated_column, "created": table.created_column, "key": table.key}.get(
        role or ""
    )


def _column(table: Table, name: str, what: str) -> str:
    if not table.has_column(name) and platform_field(table, name):
        return str(platform_field(table, name))
    if not table.has_column(name):
        raise ProgrammingError(
            f"{what} {name!r} is not a column of {table.name}",
            hint=did_you_mean(name, (c.name for c in table.columns))
            or f"run 'sagesql describe {table.name}'",
        )
    return table.column(name).name


def _resolve(entry: TableConfig, config: PollConfig, catalog: Catalog, product: str) -> TableSpec:
    table, resource_filter = resolve_resource(entry.table, catalog, product)
    if config.platform:
        _same_table(entry, table, resource_filter, catalog, product)
    if table.parent is not None:
        raise ProgrammingError(
            f"{table.name} is read through {table.parent.table}: it has no dates of its own",
            hint=f"poll {table.parent.table}",
        )
    if "list" not in table.operations:
        raise ProgrammingError(
            f"{table.name} cannot be read (the API only accepts new records there)",
            hint="poll the table its description names ('sagesql describe " + table.name + "')",
        )
    updated = table.updated_column
    filters: list[exp.Expr] = [condition(f) for f in (resource_filter, entry.filter) if f]
    columns: tuple[str, ...] | None = None
    if entry.where is not None:
        watermark_column, rest, columns = _split_where(entry, table)
        if watermark_column is not None:
            updated = watermark_column
        if rest is not None:
            filters.append(rest)
    if entry.updated_field:
        named = _column(table, entry.updated_field, "the updated-date field")
        if entry.where is not None and updated and named != updated:
            raise ProgrammingError(
                f"datesConfiguration.updatedDateField is {named} but the where clause polls "
                f"{updated}",
                hint="name the same column in both",
            )
        updated = named
    if updated is not None:
        column = table.column(updated)
        if column.type not in ("DATETIME", "DATE"):
            raise ProgrammingError(
                f"the updated-date column {updated} is {column.type}, not a date-time",
                hint="name a DATETIME column",
            )
    created = table.created_column
    if entry.created_field:
        created = _column(table, entry.created_field, "the created-date field")
    if table.key is None:
        raise ProgrammingError(f"{table.name} has no key column", hint="poll another table")
    id_field = _column(table, entry.id_field, "idField") if entry.id_field else table.key
    combined = _all(filters)
    if combined is not None:
        _check_filter(combined, table, catalog, product)
    deletes = entry.deletes
    if updated is None:
        deletes = "off"  # the snapshot comparison reports deletions itself
        warn_once(
            f"{entry.origin}: {table.name} has no updated-date column: every cycle reads "
            "every row to compare snapshots (one full scan per cycle)"
        )
    elif deletes == "auto":
        deletes = "api" if table.deletions is not None else "compare"
    elif deletes == "api" and table.deletions is None:
        raise ProgrammingError(
            f"{table.name}: the API reports no deletions",
            hint='use deletes = "compare" (id sets compared now and then) or "off"',
        )
    return TableSpec(
        origin=entry.origin,
        name=entry.name,
        table=table,
        product=product,
        filter=combined.sql(READ_DIALECT) if combined is not None else None,
        updated=updated,
        created=created,
        key=table.key,
        id_field=id_field,
        lookback=entry.lookback if entry.lookback is not None else config.lookback,
        delay=entry.delay if entry.delay is not None else config.delay,
        tolerance=entry.tolerance if entry.tolerance is not None else config.tolerance,
        page_size=entry.page_size or config.page_size,
        deletes=deletes,
        compare_every=entry.compare_every,
        where=entry.where,
        placeholders=entry.placeholders,
        date_timezone=entry.date_timezone,
        columns=_with_needed(table, columns, updated, created, id_field),
    )


def _same_table(
    entry: TableConfig, table: Table, resource_filter: str | None, catalog: Catalog, product: str
) -> None:
    """A platform entry's name and its url's resource must be the same table."""
    try:
        named, named_filter = resolve_resource(entry.name, catalog, product)
    except UnknownTableError:
        # A name of the user's own: the url decides. Say so when the name looks like
        # other tables than the url's (a published Sage 200 body's "transactions" polls
        # customers).
        names = [t.name for t in catalog.tables(product)]
        close = close_matches(entry.name, names)
        if close and table.name not in close:
            warn_once(
                f"{entry.origin}: the entry {entry.name!r} is not a table (close: "
                f"{', '.join(close)}) and its url polls {entry.table!r}, which is table "
                f"{table.name}: polling the url's (events keep objectType {entry.name!r})"
            )
        return
    if named.name != table.name or named_filter != resource_filter:
        # The platforms poll what the url says (a published Sage 200 body's "transactions"
        # reads customers): so does sagesql, and says so.
        filtered = f" ({resource_filter})" if resource_filter else ""
        warn_once(
            f"{entry.origin}: the entry {entry.name!r} is table {named.name}, but its url "
            f"polls {entry.table!r}, which is table {table.name}{filtered}: polling the "
            f"url's (events keep objectType {entry.name!r})"
        )


def _split_where(
    entry: TableConfig, table: Table
) -> tuple[str | None, exp.Expr | None, tuple[str, ...] | None]:
    """(the column the placeholder compares, the rest of the clause, the columns its
    projection parameter asks for): platform field names made the table's columns, Sage
    parameters written as conditions made what they stand for."""
    assert entry.where is not None
    column: str | None = None
    columns: tuple[str, ...] | None = None
    rest: list[exp.Expr] = []
    for node in split_and(condition(entry.where, "the where clause")):
        holders = [p for p in node.find_all(exp.Placeholder) if p.name == SINCE]
        if not holders:
            parameter = _parameter_condition(node, table)
            if parameter is None:
                rest.append(_platform_names(node, table))
            elif isinstance(parameter, Projected):
                columns = parameter.columns
            else:
                rest.append(parameter)
            continue
        found = _watermark_comparison(node, table)
        if column is not None and found != column:
            raise ProgrammingError(
                f"the where clause compares the last poll time with both {column} and {found}",
                hint="compare it with the updated-date column only",
            )
        column = found
    return column, _all(rest), columns


def _platform_names(node: exp.Expr, table: Table) -> exp.Expr:
    """The condition with the platforms' field names made the table's columns."""

    def rename(part: exp.Expr) -> exp.Expr:
        if isinstance(part, exp.Column) and not table.has_column(part.name):
            mapped = platform_field(table, part.name)
            if mapped:
                return _quoted(mapped)
        return part

    return node.transform(rename)


def _quoted(name: str) -> exp.Column:
    return exp.column(exp.to_identifier(name, quoted=True))


@dataclass(frozen=True)
class Projected:
    """What the projection parameter asks for: these columns (None: all of them)."""

    columns: tuple[str, ...] | None


def _parameter_condition(node: exp.Expr, table: Table) -> exp.Expr | Projected | None:
    """A Sage query parameter written as a condition (``search = 'x'``), as the SQL
    condition the API applies through it, or for the projection parameter
    (``attributes = 'a,b'``) the columns it asks for. None: not a parameter."""
    if not isinstance(node, exp.EQ):
        return None
    left, right = node.args.get("this"), node.args.get("expression")
    if isinstance(right, exp.Column) and isinstance(left, exp.Literal):
        left, right = right, left
    if not isinstance(left, exp.Column) or not isinstance(right, exp.Literal):
        return None
    name = left.name
    if table.has_column(name) or platform_field(table, name):
        return None
    projection = table.pushdown.projection
    if projection is not None and name.lower() == projection.parameter.lower():
        return Projected(_projection_columns(table, str(right.this), projection.all))
    filters = [p for p in table.pushdown.parameters if p.parameter.lower() == name.lower()]
    if not filters:
        return None
    value = str(right.this)
    literal = right if right.is_string else exp.Literal.string(value)
    parts: list[exp.Expr] = []
    for column in dict.fromkeys(p.column for p in filters):
        ops = {p.operator for p in filters if p.column == column}
        target = _quoted(column)
        if "LIKE" in ops:  # search: a case-insensitive substring of any of its columns
            pattern: exp.Expr = exp.Like(this=target, expression=exp.Literal.string(f"%{value}%"))
            if "%" in value or "_" in value:  # literally, not as wildcards
                escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
                pattern = exp.Escape(
                    this=exp.Like(this=target, expression=exp.Literal.string(f"%{escaped}%")),
                    expression=exp.Literal.string("\\"),
                )
            parts.append(pattern)
        elif ">=" in ops or ">" in ops:
            parts.append(exp.GTE(this=target, expression=literal.copy()))
        elif "<=" in ops or "<" in ops:
            parts.append(exp.LTE(this=target, expression=literal.copy()))
        else:
            parts.append(exp.EQ(this=target, expression=literal.copy()))
    combined = parts[0]
    for part in parts[1:]:
        combined = exp.or_(combined, part, copy=False)
    return exp.paren(combined, copy=False) if len(parts) > 1 else combined


def _projection_columns(table: Table, value: str, every: str | None) -> tuple[str, ...] | None:
    """The columns ``attributes='a,b'`` (top-level fields) reads, besides those every
    record carries; None for the word meaning all (``all``)."""
    projection = table.pushdown.projection
    assert projection is not None
    fields = [f.strip() for f in value.split(",") if f.strip()]
    if not fields or (every and [f.lower() for f in fields] == [every.lower()]):
        return None
    tops = {c.path[0].lower(): c.path[0] for c in table.columns}
    unknown = [f for f in fields if f.lower() not in tops]
    if unknown:
        raise ProgrammingError(
            f"the where clause's {projection.parameter} names {unknown[0]!r}, which is not "
            f"a field of {table.name}",
            hint=did_you_mean(unknown[0], tops.values()) or f"run 'sagesql describe {table.name}'",
        )
    wanted = {tops[f.lower()] for f in fields} | set(projection.always)
    return tuple(c.name for c in table.columns if c.path[0] in wanted)


def _with_needed(
    table: Table, columns: tuple[str, ...] | None, *needed: str | None
) -> tuple[str, ...] | None:
    """The columns read, with those the poller itself needs (key, dates, id) added."""
    if columns is None:
        return None
    want = {n.lower() for n in needed if n} | ({table.key.lower()} if table.key else set())
    have = {c.lower() for c in columns}
    return tuple(c.name for c in table.columns if c.name.lower() in have | want)


def _watermark_comparison(node: exp.Expression, table: Table) -> str:
    """The updated-date column of ``col >= ${...}`` (or ``>``, or the reverse)."""
    text = node.sql(READ_DIALECT)
    ops: dict[type[exp.Expr], str] = {
        exp.GTE: ">=",
        exp.GT: ">",
        exp.LTE: "<=",
        exp.LT: "<",
        exp.EQ: "=",
    }
    op = ops.get(type(node))
    left, right = node.args.get("this"), node.args.get("expression")
    if op is not None and isinstance(left, exp.Placeholder):
        left, right = right, left
        op = {">=": "<=", ">": "<", "<=": ">=", "<": ">", "=": "="}[op]
    if op == "=" and isinstance(left, exp.Column) and _since_parameter(left.name, table):
        op = ">="  # updated_or_created_since = '${...}': the parameter is a lower bound
    if (
        op not in (">=", ">")
        or not isinstance(left, exp.Column)
        or not isinstance(right, exp.Placeholder)
    ):
        raise ProgrammingError(
            f"the where clause's {text.replace(':' + SINCE, '${...}')} is not "
            "'<updated column> >= ${...}'",
            hint="compare the updated-date column with the placeholder: "
            "updated_at >= '${gmtDate:yyyy-MM-dd'T'HH:mm:ss'Z'}'",
        )
    name = left.name
    if table.has_column(name):
        return table.column(name).name
    found = _since_parameter(name, table) or platform_field(table, name)
    if found is not None:
        return found
    candidates = [c.name for c in table.columns] + [p.parameter for p in table.pushdown.parameters]
    raise ProgrammingError(
        f"the where clause names {name!r}, which is not a column of {table.name}",
        hint=did_you_mean(name, candidates) or f"run 'sagesql describe {table.name}'",
    )


def _since_parameter(name: str, table: Table) -> str | None:
    """The updated column an API parameter stands for (``updated_or_created_since``)."""
    for p in table.pushdown.parameters:
        same = p.parameter.lower() == name.lower() and p.column == table.updated_column
        if same and p.operator == ">=":
            return p.column
    return None


def _check_filter(where: exp.Expr, table: Table, catalog: Catalog, product: str) -> None:
    """Plan ``SELECT * FROM t WHERE condition``: names and types, nothing sent."""
    statement = (
        exp.select(exp.Star())
        .from_(exp.table_(exp.to_identifier(table.name, quoted=True)))
        .where(where.copy(), copy=False)
    )
    try:
        prepare(planning_connection(catalog, product), statement.sql(READ_DIALECT))
    except Error as exc:
        raise ProgrammingError(
            f"the filter {where.sql(READ_DIALECT)!r}: {exc}", hint=None
        ) from None


def names(specs: Sequence[TableSpec]) -> list[str]:
    return [s.name for s in specs]
