"""Write validation: a write's columns and values checked against the table definition.

Everything is checked before anything is sent, and every problem is collected, so that
one error lists them all, each with its row number:

- the table must have the operation (create, update, delete): otherwise
  NotSupportedError, naming what the table does support and its procedures;
- unknown columns (with close matches), read-only columns (a column that is read-only
  but required on create is written once, by INSERT), a column named twice;
- the columns a create requires, absent from the statement or empty in a row;
- values of the wrong type (values.coerce), too long, or not one of the allowed values;
- JSON columns: JSON text (or, from the activity API, a list or object); a link-id
  array (``contact_types``, written as ``contact_type_ids``) takes ids or link objects;
  the lines of a document (``invoice_lines``) are checked against the line table (a
  new line needs what the definition requires of a line) and given in write form
  (links as ``ledger_account_id``; read-only members dropped).

Converted values are typed Python values (str, int, Decimal, bool, date, datetime, and
lists or dicts for JSON); bodies.py turns them into the request body.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

import msgspec

from sagesql.connector import products
from sagesql.engine.values import coerce
from sagesql.errors import (
    DatabaseError,
    DataError,
    NotSupportedError,
    ProgrammingError,
)
from sagesql.schemas.catalog import Catalog, Column, Operation, Table, did_you_mean

# SQL statement kind -> the table operation that carries it out.
OPERATIONS = {"INSERT": "create", "UPDATE": "update", "DELETE": "delete"}


def operation(table: Table, kind: str) -> Operation:
    """The operation of a write statement, or NotSupportedError saying what the table allows."""
    name = OPERATIONS[kind]
    found = table.operations.get(name)
    if found is not None:
        return found
    if table.parent is not None:
        raise NotSupportedError(
            f"{table.name} cannot take {kind}: its rows are the "
            f"{'.'.join(table.parent.path)} of {table.parent.table}",
            hint=f"write the lines as JSON in {table.parent.table}.{'.'.join(table.parent.path)}",
        )
    supported = ", ".join(table.statements) or "nothing"
    procedures = ", ".join(p.name for p in table.procedures)
    hint = f"{table.name} supports {supported}"
    if procedures:
        hint += (
            f"; its procedures: {procedures} (EXEC Name @Param = 'value'; see 'sagesql procedures')"
        )
    api = products.for_table(table).short_title
    raise NotSupportedError(
        f"{table.name} does not support {kind}: the {api} API has no {name} call for it",
        hint=hint,
    )


class Problems(msgspec.Struct):
    """Every problem of one write, reported together."""

    statement: str
    items: list[str] = msgspec.field(default_factory=list)
    # (column, reason) of each problem, for per-record results (activities).
    fields: list[tuple[str | None, str]] = msgspec.field(default_factory=list)
    values_only: bool = True  # only values are wrong (DataError), not names

    def add(
        self,
        message: str,
        *,
        row: int | None = None,
        names: bool = False,
        column: str | None = None,
    ) -> None:
        self.items.append(f"row {row}: {message}" if row is not None else message)
        self.fields.append((column, message))
        if names:
            self.values_only = False

    def __bool__(self) -> bool:
        return bool(self.items)

    def error(self) -> DatabaseError:
        shown = self.items[:20]
        more = len(self.items) - len(shown)
        text = "; ".join(shown) + (f"; and {more} more" if more else "")
        cls = DataError if self.values_only else ProgrammingError
        count = len(self.items)
        plural = "s" if count > 1 else ""
        return cls(
            f"{self.statement}: {count} problem{plural}, nothing was sent: {text}",
            hint="fix them and run the statement again ('sagesql describe TABLE' lists the "
            "columns, which are read-only and which a create requires)",
        )

    def raise_if_any(self) -> None:
        if self.items:
            raise self.error()


def check_columns(
    table: Table, names: Sequence[str], kind: str, problems: Problems
) -> list[Column | None]:
    """The columns a write sets, in order (None for a name that is wrong, noted)."""
    seen: set[str] = set()
    out: list[Column | None] = []
    for name in names:
        if not table.has_column(name):
            hint = did_you_mean(name, (c.name for c in table.columns))
            problems.add(
                f"unknown column {name!r} in {table.name}" + (f" ({hint})" if hint else ""),
                names=True,
                column=name,
            )
            out.append(None)
            continue
        column = table.column(name)
        if column.name in seen:
            problems.add(f"column {column.name} is set twice", names=True, column=column.name)
            out.append(None)
            continue
        seen.add(column.name)
        if not writable(column, kind, table):
            problems.add(f"column {column.name} is read-only", names=True, column=column.name)
            out.append(None)
            continue
        out.append(column)
    if kind == "INSERT":
        for column in required(table):
            if column.name not in seen:
                problems.add(
                    f"column {column.name} is required to create a record",
                    names=True,
                    column=column.name,
                )
    return out


def writable(column: Column, kind: str, table: Table) -> bool:
    """Whether a write of that kind may set the column."""
    if column.path and column.path[0].startswith("$"):
        return False  # $path, $parent: the API's own
    if column.name == table.key and kind == "UPDATE":
        return False
    if column.read_only:
        # Write-once: read-only afterwards, but a create must give it.
        return kind == "INSERT" and column.required_on_create
    return True


def required(table: Table) -> list[Column]:
    """The columns a create must give (a view supplies its own condition's: fixed_values)."""
    return [
        c
        for c in table.columns
        if c.required_on_create
        and writable(c, "INSERT", table)
        and c.name not in table.fixed_values
    ]


def convert(
    table: Table,
    column: Column,
    value: Any,
    catalog: Catalog | None,
    *,
    creating: bool,
) -> Any:
    """The typed value to write, or ValueError with the reason (without the row number)."""
    if value is None or (isinstance(value, str) and value == "" and column.type != "TEXT"):
        if creating and column.required_on_create:
            raise ValueError(f"{column.name} is required")
        return None
    if creating and column.required_on_create and value == "":
        raise ValueError(f"{column.name} is required")
    if column.type == "JSON":
        typed = _json_value(table, column, value, catalog)
        if creating and column.required_on_create and typed in ([], {}):
            raise ValueError(f"{column.name} is required (give at least one item)")
        return typed
    try:
        typed = coerce(column.type, value, table.product, column=column.name)
    except DataError as exc:
        raise ValueError(exc.message.replace("compared with", "for")) from None
    if column.type == "INTEGER" and isinstance(typed, Decimal):
        raise ValueError(f"{value!r} is not a whole number (for {column.name})")
    if column.type == "DECIMAL" and not typed.is_finite():
        raise ValueError(f"{value!r} is not a finite number (for {column.name})")
    if column.type == "TEXT":
        if column.max_length and len(typed) > column.max_length:
            raise ValueError(
                f"{column.name} is longer than {column.max_length} characters ({len(typed)})"
            )
        if column.enum and typed not in column.enum:
            raise ValueError(
                f"{column.name} must be one of {', '.join(column.enum)}, not {typed!r}"
            )
    return typed


def _json_value(table: Table, column: Column, value: Any, catalog: Catalog | None) -> Any:
    if isinstance(value, str):
        if column.body_path[-1].endswith("_ids") and re.fullmatch(r"[\w-]+", value.strip()):
            return _ids(column, value.strip())  # one id, not JSON: contact_types = 'CUSTOMER'
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{column.name} is not valid JSON ({exc.msg})") from None
    elif not isinstance(value, (list, dict, int, float, Decimal, bool)):
        raise ValueError(f"{column.name} must be JSON text")
    if column.body_path[-1].endswith("_ids"):
        return _ids(column, value)
    child = _line_table(table, column, catalog)
    if child is not None:
        return _lines(child, column, value)
    return value


def _ids(column: Column, value: Any) -> list[str]:
    """A link-id array: ``["CUSTOMER"]``, or the links a SELECT returns (``[{"id": ...}]``)."""
    if isinstance(value, str):
        value = [value]  # one id: 'CUSTOMER'
    if not isinstance(value, list):
        raise ValueError(f'{column.name} must be a JSON array of ids, e.g. ["CUSTOMER"]')
    out = []
    for item in value:
        if isinstance(item, Mapping) and item.get("id") is not None:
            item = item["id"]
        if not isinstance(item, (str, int)) or isinstance(item, bool):
            raise ValueError(f"{column.name} must be a JSON array of ids, not {json.dumps(item)}")
        out.append(str(item))
    return out


def _line_table(table: Table, column: Column, catalog: Catalog | None) -> Table | None:
    """The child table whose rows are this JSON column's items (invoice lines), if any."""
    if catalog is None or not table.children or len(column.path) != 1:
        return None
    for name in table.children:
        child = catalog.table(name, table.product)
        if child.parent is not None and child.parent.path == column.path:
            return child
    return None


def line_required(child: Table) -> list[str]:
    """The members a new line (one without the line table's key) must give, in write form."""
    return [
        c.body_path[0]
        for c in child.columns
        if c.required_on_create and not c.read_only and len(c.body_path) == 1
    ]


def line_table(table: Table, column: Column, catalog: Catalog | None) -> Table | None:
    """The child table whose rows are this JSON column's items (invoice lines), if any."""
    return _line_table(table, column, catalog)


def _lines(child: Table, column: Column, value: Any) -> list[dict[str, Any]]:
    """Lines in write form, each member typed by the line table's column."""
    if not isinstance(value, list) or not all(isinstance(x, Mapping) for x in value):
        raise ValueError(f"{column.name} must be a JSON array of objects (one per line)")
    by_body: dict[str, Column] = {}
    links: dict[str, Column] = {}
    for c in child.columns:
        if c.path[0].startswith("$"):
            continue
        if len(c.body_path) == 1:
            by_body.setdefault(c.body_path[0], c)
        if len(c.path) == 2 and c.path[1] == "id" and c.write_path:
            links[c.path[0]] = c
    read_only_heads = {c.path[0] for c in child.columns if c.read_only}
    problems: list[str] = []
    out: list[dict[str, Any]] = []
    for n, line in enumerate(value):
        where = f"{column.name}[{n}]"
        converted: dict[str, Any] = {}
        for name, item in line.items():
            target = by_body.get(name)
            if target is None and name in links and isinstance(item, Mapping):
                target, item = links[name], item.get("id")  # a link as a SELECT returns it
            if target is None:
                if name.startswith("$") or name in read_only_heads:
                    continue  # what the API sends back (displayed_as, tax_breakdown...)
                hint = did_you_mean(name, by_body)
                problems.append(
                    f"{where}: unknown member {name!r}" + (f" ({hint})" if hint else "")
                )
                continue
            if target.read_only and target.name != child.key:
                continue
            if item is None:
                converted[target.body_path[0]] = None
                continue
            if target.type == "JSON":
                converted[target.body_path[0]] = item
                continue
            try:
                converted[target.body_path[0]] = coerce(
                    target.type, item, child.product, column=target.name
                )
            except DataError as exc:
                problems.append(f"{where}: {exc.message.replace('compared with', 'for')}")
        if child.key is None or converted.get(child.key) is None:
            # A new line: the members the definition requires of a line.
            missing = [m for m in line_required(child) if converted.get(m) in (None, "")]
            if missing:
                problems.append(f"{where}: {', '.join(missing)} required for a new line")
        out.append(converted)
    if problems:
        raise ValueError("; ".join(problems))
    return out


def convert_row(
    table: Table,
    columns: Sequence[Column | None],
    values: Iterable[Any],
    catalog: Catalog | None,
    problems: Problems,
    *,
    row: int | None,
    creating: bool,
) -> dict[Column, Any]:
    """The typed values of one row (columns that are None were reported already)."""
    out: dict[Column, Any] = {}
    for column, value in zip(columns, values, strict=True):
        if column is None:
            continue
        try:
            out[column] = convert(table, column, value, catalog, creating=creating)
        except ValueError as exc:
            problems.add(str(exc), row=row, column=column.name)
    check_view(table, out, problems, row=row, creating=creating)
    return out


def check_view(
    table: Table,
    values: dict[Column, Any],
    problems: Problems,
    *,
    row: int | None,
    creating: bool,
) -> None:
    """A view's own condition (``fixed_values``), like SQL's WITH CHECK OPTION: a create
    that does not give the column gets the view's value; a value outside the view is
    refused before anything is sent."""
    for name, wanted in table.fixed_values.items():
        column = table.column(name)
        if column not in values:
            if creating:
                values[column] = [wanted] if column.type == "JSON" else wanted
            continue
        given = values[column]
        held = given if isinstance(given, list) else [given]
        if wanted not in [str(v) for v in held]:
            shown = ", ".join(str(v) for v in held) or "none"
            problems.add(
                f"{table.name} holds only rows whose {name} is {wanted} (the view's condition, "
                f"as WITH CHECK OPTION), not {shown}: write it through "
                f"{table.resource} instead",
                row=row,
                column=name,
            )


def record_columns(
    table: Table, record: Mapping[str, Any], kind: str, problems: Problems
) -> tuple[list[Column | None], list[Any]]:
    """A record's (column, value) pairs for a create or update, the names checked."""
    names = list(record)
    return check_columns(table, names, kind, problems), [record[n] for n in names]
