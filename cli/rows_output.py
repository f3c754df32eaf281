"""Writing result rows: a terminal table, a JSON array, JSON lines or CSV, streaming where it can.

The table is for a person at a terminal (terminal.py: a grid, or records when the
columns do not fit); JSON, JSON lines and CSV are for tools and files and stream.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from datetime import date, datetime
from decimal import Decimal
from json.encoder import encode_basestring
from typing import IO, Any

import msgspec

_encode_text = encode_basestring  # what json.dumps(ensure_ascii=False) does to a str
# The common types, one call each: rows go out by the million.
_FAST: dict[type, Any] = {
    str: _encode_text,
    int: int.__repr__,
    bool: lambda v: "true" if v else "false",
    type(None): lambda v: "null",
}


def _value_json(value: Any) -> str:
    """One value as JSON; a Decimal keeps its exact digits as a JSON number."""
    fast = _FAST.get(type(value))
    if fast is not None:
        return fast(value)
    if isinstance(value, Decimal) and value.is_finite():
        return format(value, "f")
    if isinstance(value, (date, datetime)):
        return json.dumps(value.isoformat())
    if isinstance(value, bytes):
        return json.dumps(value.hex())
    if isinstance(value, (str, int, float, bool)) or value is None:
        return json.dumps(value, ensure_ascii=False)
    return json.dumps(str(value), ensure_ascii=False)


def _keys(names: list[str]) -> list[str]:
    """Each column's ``"name":`` prefix, encoded once."""
    return [_encode_text(n) + ":" for n in names]


def _object(keys: list[str], row: tuple[Any, ...]) -> str:
    fast = _FAST.get
    return (
        "{"
        + ",".join(
            [
                k + (f(v) if (f := fast(v.__class__)) is not None else _value_json(v))
                for k, v in zip(keys, row, strict=True)
            ]
        )
        + "}"
    )


_encode = msgspec.json.Encoder().encode
# The values msgspec writes exactly as _value_json does (a Decimal goes in as Raw text).
_PLAIN = frozenset({str, int, bool, type(None), msgspec.Raw})


def _objects(columns: list[Any], encoding: str | None = None, errors: str = "strict") -> Any:
    """A function writing a row as a JSON object, compact: ``{"name":value,...}``.

    Rows of plain values (text, whole numbers, booleans, nulls, Decimals) are encoded
    by msgspec in one call, twice as fast as value by value (a wide SELECT * spent a
    fifth of its time here); any other row (a float, a date, bytes...) by _object.

    ``encoding`` ("utf-8" only): the function gives that text's bytes instead, encoded
    with ``errors`` (msgspec writes UTF-8 itself: no decoding and encoding again)."""
    names = [c.name for c in columns]
    keys = _keys(names)
    as_bytes = encoding is not None
    if len(set(names)) < len(names):  # a dict would keep one of each name
        if as_bytes:
            return lambda row: _object(keys, row).encode("utf-8", errors)
        return lambda row: _object(keys, row)
    # Only these columns can hold a Decimal (a DECIMAL column, or an expression).
    decimals = [
        i for i, c in enumerate(columns) if getattr(c, "sql_type", None) in (None, "DECIMAL")
    ]

    def one(row: tuple[Any, ...]) -> str | bytes:
        values: Any = row
        if decimals:
            values = list(row)
            for i in decimals:
                if values[i].__class__ is Decimal:
                    values[i] = msgspec.Raw(_value_json(values[i]))
        if _PLAIN.issuperset(map(type, values)):
            try:
                encoded = _encode(dict(zip(names, values, strict=True)))
                return encoded if as_bytes else encoded.decode()
            except UnicodeEncodeError:  # a lone surrogate: written as json.dumps does
                pass
        text = _object(keys, row)
        return text.encode("utf-8", errors) if as_bytes else text

    return one


# Bytes gathered before they go to the file (the text layer's 8 KiB cost a system call
# every other line of a wide SELECT *).
CHUNK_BYTES = 64 * 1024


def _binary(out: IO[str]) -> Any:
    """The byte stream under ``out`` when JSON lines can go straight to it, as the text
    layer would write them: UTF-8, no newline translation, not line by line."""
    import codecs
    import os

    buffer = getattr(out, "buffer", None)
    encoding = getattr(out, "encoding", None)
    if buffer is None or not isinstance(encoding, str) or os.linesep != "\n":
        return None
    if getattr(out, "line_buffering", True) or not callable(getattr(buffer, "write", None)):
        return None
    try:
        if codecs.lookup(encoding).name != "utf-8":
            return None
    except LookupError:
        return None
    return buffer


MASK = "********"


def _masked(rows: Iterator[tuple[Any, ...]], secret: list[int]) -> Iterator[tuple[Any, ...]]:
    for row in rows:
        yield tuple(MASK if i in secret and v is not None else v for i, v in enumerate(row))


def write(
    result: Any,
    fmt: str,
    out: IO[str],
    *,
    progress: Any = None,
    show_secrets: bool = False,
    width: int | None = None,
) -> int:
    """Write every row; returns how many. Streams for jsonl and csv. Secret columns (tokens
    a procedure returns) are masked unless ``show_secrets``. ``progress`` (a line on the
    terminal, cli/progress.py) is closed before the table is drawn; ``width``: the
    table's, by default the terminal's."""
    names = [c.name for c in result.columns]
    secret = [i for i, c in enumerate(result.columns) if getattr(c, "secret", False)]
    count = 0
    as_object = _objects(result.columns)
    try:
        rows = iter(result.rows)
        if secret and not show_secrets:
            rows = _masked(rows, secret)
        binary = _binary(out) if fmt == "jsonl" else None
        if binary is not None:
            count = _jsonl_bytes(result.columns, rows, out, binary)
        elif fmt == "jsonl":
            for row in rows:
                out.write(as_object(row) + "\n")
                count += 1
        elif fmt == "csv":
            writer = csv.writer(out)
            writer.writerow(names)
            for row in rows:
                writer.writerow(["" if v is None else _text(v) for v in row])
                count += 1
        elif fmt == "json":
            out.write("[")
            for row in rows:
                out.write(("," if count else "") + "\n  " + as_object(row))
                count += 1
            out.write("\n]\n" if count else "]\n")
        else:
            collected = list(rows)
            count = len(collected)
            if progress is not None:
                progress.close()
            import shutil

            from sagesql.cli import terminal

            shown = width or shutil.get_terminal_size().columns
            out.write(terminal.render(names, collected, width=shown) + "\n")
    finally:
        if progress is not None:
            progress.close()
    return count


def _jsonl_bytes(
    columns: list[Any], rows: Iterator[tuple[Any, ...]], out: IO[str], binary: Any
) -> int:
    """JSON lines written as bytes to ``binary``, the stream under ``out``, in chunks."""
    as_bytes = _objects(columns, "utf-8", getattr(out, "errors", None) or "strict")
    out.flush()  # whatever the text layer holds goes first
    count = 0
    pending: list[bytes] = []
    size = 0
    try:
        for row in rows:
            line = as_bytes(row)
            pending.append(line)
            pending.append(b"\n")
            size += len(line)
            count += 1
            if size >= CHUNK_BYTES:
                binary.write(b"".join(pending))
                pending.clear()
                size = 0
    finally:
        if pending:
            binary.write(b"".join(pending))
        binary.flush()
    return count


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value)
