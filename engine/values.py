"""Column values: from API records into SQLite, from SQL literals into typed values, and out.

How each SQL type is kept in the local SQLite database, so that SQL behaves as a
SQLite user expects:

========  ==================================  ========================================
type      stored as                           why
========  ==================================  ========================================
TEXT      text
INTEGER   integer                             (Accounting sometimes sends "12")
DECIMAL   real (NUMERIC column)               compares as a number; Sage sends money as
                                              strings; returned as Decimal of the digits
BOOLEAN   0 / 1                               SQLite's booleans; returned as bool
DATE      'YYYY-MM-DD'                        sorts and compares chronologically
DATETIME  UTC 'YYYY-MM-DDTHH:MM:SSZ'          one fixed width per product (Sage 200 keeps
          ('...SS.fffZ' for Sage 200)          milliseconds), so text order is time order
JSON      JSON text                           json_extract() works on it
========  ==================================  ========================================

A literal compared with a DATE or DATETIME column is rewritten into the stored form:
'2025-01-01' against a DATETIME means midnight UTC; '2025-01-01T10:00:00+02:00' means
08:00 UTC. An instant finer than the product keeps ('...10:00:00.5Z' where Accounting keeps
seconds) becomes the stored text of the instant below it followed by the digits left over
('...10:00:00Z5'), which sorts strictly between the two stored instants around it, so
that =, <, >= and the others stay chronological.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import date, datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

from sagesql.connector import products
from sagesql.errors import DataError

# Products whose timestamps carry milliseconds (their modules say so).
MILLISECOND_PRODUCTS = frozenset(p.id for p in products.all_products() if p.keeps_milliseconds)

SQLITE_TYPES = {
    "TEXT": "TEXT",
    "INTEGER": "INTEGER",
    "DECIMAL": "NUMERIC",
    "BOOLEAN": "INTEGER",
    "DATE": "TEXT",
    "DATETIME": "TEXT",
    "JSON": "TEXT",
}


def parse_datetime(text: str) -> datetime:
    """An ISO-8601 date or date-time as aware UTC (no zone: UTC; a bare date: midnight)."""
    value = text.strip()
    if not value:
        raise ValueError("empty")
    if value[-1] in "Zz":
        value = value[:-1] + "+00:00"
    if " " in value and "T" not in value:
        value = value.replace(" ", "T", 1)
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


def datetime_text(value: datetime, product: str) -> str:
    return products.get(product).datetime_text(value)


def to_storage(sql_type: str, raw: Any, product: str) -> Any:
    """The SQLite value of an API value for a column of that type (None stays None).

    A value the API sent in a shape the type does not allow is kept as text rather than
    dropped, so that no data is silently lost.
    """
    if raw is None:
        return None
    try:
        if sql_type == "TEXT":
            return (
                raw
                if isinstance(raw, str)
                else (
                    json.dumps(raw, ensure_ascii=False)
                    if isinstance(raw, (dict, list))
                    else str(raw)
                )
            )
        if sql_type == "INTEGER":
            return int(raw)
        if sql_type == "DECIMAL":
            return float(Decimal(str(raw)))
        if sql_type == "BOOLEAN":
            if isinstance(raw, str):
                return 1 if raw.strip().lower() in ("true", "1", "yes") else 0
            return 1 if raw else 0
        if sql_type == "DATE":
            return str(raw)[:10]
        if sql_type == "DATETIME":
            return datetime_text(parse_datetime(str(raw)), product)
        if sql_type == "JSON":
            return json.dumps(raw, ensure_ascii=False, separators=(",", ":"))
    except (ValueError, InvalidOperation, TypeError, OverflowError):  # int(1e400): inf
        return str(raw)
    return raw


# A date-time already in the stored form, as the APIs mostly send it, is stored as it is
# (to_storage would parse it and write the same text back).
_STORED_DATETIME = {
    False: re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", re.ASCII).fullmatch,
    True: re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", re.ASCII).fullmatch,
}


def storage_converter(sql_type: str, product: str) -> Callable[[Any], Any]:
    """``to_storage`` for one column type, with the same results, faster for the values
    the APIs usually send (rows are flattened by the million)."""
    if sql_type == "TEXT":
        return lambda raw: raw if raw.__class__ is str else to_storage("TEXT", raw, product)
    if sql_type == "DATETIME":
        stored = _STORED_DATETIME[product in MILLISECOND_PRODUCTS]
        return lambda raw: (
            raw if raw.__class__ is str and stored(raw) else to_storage("DATETIME", raw, product)
        )
    if sql_type == "INTEGER":
        return lambda raw: raw if raw.__class__ is int else to_storage("INTEGER", raw, product)
    if sql_type == "DECIMAL":  # float(Decimal(str(x))) is x for a float, float(x) for an int
        return lambda raw: (
            float(raw) if raw.__class__ in (float, int) else to_storage("DECIMAL", raw, product)
        )
    return lambda raw: to_storage(sql_type, raw, product)


def from_storage(sql_type: str | None, value: Any) -> Any:
    """The Python value a cursor returns for a result column of that type."""
    if value is None or sql_type is None:
        return value
    if sql_type == "DECIMAL" and isinstance(value, (int, float)):
        return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    if sql_type == "BOOLEAN" and isinstance(value, int):
        return bool(value)
    return value


def coerce(sql_type: str, value: Any, product: str, *, column: str = "") -> Any:
    """A literal compared with a column, as a Python value of the column's type.

    Raises DataError naming the column when the literal cannot be one (a date column
    compared with 'yesterday').
    """
    if value is None:
        return None
    try:
        if sql_type == "TEXT":
            return value if isinstance(value, str) else str(value)
        if sql_type == "INTEGER":
            if isinstance(value, bool):
                return int(value)
            number = Decimal(str(value))
            return int(number) if number == number.to_integral_value() else number
        if sql_type == "DECIMAL":
            return Decimal(str(value))
        if sql_type == "BOOLEAN":
            if isinstance(value, str):
                lowered = value.strip().lower()
                if lowered in ("true", "1"):
                    return True
                if lowered in ("false", "0"):
                    return False
                raise ValueError(value)
            return bool(value)
        if sql_type == "DATE":
            if isinstance(value, datetime):
                return value.date()
            return date.fromisoformat(str(value).strip()[:10])
        if sql_type == "DATETIME":
            if isinstance(value, datetime):
                return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
            return parse_datetime(str(value))
    except (ValueError, InvalidOperation) as exc:
        kind = {
            "DATE": "a date (YYYY-MM-DD)",
            "DATETIME": "a date or date-time (ISO 8601)",
            "INTEGER": "a whole number",
            "DECIMAL": "a number",
            "BOOLEAN": "TRUE or FALSE",
        }.get(sql_type, sql_type)
        raise DataError(
            f"{value!r} is not {kind}" + (f" (compared with {column})" if column else ""),
            hint="write the value in that form",
        ) from exc
    return value


def literal_storage(sql_type: str, value: Any, product: str) -> Any:
    """A coerced literal in the stored form (for rewriting the statement SQLite runs)."""
    if value is None:
        return None
    if sql_type == "DATETIME" and isinstance(value, datetime):
        rest = value.microsecond % 1000 if product in MILLISECOND_PRODUCTS else value.microsecond
        digits = f"{rest:03d}" if product in MILLISECOND_PRODUCTS else f"{rest:06d}"
        return datetime_text(value, product) + (digits.rstrip("0") if rest else "")
    if sql_type == "DATE" and isinstance(value, date):
        return value.isoformat()
    if sql_type == "BOOLEAN" and isinstance(value, bool):
        return 1 if value else 0
    if isinstance(value, Decimal):
        return float(value)
    return value
