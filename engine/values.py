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
DATE      'YYYY-MM-DD'                        what SQLite's date() returns
DATETIME  UTC 'YYYY-MM-DD HH:MM:SS', then     what SQLite's datetime() returns; returned
          '.fff' when the fraction is not     as ISO 8601 UTC ('...THH:MM:SSZ', Sage
          zero (Sage 200 keeps milliseconds)  200 '...SS.fffZ'), as the APIs write it
JSON      JSON text                           json_extract() works on it
========  ==================================  ========================================

Why this form of DATETIME. Statements compare stored values with three kinds of text:
literals, the results of SQLite's date and time functions (``datetime('now', '-1
day')``, ``datetime(created_at, '+1 day')``, ``date(updated_at)``) and other stored
values (of the same or another product, of a derived table). SQLite compares text
as text, so all three must be one form in which text order is time order and each
instant has one spelling:

- space, no zone: ``datetime()`` writes 'YYYY-MM-DD HH:MM:SS' (UTC, seconds), and it
  reads the stored form back unchanged, so ``updated_at = datetime(updated_at)`` holds
  for whole seconds and ``updated_at > datetime(created_at, '+1 day')`` is right;
- a fraction only when it is not zero: Sage 200 sends milliseconds, and '...:26.000'
  would sort after datetime()'s '...:26' although they are the same instant. Without
  '.000', the only text that starts with another is the same second with a fraction,
  which is later: so text order is time order at every precision, and equality is
  instant equality. The fraction has three digits (what strftime('%f') and
  ``'subsec'`` write), more only for a literal finer than a millisecond (trailing zeros
  after the third dropped), which then sorts strictly between the stored instants
  around it;
- a DATE is 'YYYY-MM-DD', a prefix of the DATETIMEs of its day: it sorts before all of
  them and after those of the day before, i.e. a date compares as its midnight UTC.

The same text holds for every product: only what an API sends is cut to its precision
(seconds for Accounting and CRM, milliseconds for Sage 200) before it is stored. What a
cursor, the CLI and the activities return is the ISO 8601 UTC text the product writes
(``iso_datetime``): the stored form never leaves the engine as a DATETIME column.

A literal compared with a DATE or DATETIME column (or with an expression of one: a
derived table's column, MIN/MAX, date()/datetime()) is rewritten into the stored form,
meaning an instant: '2025-01-01' against a DATETIME means midnight UTC,
'2025-01-01T10:00:00+02:00' means 08:00 UTC, '2025-01-01T10:00:00.5Z' keeps its
fraction. Against a DATE, an instant at midnight UTC is that date, any other instant
stays a DATETIME text (so that ``date >= '2025-01-01T10:00:00Z'`` starts on the 2nd):
SQLite then compares exactly as it compares DATE with DATETIME values.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import date, datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

import msgspec

from sagesql.connector import products
from sagesql.engine.isotime import parse_datetime
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


def datetime_text(value: datetime, product: str) -> str:
    """An instant as the product's API writes it: ISO 8601 UTC with a Z, to the second
    ('...THH:MM:SSZ'), or to the millisecond for Sage 200 ('...SS.fffZ')."""
    return products.get(product).datetime_text(value)


def _keeps_milliseconds(product: str | None) -> bool:
    return product in MILLISECOND_PRODUCTS


def _fraction(microsecond: int) -> str:
    """'' for a whole second, else '.fff' (more digits only when they are not zeros)."""
    if not microsecond:
        return ""
    return "." + f"{microsecond:06d}".rstrip("0").ljust(3, "0")


def stored_datetime(value: datetime) -> str:
    """An instant in the stored form: UTC 'YYYY-MM-DD HH:MM:SS[.fff]' (naive is UTC)."""
    value = value.astimezone(timezone.utc) if value.tzinfo else value
    return value.strftime("%Y-%m-%d %H:%M:%S") + _fraction(value.microsecond)


def api_instant(value: datetime, product: str) -> datetime:
    """An instant cut to what the product's API keeps (milliseconds or seconds)."""
    cut = value.microsecond - value.microsecond % 1000 if _keeps_milliseconds(product) else 0
    return value.replace(microsecond=cut)


_STORED_FORM = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d{3,6})?", re.ASCII).fullmatch


def iso_datetime(stored: Any, product: str | None = None) -> Any:
    """A stored DATETIME as ISO 8601 UTC text, as the product writes it ('...THH:MM:SSZ';
    Sage 200 always with milliseconds); anything not in the stored form as it is."""
    if stored.__class__ is not str or not _STORED_FORM(stored):
        return stored
    fraction = stored[19:]
    if not fraction and _keeps_milliseconds(product):
        fraction = ".000"
    return stored[:10] + "T" + stored[11:19] + fraction + "Z"


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
            return stored_datetime(api_instant(parse_datetime(str(raw)), product))
        if sql_type == "JSON":
            return _json_text(raw)
    except (ValueError, InvalidOperation, TypeError, OverflowError):  # int(1e400): inf
        return str(raw)
    return raw


_encode_json = msgspec.json.Encoder().encode


def _json_text(raw: Any) -> str:
    """A JSON column's stored text, compact: msgspec writes it fifteen times as fast as
    json.dumps, the same text but for a float's exponent (1e16, not 1e+16) and a
    non-finite float (null: JSON has no NaN)."""
    try:
        return _encode_json(raw).decode()
    except (TypeError, UnicodeEncodeError):  # not JSON's types, a lone surrogate
        return json.dumps(raw, ensure_ascii=False, separators=(",", ":"))


# A date-time as the APIs mostly send it, ISO 8601 UTC in the product's precision, is
# rewritten by slicing (to_storage would parse it and give the same text). Days after
# the 28th, hour 24 or second 60 take the slow path, which keeps invalid ones as sent.
_VALID_TIME = r"\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|1\d|2[0-8])T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d"
_API_DATETIME = {
    False: re.compile(_VALID_TIME + "Z", re.ASCII).fullmatch,
    True: re.compile(_VALID_TIME + r"\.\d{3}Z", re.ASCII).fullmatch,
}


# How Accounting writes money ("216.63"): float() gives what to_storage gives, faster.
_PLAIN_DECIMAL = re.compile(r"-?\d{1,20}(?:\.\d{1,20})?", re.ASCII).fullmatch


def storage_converter(sql_type: str, product: str) -> Callable[[Any], Any]:
    """``to_storage`` for one column type, with the same results, faster for the values
    the APIs usually send (rows are flattened by the million)."""
    if sql_type == "TEXT":
        return lambda raw: raw if raw.__class__ is str else to_storage("TEXT", raw, product)
    if sql_type == "DATETIME":
        millis = _keeps_milliseconds(product)
        sent = _API_DATETIME[millis]

        def convert(raw: Any) -> Any:
            if raw.__class__ is not str or not sent(raw):
                return to_storage("DATETIME", raw, product)
            if millis and raw[20:23] != "000":
                return raw[:10] + " " + raw[11:23]
            return raw[:10] + " " + raw[11:19]

        return convert
    if sql_type == "INTEGER":
        return lambda raw: raw if raw.__class__ is int else to_storage("INTEGER", raw, product)
    if sql_type == "DECIMAL":  # float(Decimal(str(x))) is x for a float, float(x) for an int
        # and for plain decimal text (both round the exact value once)
        return lambda raw: (
            float(raw)
            if raw.__class__ in (float, int) or (raw.__class__ is str and _PLAIN_DECIMAL(raw))
            else to_storage("DECIMAL", raw, product)
        )
    if sql_type == "JSON":
        return _json_text
    return lambda raw: to_storage(sql_type, raw, product)


def from_storage(sql_type: str | None, value: Any, product: str | None = None) -> Any:
    """The Python value a cursor returns for a result column of that type (a DATETIME:
    the ISO 8601 text of ``product``, see iso_datetime)."""
    if value is None or sql_type is None:
        return value
    if sql_type == "DECIMAL" and isinstance(value, (int, float)):
        return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    if sql_type == "BOOLEAN" and isinstance(value, int):
        return bool(value)
    if sql_type == "DATETIME":
        return iso_datetime(value, product)
    return value


def output_converter(sql_type: str, product: str | None = None) -> Callable[[Any], Any]:
    """``from_storage`` for one column type and a value that is not None, with the same
    results, without choosing the type again for every value (rows go out by the million)."""
    if sql_type == "DECIMAL":
        return lambda value: (
            Decimal(repr(value))
            if value.__class__ is float
            else Decimal(value)
            if isinstance(value, (int, float))
            else value
        )
    if sql_type == "BOOLEAN":
        return lambda value: bool(value) if isinstance(value, int) else value
    if sql_type == "DATETIME":
        return lambda value: iso_datetime(value, product)
    return lambda value: value


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


def comparison_value(sql_type: str, value: Any, product: str, *, column: str = "") -> Any:
    """A literal compared with a column (or an expression) of that type, as the Python
    value it means: ``coerce``, except that against a DATE a date-time literal means its
    instant (a datetime), unless that instant is midnight UTC (then the date)."""
    if sql_type == "DATE" and value is not None and not isinstance(value, date):
        text = str(value).strip()
        if len(text) > 10:
            try:
                instant = coerce("DATETIME", text, product, column=column)
            except DataError:
                return coerce(sql_type, value, product, column=column)
            return instant.date() if instant.timetz() == _MIDNIGHT else instant
    if sql_type == "DATE" and isinstance(value, datetime):
        instant = coerce("DATETIME", value, product, column=column)
        return instant.date() if instant.timetz() == _MIDNIGHT else instant
    return coerce(sql_type, value, product, column=column)


_MIDNIGHT = datetime(2000, 1, 1, tzinfo=timezone.utc).timetz()


def literal_storage(sql_type: str, value: Any, product: str) -> Any:
    """A coerced literal in the stored form (for rewriting the statement SQLite runs).

    A date-time keeps its full precision (the stored form sorts it between the stored
    instants around it); a date-time compared with a DATE stays a date-time text."""
    if value is None:
        return None
    if sql_type in ("DATE", "DATETIME") and isinstance(value, datetime):
        return stored_datetime(value if value.tzinfo else value.replace(tzinfo=timezone.utc))
    if sql_type in ("DATE", "DATETIME") and isinstance(value, date):
        return value.isoformat() if sql_type == "DATE" else stored_datetime(_midnight(value))
    if sql_type == "BOOLEAN" and isinstance(value, bool):
        return 1 if value else 0
    if isinstance(value, Decimal):
        return float(value)
    return value


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
