"""SQL writes: INSERT, UPDATE and DELETE planned, validated, then sent one request per row.

- ``INSERT INTO t (cols) VALUES (...), (...)`` and ``INSERT INTO t (cols) SELECT ...``:
  one create request per row, in the product's body (bodies.py). A JSON column takes
  JSON text (``invoice_lines``, ``contact_types``).
- ``UPDATE t SET ... WHERE ...`` and ``DELETE FROM t WHERE ...``: a key predicate
  (``id = x``, ``id IN (...)``) goes straight to one update or delete per key; any
  other predicate, or a SET value computed from the row, first runs as a SELECT of
  the keys (through the query engine, so it shows in ``--explain``), then acts per
  key. Only the columns set are sent.
- ``RETURNING`` columns are read from each row's answer (the created or updated
  record: ids, server-computed totals) with the same flattening as SELECT. An
  insert-only Sage 200 posting answers ``{"urn": ...}`` only: RETURNING there is that
  answer, and any other column is refused before sending (answer_columns).

Nothing is sent until every row is checked (validation.py): one error lists every
problem. Then each row is answered on its own (row_writes.py): the result has one
row per input row, ``(row, key, status, error, <RETURNING columns>)``, in input order;
``rowcount`` counts the rows carried out. A failed row never stops the others.

Sage's semantics stay visible: DELETE on an Accounting sales invoice or credit note
voids it unless it is a draft, and voiding needs a reason, so DELETE deletes drafts
only and refuses the others (before anything is sent) with the procedure that voids
them (``EXEC VoidSalesInvoice @Id = ..., @VoidReason = ...``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

import msgspec
from sqlglot import exp

from sagesql.connector.seams import Client
from sagesql.engine import bodies, query, validation
from sagesql.engine.conditions import NOT_A_LITERAL, literal_value, split_and
from sagesql.engine.fetch import flattener
from sagesql.engine.result import Result, ResultColumn
from sagesql.engine.row_writes import RowError, RowOutcome, RowRequest, send_all
from sagesql.engine.statement import READ_DIALECT
from sagesql.engine.values import coerce, from_storage
from sagesql.errors import DataError, NotSupportedError, ProgrammingError
from sagesql.schemas.catalog import Column, Operation, Procedure, Table

WRITES = (exp.Insert, exp.Update, exp.Delete)
SUCCESS_STATUS = {"INSERT": "created", "UPDATE": "updated", "DELETE": "deleted"}
RESULT_COLUMNS = (
    ResultColumn("row", "INTEGER"),
    ResultColumn("key", "TEXT"),
    ResultColumn("status", "TEXT"),
    ResultColumn("error", "TEXT"),
)
KEY_ALIAS = "__sagesql_key"
STATUS_ALIAS = "__sagesql_status"
DRAFT = "DRAFT"


def is_write(tree: exp.Expression) -> bool:
    return isinstance(tree, WRITES)


def affects_every_row(tree: exp.Expression) -> bool:
    """An UPDATE or DELETE without WHERE (pipeline.run refuses one unless allow_all_rows)."""
    return isinstance(tree, (exp.Update, exp.Delete)) and tree.args.get("where") is None


class WriteResult(Result):
    """A write's per-row results; ``outcomes`` keeps each row's API answer and error."""

    outcomes: list[RowOutcome] = msgspec.field(default_factory=list)
    kind: str = ""

    @property
    def failed(self) -> int:
        return sum(1 for o in self.outcomes if not o.ok)

    def summary(self) -> str:
        """``2 created, 1 failed`` (what the CLI prints on stderr)."""
        counts: dict[str, int] = {}
        for outcome in self.outcomes:
            counts[outcome.status] = counts.get(outcome.status, 0) + 1
        if not counts:
            return f"no rows: nothing to {self.kind.lower() or 'write'}"
        return ", ".join(f"{n} {status}" for status, n in counts.items())


class Row(msgspec.Struct):
    """One row to write: its position, its key (update, delete) and its typed values."""

    index: int
    key: Any = None
    values: dict[Column, Any] = msgspec.field(default_factory=dict)
    outcome: RowOutcome | None = None  # answered without a request (a key not found)


class Write(msgspec.Struct):
    """A write statement, resolved and checked: what it sets and how rows are found."""

    kind: str
    table: Table
    operation: Operation
    tree: exp.Expression
    target: exp.Table
    columns: list[Column | None]  # INSERT's column list, UPDATE's SET targets
    problems: validation.Problems
    set_exprs: list[exp.Expression] = msgspec.field(default_factory=list)
    keys: tuple[Any, ...] | None = None  # rows named by a key predicate
    finder: exp.Expression | None = None  # the SELECT that finds the rows otherwise
    returning: list[Column] = msgspec.field(default_factory=list)
    void: Procedure | None = None  # DELETE voids non-drafts: the procedure that does it


def _table_of(connection: Client, node: exp.Table) -> Table:
    product = connection.product.id
    scope = node.args.get("db")
    table = connection.catalog.table(node.name, scope.name if scope else product)
    if table.product != product:
        raise ProgrammingError(
            f"{table.name} is a {table.product} table, but the connection is to {product}",
            hint="connect to that product to write to it",
        )
    return table


def _unsupported(tree: exp.Expression) -> None:
    checks = (
        ("alternative", "INSERT OR ..."),
        ("conflict", "ON CONFLICT"),
        ("ignore", "INSERT IGNORE"),
        ("from_", "UPDATE ... FROM"),
        ("using", "DELETE ... USING"),
        ("overwrite", "INSERT OVERWRITE"),
    )
    for arg, what in checks:
        if tree.args.get(arg):
            raise NotSupportedError(
                f"{what} is not supported",
                hint="Sage has no such statement; find the rows with a subquery in WHERE",
            )


def plan(connection: Client, tree: exp.Expression) -> Write:
    """The checked write (names, operation, columns, key predicate); nothing is sent."""
    _unsupported(tree)
    kind = type(tree).__name__.upper()
    statement = f"{kind} {'INTO' if kind == 'INSERT' else 'FROM' if kind == 'DELETE' else ''}"
    target = tree.this.this if isinstance(tree.this, exp.Schema) else tree.this
    if not isinstance(target, exp.Table) or not isinstance(target.this, exp.Identifier):
        raise ProgrammingError(f"{kind} needs a table name", hint="write INSERT INTO contacts ...")
    table = _table_of(connection, target)
    operation = validation.operation(table, kind)
    problems = validation.Problems(f"{' '.join(statement.split())} {table.name}")
    write = Write(kind, table, operation, tree, target, [], problems)
    if kind == "INSERT":
        _plan_insert(write)
    elif kind == "UPDATE":
        names = []
        for item in tree.expressions:
            if not isinstance(item, exp.EQ) or not isinstance(item.this, exp.Column):
                raise ProgrammingError(
                    f"bad SET item {item.sql(READ_DIALECT)!r}", hint="write SET column = value"
                )
            names.append(item.this.name)
            write.set_exprs.append(item.expression)
        write.columns = validation.check_columns(table, names, kind, problems)
    if kind in ("UPDATE", "DELETE"):
        _plan_keys(write)
    write.returning = _returning(write)
    return write


def _plan_insert(write: Write) -> None:
    tree = write.tree
    if not isinstance(tree.this, exp.Schema):
        raise ProgrammingError(
            f"INSERT INTO {write.table.name} needs its column list",
            hint=f"name the columns: INSERT INTO {write.table.name} (a, b) VALUES (1, 2)",
        )
    names = [i.name for i in tree.this.expressions]
    write.columns = validation.check_columns(write.table, names, "INSERT", write.problems)
    source = tree.expression
    if isinstance(source, exp.Values):
        for n, row in enumerate(source.expressions, 1):
            items = row.expressions if isinstance(row, exp.Tuple) else [row]
            if len(items) != len(names):
                write.problems.add(
                    f"{len(items)} values for {len(names)} columns", row=n, names=True
                )
    elif isinstance(source, (exp.Select, exp.Union, exp.Intersect, exp.Except, exp.Subquery)):
        finder = source.this if isinstance(source, exp.Subquery) else source
        with_ = tree.args.get("with_")
        if with_ is not None:
            finder = finder.copy()
            finder.set("with_", with_.copy())
        write.finder = finder
    else:
        raise ProgrammingError(
            "INSERT takes VALUES (...) or a SELECT", hint="write INSERT INTO t (a) VALUES (1)"
        )


def _key_column(write: Write) -> Column | None:
    table = write.table
    return table.column(table.key) if table.key and table.has_column(table.key) else None


def _plan_keys(write: Write) -> None:
    """Keys straight from a key predicate, or the SELECT that finds the rows."""
    table, tree = write.table, write.tree
    if write.kind == "DELETE":
        write.void = next(
            (
                p
                for p in table.procedures
                if str(p.request.get("method", "")).upper() == "DELETE"
                and table.has_column("status_id")
            ),
            None,
        )
    keyed = "{key}" in write.operation.path
    key_column = _key_column(write)
    if keyed and key_column is None:
        raise NotSupportedError(
            f"{table.name} has no key column to {write.kind} by", hint="report this table"
        )
    keys = _key_predicate(tree, write.target, key_column) if key_column else None
    constant = all(
        literal_value(e) is not NOT_A_LITERAL or isinstance(e, exp.Null) for e in write.set_exprs
    )
    has_order = bool(tree.args.get("limit") or tree.args.get("order"))
    if keys is not None and key_column is not None and constant and not has_order:
        typed = []
        for value in keys:
            try:
                typed.append(coerce(key_column.type, value, table.product, column=key_column.name))
            except DataError as exc:  # reported with the others
                write.problems.add(exc.message, column=key_column.name)
        write.keys = tuple(dict.fromkeys(typed))
        if write.void is None:
            return
    write.finder = _finder(write, key_column)


def _key_predicate(tree: exp.Expression, target: exp.Table, key: Column) -> tuple[Any, ...] | None:
    """The keys of a WHERE that is exactly ``key = v`` or ``key IN (v, ...)``."""
    where = tree.args.get("where")
    conjuncts = split_and(where.this if where is not None else None)
    if len(conjuncts) != 1:
        return None
    node = conjuncts[0]
    names = {target.name.lower(), target.alias_or_name.lower()}

    def is_key(side: exp.Expression) -> bool:
        return (
            isinstance(side, exp.Column)
            and side.name.lower() == key.name.lower()
            and (not side.table or side.table.lower() in names)
        )

    if isinstance(node, exp.EQ):
        column, other = (node.this, node.expression)
        if not is_key(column):
            column, other = other, column
        value = literal_value(other)
        if is_key(column) and value is not NOT_A_LITERAL:
            return (value,)
        return None
    if isinstance(node, exp.In) and is_key(node.this) and not node.args.get("query"):
        values = tuple(literal_value(e) for e in node.expressions)
        if values and all(v is not NOT_A_LITERAL for v in values):
            return values
    return None


def _finder(write: Write, key_column: Column | None) -> exp.Select:
    """SELECT key, <SET values>, [status] FROM t WHERE ... (the rows to act on)."""
    tree = write.tree
    alias = write.target.alias_or_name
    key = exp.column(key_column.name, table=alias) if key_column else exp.null()
    projections: list[Any] = [exp.alias_(key, KEY_ALIAS, quoted=True)]
    for n, expression in enumerate(write.set_exprs):
        projections.append(exp.alias_(expression.copy(), f"__sagesql_set{n}", quoted=True))
    if write.void is not None:
        projections.append(exp.alias_(exp.column("status_id", table=alias), STATUS_ALIAS))
    select = exp.select(*projections).from_(write.target.copy())
    for arg in ("where", "order", "limit"):
        if tree.args.get(arg) is not None:
            select.set(arg, tree.args[arg].copy())
    return select


# What Sage answers a POST to an insert-only posting with, by the create operation's
# ``record_schema``: the published Sage 200 definitions give ``#/components/schemas/urn``
# (``{"urn": string, maxLength 20}``) as the 200 response of /sales_invoices,
# /sales_receipts, /purchase_invoices, /purchase_receipts, /bank_receipt and the others.
ANSWERS: dict[str, tuple[Column, ...]] = {
    "urn": (
        Column(
            "urn",
            "TEXT",
            ("urn",),
            nullable=True,
            read_only=True,
            required_on_create=False,
            description="Unique reference number of the transactions posted.",
            max_length=20,
        ),
    ),
}


def answer_columns(table: Table) -> tuple[Column, ...] | None:
    """The columns of Sage's answer to a create on an insert-only table, else None.

    An insert-only table (create is its only operation, no key: Sage 200 postings such
    as ``sales_invoices``) is answered with what the definition's 200 response says,
    not with the record sent: ``{"urn": ...}``, or nothing at all. RETURNING on such a
    table reads that answer: ``*`` is its columns (``urn``), and a column the answer
    lacks is refused before anything is sent, with one line saying where to read it
    back. NULL there would never be told apart from a real NULL, so it would mislead.
    """
    create = table.operations.get("create")
    if create is None or table.key is not None or set(table.operations) != {"create"}:
        return None
    return ANSWERS.get(create.record_schema or "", ())


def _returning(write: Write) -> list[Column]:
    node = write.tree.args.get("returning")
    if node is None:
        return []
    answer = answer_columns(write.table)
    if answer is not None:
        return _returning_answer(write, node, answer)
    out: list[Column] = []
    for item in node.expressions:
        if isinstance(item, exp.Star) or (isinstance(item, exp.Column) and item.is_star):
            out.extend(c for c in write.table.columns if c not in out)
        elif isinstance(item, exp.Column) and write.table.has_column(item.name):
            out.append(write.table.column(item.name))
        elif isinstance(item, exp.Column):
            write.problems.add(f"unknown RETURNING column {item.name!r}", names=True)
        else:
            raise ProgrammingError(
                f"RETURNING takes column names, not {item.sql(READ_DIALECT)!r}",
                hint="write RETURNING id, total_amount (or *)",
            )
    return out


def _returning_answer(
    write: Write, node: exp.Expression, answer: tuple[Column, ...]
) -> list[Column]:
    """RETURNING on an insert-only table: only the columns of Sage's answer (answer_columns)."""
    name = write.table.name
    shown = "{" + ", ".join(c.name for c in answer) + "}" if answer else "nothing"
    where = f"read it back from {read_back}" if (read_back := _read_back(write.table)) else ""
    out: list[Column] = []
    for item in node.expressions:
        if isinstance(item, exp.Star) or (isinstance(item, exp.Column) and item.is_star):
            if not answer:
                write.problems.add(
                    f"RETURNING: Sage answers a POST to {name} with nothing to return", names=True
                )
            out.extend(c for c in answer if c not in out)
        elif isinstance(item, exp.Column):
            found = [c for c in answer if c.name.lower() == item.name.lower()]
            if found:
                out.extend(c for c in found if c not in out)
            else:
                write.problems.add(
                    f"RETURNING {item.name}: Sage answers a POST to {name} with {shown} only"
                    + (f"; {where}" if where else ""),
                    names=True,
                    column=item.name,
                )
        else:
            raise ProgrammingError(
                f"RETURNING takes column names, not {item.sql(READ_DIALECT)!r}",
                hint=f"{name} returns {shown}: write RETURNING urn (or *)",
            )
    return out


def _read_back(table: Table) -> str | None:
    """The table the description names to read an insert-only table's postings back."""
    text = table.description or ""
    start = text.rfind("(")
    end = text.rfind(")")
    if "read them back" in text and 0 <= start < end:
        return text[start + 1 : end]
    return None


def extract_path(record: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        record = record.get(part) if isinstance(record, dict) else None
    return record


# -- the rows ------------------------------------------------------------------------------


def _query(connection: Client, tree: exp.Expression) -> list[tuple[Any, ...]]:

    result = query.run_tree(connection, tree.copy())
    try:
        return list(result.rows)
    finally:
        result.close()


def _values_rows(connection: Client, write: Write) -> list[list[Any]]:
    source = write.tree.expression
    out: list[list[Any]] = []
    for row in source.expressions:
        items = row.expressions if isinstance(row, exp.Tuple) else [row]
        values = [None if isinstance(e, exp.Null) else literal_value(e) for e in items]
        if any(v is NOT_A_LITERAL for v in values):
            # An expression (date('now'), 2 * 3): SQLite works it out.
            values = list(_query(connection, exp.select(*[e.copy() for e in items]))[0])
        out.append(values)
    return out


def rows(connection: Client, write: Write) -> list[Row]:
    """Every row to write, checked and typed; raises one error listing every problem."""
    if write.finder is not None:
        write.problems.raise_if_any()  # a wrong name makes reading the rows pointless
    table, problems, catalog = write.table, write.problems, connection.catalog
    out: list[Row] = []
    if write.kind == "INSERT":
        raw = (
            _values_rows(connection, write)
            if write.finder is None
            else [list(r) for r in _query(connection, write.finder)]
        )
        for n, values in enumerate(raw):
            if len(values) != len(write.columns):
                if write.finder is not None:
                    problems.add(
                        f"the SELECT gives {len(values)} values for {len(write.columns)} columns",
                        names=True,
                    )
                    break
                continue  # noted while planning
            typed = validation.convert_row(
                table, write.columns, values, catalog, problems, row=n + 1, creating=True
            )
            out.append(Row(n, None, typed))
    elif write.finder is None:
        constants = [None if isinstance(e, exp.Null) else literal_value(e) for e in write.set_exprs]
        assert write.keys is not None
        for n, key in enumerate(write.keys):
            typed = (
                validation.convert_row(
                    table, write.columns, constants, catalog, problems, row=None, creating=False
                )
                if n == 0
                else dict(out[0].values)
            )
            out.append(Row(n, key, typed))
    else:
        found = _query(connection, write.finder)
        width = len(write.set_exprs)
        not_drafts = []
        for n, found_row in enumerate(found):
            key, sets = found_row[0], list(found_row[1 : 1 + width])
            typed = validation.convert_row(
                table, write.columns, sets, catalog, problems, row=n + 1, creating=False
            )
            if write.void is not None and found_row[-1] != DRAFT:
                not_drafts.append((key, found_row[-1]))
            out.append(Row(n, key, typed))
        if write.void is not None:
            _refuse_voids(write, not_drafts)
            out = _keyed_order(write, out)
    problems.raise_if_any()
    return out


def _refuse_voids(write: Write, not_drafts: list[tuple[Any, Any]]) -> None:
    if not not_drafts:
        return
    void = write.void
    assert void is not None
    listed = ", ".join(f"{k} ({s or 'no status'})" for k, s in not_drafts[:10])
    more = f" and {len(not_drafts) - 10} more" if len(not_drafts) > 10 else ""
    key_param = next(
        (p.name for p in void.parameters if "{" + p.name + "}" in str(void.request["path"])),
        "Id",
    )
    args = ", ".join(
        f"@{p.name} = '{not_drafts[0][0] if p.name == key_param else '...'}'"
        for p in void.parameters
        if p.required
    )
    raise NotSupportedError(
        f"DELETE FROM {write.table.name}: {len(not_drafts)} of the rows are not drafts: "
        f"{listed}{more}. Sage voids such a document instead of deleting it, and a void "
        "needs a reason; nothing was sent",
        hint=f"void each with EXEC {void.name} {args} (DELETE deletes drafts only)",
    )


def _keyed_order(write: Write, found: list[Row]) -> list[Row]:
    """With a key predicate, one row per key given, in its order (absent keys: not found)."""
    if write.keys is None:
        return found
    by_key = {str(r.key): r for r in found}
    out: list[Row] = []
    for n, key in enumerate(write.keys):
        row = by_key.get(str(key))
        if row is None:
            message = f"{write.table.name} {key} was not found"
            row = Row(n, key, outcome=RowOutcome(n, "failed", key, None, RowError(message, 404)))
        else:
            row.index = n
        out.append(row)
    return out


def requests(write: Write, found: Sequence[Row]) -> Iterator[RowRequest]:
    """One request per row (or its outcome, when it needs none)."""
    op, table = write.operation, write.table
    success = SUCCESS_STATUS[write.kind]
    for row in found:
        if row.outcome is not None:
            yield RowRequest(row.index, key=row.key, outcome=row.outcome)
            continue
        values = row.values
        if write.kind == "INSERT":
            # NULL in a new row means no value: the API's default applies.
            values = {c: v for c, v in values.items() if v is not None}
        body = bodies.body(op, values, table.product) if write.kind != "DELETE" else None
        try:
            target = bodies.path(op, row.key)
        except DataError as exc:  # a key such as '..' would aim the request elsewhere
            failed = RowOutcome(row.index, "failed", row.key, None, RowError.of(exc))
            yield RowRequest(row.index, key=row.key, outcome=failed)
            continue
        yield RowRequest(
            row.index,
            op.method,
            target,
            body,
            row.key,
            success,
            key_of=lambda answer: bodies.record_key(table, answer),
        )


def run(connection: Client, tree: exp.Expression) -> WriteResult:
    """Carry out a write statement: every row checked first, then one request per row."""
    write = plan(connection, tree)
    found = rows(connection, write)
    outcomes = (
        list(
            send_all(
                connection.transport,
                requests(write, found),
                workers=max(1, int(connection.settings.max_concurrency or 1)),
            )
        )
        if found
        else []
    )
    return result(write, outcomes)


def result(write: Write, outcomes: list[RowOutcome]) -> WriteResult:
    names = [c.name for c in write.returning]
    if answer_columns(write.table) is not None:
        paths = [c.path for c in write.returning]

        def from_answer(record: dict[str, Any]) -> tuple[Any, ...]:
            return tuple(extract_path(record, path) for path in paths)

        flatten: Any = from_answer if names else None
    else:
        flatten = flattener(write.table, names) if names else None
    types = [c.type for c in write.returning]
    product = write.table.product
    key_name = write.table.key

    def returned(outcome: RowOutcome) -> tuple[Any, ...]:
        if flatten is None:
            return ()
        record = outcome.response if isinstance(outcome.response, dict) else None
        if record is None:
            return tuple(outcome.key if n == key_name and outcome.ok else None for n in names)
        return tuple(
            from_storage(t, v, product) for t, v in zip(types, flatten(record), strict=True)
        )

    table_rows = [
        (
            o.index + 1,
            None if o.key is None else str(o.key),
            o.status,
            o.error.text() if o.error else None,
            *returned(o),
        )
        for o in outcomes
    ]
    columns = list(RESULT_COLUMNS) + [ResultColumn(c.name, c.type) for c in write.returning]
    return WriteResult(
        columns,
        iter(table_rows),
        rowcount=sum(1 for o in outcomes if o.ok),
        outcomes=outcomes,
        kind=write.kind,
    )


# -- explain --------------------------------------------------------------------------------


def explain(connection: Client, tree: exp.Expression) -> str:
    """What the write would send, and the SELECT that finds its rows; nothing is sent."""

    write = plan(connection, tree)
    write.problems.raise_if_any()
    table, op = write.table, write.operation
    lines = [f"{write.kind} {table.name} ({table.product})"]
    template = {c: "?" for c in write.columns if c is not None}
    if write.kind == "UPDATE" and write.finder is None:
        constants = [None if isinstance(e, exp.Null) else literal_value(e) for e in write.set_exprs]
        template = validation.convert_row(
            table,
            write.columns,
            constants,
            connection.catalog,
            write.problems,
            row=None,
            creating=False,
        )
        write.problems.raise_if_any()
    body = (
        json.dumps(bodies.body(op, template, table.product), ensure_ascii=False)
        if write.kind != "DELETE"
        else None
    )
    sent = f"  {op.method} {op.path} per row" + (f", body {body}" if body else "")
    if write.kind == "INSERT":
        if write.finder is None:
            count = len(write.tree.expression.expressions)
            lines.append(f"  {count} row{'s' if count != 1 else ''} from VALUES")
        else:
            lines.append("  rows from the SELECT:")
            lines.extend(
                "    " + line
                for line in query.prepare_tree(connection, write.finder.copy())
                .explain()
                .splitlines()
            )
        lines.append(sent)
    elif write.finder is None:
        assert write.keys is not None
        for key in write.keys[:5]:
            lines.append(
                f"  {op.method} {bodies.path(op, key)}" + (f" body {body}" if body else "")
            )
        if len(write.keys) > 5:
            lines.append(f"  ... {len(write.keys) - 5} more {op.method} requests")
    else:
        lines.append(
            "  rows found by a SELECT first (key"
            + (", SET values" if write.set_exprs else "")
            + "):"
        )
        lines.extend(
            "    " + line
            for line in query.prepare_tree(connection, write.finder.copy()).explain().splitlines()
        )
        lines.append(sent.replace(" per row", " per row found"))
    if write.void is not None:
        lines.append(
            f"  note: Sage voids a {table.name} document that is not a draft; DELETE deletes "
            f"drafts only (void others with EXEC {write.void.name})"
        )
    if write.returning:
        lines.append("  returning: " + ", ".join(c.name for c in write.returning))
    lines.append("  every row is checked before the first request; each row is answered alone")
    return "\n".join(lines)


__all__ = [
    "WriteResult",
    "affects_every_row",
    "explain",
    "is_write",
    "plan",
    "run",
]
