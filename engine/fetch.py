"""Fetching: a scan's requests made through the transport, records flattened into rows.

Rows are tuples in the order of ``scan.columns``, each value in its stored form
(values.to_storage). Records are read lazily, page by page: a consumer that stops
early stops the paging.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from sagesql.connector.products import paginator_for
from sagesql.connector.seams import Transport
from sagesql.connector.transport import path_with
from sagesql.engine import progress
from sagesql.engine.plan import Scan
from sagesql.engine.values import storage_converter
from sagesql.errors import APIError, NotSupportedError
from sagesql.schemas.catalog import Column, Table

PARENT = "$parent"


def extract(
    record: Mapping[str, Any], path: Sequence[str], parent: Mapping[str, Any] | None = None
) -> Any:
    """The value at a column's JSON path (``$parent`` starts at the parent record)."""
    node: Any = record
    if path and path[0] == PARENT:
        node, path = parent, path[1:]
    for key in path:
        if not isinstance(node, Mapping):
            return None
        node = node.get(key)
    return node


# A scale beyond this is noise (a float's binary tail), not how the API writes the number.
MAX_SCALE = 12


def decimal_places(raw: Any) -> int:
    """The digits after the point of a number as the API wrote it ("7800.00": 2)."""
    text = raw if raw.__class__ is str else repr(raw) if raw.__class__ is float else ""
    dot = text.find(".")
    if dot < 0:
        return 0
    places = len(text) - dot - 1
    return places if places <= MAX_SCALE and text[dot + 1 :].isdigit() else 0


def _noting_scale(convert: Any, scales: dict[str, int], name: str) -> Any:
    def note(raw: Any) -> Any:
        places = decimal_places(raw)
        if places > scales.get(name, 0):
            scales[name] = places
        return convert(raw)

    return note


def flattener(
    table: Table, names: Sequence[str], scales: dict[str, int] | None = None
) -> Callable[..., tuple[Any, ...]]:
    """A function from (record, parent record) to the row of those columns.

    ``scales``, when given, gets each DECIMAL column's largest number of decimal places
    the API wrote ("7800.00": 2): SQLite keeps the number, not how it was written, and
    the result gives it back with that scale (local.py).
    """
    columns: list[Column] = [table.column(n) for n in names]
    product = table.product
    # A top-level field is read with one dict lookup; nested ones walk their path.
    specs = [
        (c.path[0] if len(c.path) == 1 and c.path[0] != PARENT else None, c.path) for c in columns
    ]
    convert = [storage_converter(c.type, product) for c in columns]
    if scales is not None:
        for i, c in enumerate(columns):
            if c.type == "DECIMAL":
                convert[i] = _noting_scale(convert[i], scales, c.name)
    keys = [key for key, _ in specs]
    top_keys = [key for key in keys if key is not None]

    def flatten(record: Mapping[str, Any], parent: Mapping[str, Any] | None = None) -> tuple:
        values = [
            record.get(key) if key is not None else extract(record, path, parent)
            for key, path in specs
        ]
        return tuple([None if v is None else f(v) for f, v in zip(convert, values, strict=True)])

    def flatten_top(record: Mapping[str, Any], parent: Mapping[str, Any] | None = None) -> tuple:
        values = map(record.get, top_keys)  # every column a top-level field: the common case
        return tuple([None if v is None else f(v) for f, v in zip(convert, values, strict=True)])

    return flatten_top if None not in keys else flatten


def _get_one(transport: Transport, table: Table, key: Any) -> dict[str, Any] | None:
    path = path_with(table.operations["get"].path, {"key": key})
    try:
        record = transport.get_json(path)
    except APIError as exc:
        if getattr(exc, "status", None) == 404:
            return None
        raise
    return record if isinstance(record, dict) else None


def records(
    scan: Scan, transport: Transport, *, page_size: int | None, parallel: bool
) -> Iterator[dict[str, Any]]:
    """The records of the table the scan requests (the parent, for a line table)."""
    table = scan.source or scan.table
    if scan.keys is not None:
        for key in scan.keys:
            found = _get_one(transport, table, key)
            if found is not None:
                yield found
        return
    listing = table.operations.get("list")
    if listing is None:
        raise NotSupportedError(
            f"{table.name} cannot be read: the API only accepts new records there",
            hint=f"read them back from the table its description names "
            f"('sagesql describe {table.name}')",
        )
    yield from _listing(
        table,
        scan.pushed.params,
        transport,
        page_size=page_size,
        limit=scan.limit,
        parallel=parallel and scan.limit is None,
        offset=scan.offset,
    )


def _listing(
    table: Table,
    params: Mapping[str, str],
    transport: Transport,
    *,
    page_size: int | None,
    limit: int | None = None,
    parallel: bool = False,
    offset: int = 0,
) -> Iterator[dict[str, Any]]:
    """The records of the table's list request with these parameters, page by page."""
    path = table.operations["list"].path
    if table.paging.style == "none":
        data = transport.get_json(path, params=params)
        yield from (data if isinstance(data, list) else [data] if data else [])
        return
    size = min(page_size or table.paging.max_page_size, table.paging.max_page_size)
    paginator = progress.observed(paginator_for(table))
    yield from transport.records(
        path,
        params,
        paginator,
        page_size=size,
        limit=limit,
        parallel=parallel,
        offset=offset,
    )


def rows(
    scan: Scan,
    transport: Transport,
    *,
    page_size: int | None = None,
    parallel: bool = False,
    scales: dict[str, int] | None = None,
) -> Iterator[tuple[Any, ...]]:
    """The scan's rows, lazily (``scales``: see flattener)."""
    flatten = flattener(scan.table, scan.columns, scales)
    parent = scan.table.parent
    for record in records(scan, transport, page_size=page_size, parallel=parallel):
        if parent is None:
            yield flatten(record)
            continue
        lines = extract(record, parent.path)
        for line in lines if isinstance(lines, list) else []:
            if isinstance(line, Mapping):
                yield flatten(line, record)


def total(scan: Scan, transport: Transport) -> int | None:
    """The number of records the scan's list request would return, from the API's own
    total: a one-record page's envelope, or Sage 200's $count. None when it gives none."""
    table = scan.source or scan.table
    listing = table.operations["list"]
    paginator = paginator_for(table)
    if table.paging.total == "count_request":
        return transport.count(listing.path, scan.pushed.params, paginator)
    request = paginator.first(listing.path, scan.pushed.params, 1)
    page = paginator.parse(transport.get_json(request.path, params=request.params), request)
    return page.total


def deleted(
    table: Table,
    columns: Sequence[str],
    transport: Transport,
    since: str,
    *,
    page_size: int | None = None,
) -> Iterator[tuple[tuple[Any, ...], dict[str, Any]]]:
    """The tombstones the API reports for records deleted since ``since`` (the text of the
    table's deletions parameter), lazily: each as the row of ``columns`` and the record.

    The same listing as a scan's (the table's fixed parameters, its paging), with the
    deletions parameter beside them."""
    deletions = table.deletions
    if deletions is None:
        raise NotSupportedError(
            f"{table.name}: the API reports no deletions",
            hint="compare the keys of two scans to find deleted records",
        )
    params = {**table.fixed_parameters, deletions.parameter: since}
    flatten = flattener(table, columns)
    for record in _listing(table, params, transport, page_size=page_size):
        yield flatten(record), record
