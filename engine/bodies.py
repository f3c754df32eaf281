"""Write bodies: typed column values turned into the product's request body, and keys read back.

A value goes where its column's ``body_path`` says (``write_path`` when the API takes a
link as ``contact_id``, else the column's own path, nested: ``main_address.city``),
and the body is wrapped in the operation's envelope when it has one (Accounting's
``{"contact": {...}}``; Sage 200 and CRM take bare JSON). Only the values given are
sent. JSON values follow each product's definition: numbers as JSON numbers (exact
decimals as the nearest double, which keeps every money amount), dates as
``YYYY-MM-DD``, date-times as the product writes them (UTC ``Z``; milliseconds for
Sage 200).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sagesql.connector.transport import path_with
from sagesql.engine.fetch import extract
from sagesql.engine.values import datetime_text
from sagesql.schemas.catalog import Column, Operation, Table


def jsonable(value: Any, product: str) -> Any:
    """A typed value (recursively) as the JSON the product takes."""
    if isinstance(value, bool) or value is None or isinstance(value, (str, int, float)):
        return value
    if isinstance(value, Decimal):
        if value == value.to_integral_value() and abs(value) < 2**53:
            return int(value)
        return float(value)
    if isinstance(value, datetime):
        return datetime_text(value, product)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): jsonable(v, product) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v, product) for v in value]
    return str(value)


def _set(body: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = body
    for part in path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[path[-1]] = value


def body(operation: Operation, values: Mapping[Column, Any], product: str) -> dict[str, Any]:
    """The request body of a create or update setting exactly these columns."""
    inner: dict[str, Any] = {}
    for column, value in values.items():
        _set(inner, column.body_path, jsonable(value, product))
    return {operation.envelope: inner} if operation.envelope else inner


def path(operation: Operation, key: Any) -> str:
    """The operation's path for one record (its key quoted into ``{key}``; DataError for
    a key that would change the target, such as ``..``: see ``transport.path_with``)."""
    return path_with(operation.path, {"key": key})


def record_key(table: Table, record: Any) -> Any:
    """The key of a record the API answered (Sage 200 postings answer ``{"urn": ...}``)."""
    if not isinstance(record, Mapping):
        return None
    if table.key and table.has_column(table.key):
        found = extract(record, table.column(table.key).path)
        if found is not None:
            return found
    for name in ("id", "urn", "$key"):
        if record.get(name) is not None and not isinstance(record[name], (dict, list)):
            return record[name]
    return None
