"""Activity schemas: JSON Schema of each activity's input and output, from the table definition.

An integration tool maps its fields with these (``sagesql schema contacts --activity
create``). They say what the activities check:

- ``create``: one record of the writable columns; ``required`` lists what a create
  needs (as validation.required: a view's own condition is supplied); lines of a
  document (``invoice_lines``) are arrays of line objects in write form
  (``ledger_account_id``), a new line (without its key) requiring what validation
  requires of it (validation.line_required); link-id arrays (``contact_types``) are
  arrays of ids, or one id;
- ``update``: the key and any writable columns (only those given are sent);
- ``delete``: the key (and ``void_reason`` where Sage voids instead of deleting);
- ``query``: the table, fields, conditions, order, limit and offset; its output is
  one record of the table's columns;
- ``execute`` (of a procedure): its parameters; its output, the procedure's result.

Outputs of create, update, delete and execute are one result per record: index,
status, key, record (the table's columns), error (message, status, field errors).
"""

from __future__ import annotations

from typing import Any

from sagesql.activities.query import OPERATORS
from sagesql.activities.results import STATUSES
from sagesql.engine import validation
from sagesql.errors import ProgrammingError
from sagesql.schemas.catalog import Catalog, Column, Procedure, Table

DIALECT = "https://json-schema.org/draft/2020-12/schema"
ACTIVITIES = ("create", "update", "delete", "query", "execute")
KIND = {"create": "INSERT", "update": "UPDATE", "delete": "DELETE"}

TYPES: dict[str, dict[str, Any]] = {
    "TEXT": {"type": "string"},
    "INTEGER": {"type": "integer"},
    "DECIMAL": {"type": "number"},
    "BOOLEAN": {"type": "boolean"},
    "DATE": {"type": "string", "format": "date"},
    "DATETIME": {"type": "string", "format": "date-time"},
    "JSON": {},
}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    kind = schema.get("type")
    if isinstance(kind, str):
        return {**schema, "type": [kind, "null"]}
    if isinstance(kind, list) and "null" not in kind:
        return {**schema, "type": [*kind, "null"]}
    return schema


def column_schema(column: Column, *, nullable: bool = True) -> dict[str, Any]:
    """A column's value as the activities read and write it."""
    schema = dict(TYPES[column.type])
    if column.description:
        schema["description"] = column.description
    if column.max_length:
        schema["maxLength"] = column.max_length
    if column.enum:
        schema["enum"] = [*column.enum, None] if nullable else list(column.enum)
    if column.read_only:
        schema["readOnly"] = True
    return _nullable(schema) if nullable and column.type != "JSON" else schema


def record_schema(table: Table) -> dict[str, Any]:
    """One row of the table, as Query yields it and results carry it."""
    return {
        "type": "object",
        "title": f"{table.name} record",
        "properties": {
            c.name: column_schema(c) for c in table.columns if not c.path[0].startswith("$parent")
        },
        "additionalProperties": False,
    }


def _input_column(table: Table, column: Column, catalog: Catalog | None) -> dict[str, Any]:
    schema = column_schema(column, nullable=not column.required_on_create)
    schema.pop("readOnly", None)
    if column.type != "JSON":
        return schema
    if column.body_path[-1].endswith("_ids"):
        schema.update(
            {
                "type": ["array", "string"],
                "items": {"type": "string"},
                "description": (column.description + " ").lstrip()
                + "(an array of ids, or its JSON text)",
            }
        )
        return schema
    child = validation.line_table(table, column, catalog)
    if child is None:
        schema["description"] = (column.description + " ").lstrip() + "(JSON, or its JSON text)"
        return schema
    members = {}
    for c in child.columns:
        if c.path[0].startswith("$") or (c.read_only and c.name != child.key):
            continue
        if len(c.body_path) == 1:
            item = column_schema(c)
            item.pop("readOnly", None)
            members[c.body_path[0]] = item
    items: dict[str, Any] = {"type": "object", "properties": members}
    needed = validation.line_required(child)
    if needed:
        # As validation checks: a new line (no key) gives these, each not null or empty.
        not_empty: dict[str, Any] = {m: {"not": {"enum": [None, ""]}} for m in needed}
        given: dict[str, Any] = {"required": needed, "properties": not_empty}
        if child.key is not None and child.key in members:
            existing = {
                "required": [child.key],
                "properties": {child.key: {"not": {"type": "null"}}},
            }
            items["anyOf"] = [existing, given]
        else:
            items.update({"required": needed, "properties": {**members, **not_empty}})
    schema.update(
        {
            "type": ["array", "string"],
            "description": f"the lines ({child.name}), an array or its JSON text",
            "items": items,
        }
    )
    return schema


def _key_schema(table: Table) -> dict[str, Any]:
    column = table.column(table.key) if table.key else None
    if column is None:
        return {}
    schema = column_schema(column, nullable=False)
    schema.pop("readOnly", None)
    return schema


def input_schema(table: Table, activity: str, catalog: Catalog | None = None) -> dict[str, Any]:
    """What one input record of the activity holds."""
    activity = _check(activity)
    if activity == "query":
        return _query_input(table)
    kind = KIND[activity]
    validation.operation(table, kind)  # NotSupportedError when the table cannot
    properties: dict[str, Any] = {}
    required: list[str] = []
    keyed = "{key}" in table.operations[validation.OPERATIONS[kind]].path
    if kind in ("UPDATE", "DELETE") and keyed and table.key:
        properties[table.key] = _key_schema(table)
        required.append(table.key)
    if kind in ("INSERT", "UPDATE"):
        for column in table.columns:
            if validation.writable(column, kind, table):
                properties[column.name] = _input_column(table, column, catalog)
        if kind == "INSERT":
            required += [c.name for c in validation.required(table)]
    if (
        kind == "DELETE"
        and table.has_column("status_id")
        and any(str(p.request.get("method", "")).upper() == "DELETE" for p in table.procedures)
    ):
        properties["void_reason"] = {
            "type": "string",
            "description": "Why the document is voided: Sage voids a document that is not a "
            "draft (without a reason, only drafts are deleted)",
        }
    schema: dict[str, Any] = {
        "$schema": DIALECT,
        "title": f"{activity} {table.name}: one input record",
        "type": "object",
        "properties": properties,
        "required": required,
        # Delete ignores the other members of a record (a whole row may be passed).
        "additionalProperties": kind == "DELETE",
    }
    return schema


def _query_input(table: Table) -> dict[str, Any]:
    names = [c.name for c in table.columns if not c.path[0].startswith("$parent")]
    return {
        "$schema": DIALECT,
        "title": f"query {table.name}: the query",
        "type": "object",
        "properties": {
            "statement": {"type": "string", "description": "a SELECT (instead of the others)"},
            "fields": {"type": "array", "items": {"enum": names}, "uniqueItems": True},
            "conditions": {
                "description": "column: value (= ; a list: IN; null: IS NULL), or "
                "[column, operator, value] triples",
                "oneOf": [
                    {"type": "object", "propertyNames": {"enum": names}},
                    {
                        "type": "array",
                        "items": {
                            "type": "array",
                            "prefixItems": [{"enum": names}, {"enum": list(OPERATORS)}, {}],
                            "minItems": 2,
                            "maxItems": 3,
                        },
                    },
                ],
            },
            "order_by": {
                "type": "array",
                "items": {"enum": names + [f"-{n}" for n in names]},
                "description": "columns; -name for descending",
            },
            "limit": {"type": "integer", "minimum": 0},
            "offset": {"type": "integer", "minimum": 0},
        },
        "additionalProperties": False,
    }


def error_schema() -> dict[str, Any]:
    return {
        "type": ["object", "null"],
        "properties": {
            "message": {"type": "string"},
            "status": {"type": ["integer", "null"], "description": "the HTTP status"},
            "errors": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "field": {"type": ["string", "null"]},
                        "message": {"type": "string"},
                    },
                    "required": ["field", "message"],
                },
            },
            "hint": {"type": ["string", "null"]},
        },
        "required": ["message", "status", "errors"],
    }


def result_schema(title: str, record: dict[str, Any], key: dict[str, Any]) -> dict[str, Any]:
    return {
        "$schema": DIALECT,
        "title": title,
        "type": "object",
        "properties": {
            "index": {"type": "integer", "minimum": 0, "description": "0-based input position"},
            "status": {"enum": list(STATUSES)},
            "key": _nullable(key) if key.get("type") not in (None, "null") else key,
            "record": {"anyOf": [record, {"type": "null"}]},
            "error": error_schema(),
        },
        "required": ["index", "status", "key", "record", "error"],
        "additionalProperties": False,
    }


def output_schema(table: Table, activity: str) -> dict[str, Any]:
    """What the activity gives per input record (per row, for query)."""
    activity = _check(activity)
    if activity == "query":
        return {"$schema": DIALECT, **record_schema(table)}
    validation.operation(table, KIND[activity])
    key = _key_schema(table) if table.key else {"type": ["string", "integer"]}
    return result_schema(
        f"{activity} {table.name}: one result per record", record_schema(table), key
    )


def procedure_schemas(procedure: Procedure) -> dict[str, Any]:
    """The Execute activity's input and output for a procedure."""
    properties = {}
    for p in procedure.parameters:
        schema = dict(TYPES.get(p.type, {}))
        if p.description:
            schema["description"] = p.description
        if p.enum:
            schema["enum"] = list(p.enum)
        if p.default is not None:
            schema["default"] = p.default
        properties[p.name] = schema
    record = {
        "type": "object",
        "properties": {
            name: {**TYPES.get(kind, {}), "description": text} if text else TYPES.get(kind, {})
            for name, kind, text in procedure.result_columns
        },
    }
    return {
        "input": {
            "$schema": DIALECT,
            "title": f"execute {procedure.name}: one record of parameters",
            "type": "object",
            "properties": properties,
            "required": [p.name for p in procedure.parameters if p.required],
            "additionalProperties": False,
        },
        "output": result_schema(
            f"execute {procedure.name}: one result per record", record, {"type": "null"}
        ),
    }


def _check(activity: str) -> str:
    wanted = activity.strip().lower()
    if wanted not in ACTIVITIES:
        raise ProgrammingError(
            f"unknown activity {activity!r}", hint=f"use one of {', '.join(ACTIVITIES)}"
        )
    if wanted == "execute":
        raise ProgrammingError(
            "execute describes a procedure, not a table",
            hint="name the procedure: sagesql schema VoidSalesInvoice --activity execute",
        )
    return wanted
