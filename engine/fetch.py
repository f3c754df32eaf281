"""Fetching: a scan's requests made through the transport, records flattened into rows.

Rows are tuples in the order of ``scan.columns``, each value in its stored form
(values.to_storage). Records are read lazily, page by page: a consumer that stops
early stops the paging.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import MappingProxyType
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
    """``convert``, noting in ``scales[name]`` the most decimal places seen. A value that
    cannot have more places than already noted costs one ``find``."""
    best = [scales.get(name, 0)]

    def note(raw: Any) -> Any:
        if raw.__class__ is str:
            dot = raw.find(".")
            if dot >= 0 and len(raw) - dot - 1 > best[0]:
                places = decimal_places(raw)
                if places > best[0]:
                    best[0] = scales[name] = places
        elif raw.__class__ is float:
            places = decimal_places(raw)
            if places > best[0]:
                best[0] = scales[name] = places
        return convert(raw)

    return note


_EMPTY: Mapping[str, Any] = MappingProxyType({})


def _node(value: Any) -> Mapping[str, Any]:
    """A value on the way down a path: itself when it is an object, else an empty one."""
    if value is None:  # an absent object, the usual case here: no ABC check
        return _EMPTY
    return value if isinstance(value, Mapping) else _EMPTY


# How a value of each type is tested for the form the API usually sends, which is kept
# as it is (the converter gives the same; it runs for anything else).
_KEPT = {
    "TEXT": "{v}.__class__ is str",
    "INTEGER": "{v}.__class__ is int",
}


def flattener(
    table: Table, names: Sequence[str], scales: dict[str, int] | None = None
) -> Callable[..., tuple[Any, ...]]:
    """A function from (record, parent record) to the row of those columns.

    Compiled once per table and columns: Python source with one dict lookup per field,
    each nested object looked up once for all its columns (an object checked with
    ``__class__ is dict``, anything else through ``Mapping``), and each column's
    converter (values.storage_converter) called only for a value not already in its
    stored form. The same values as ``extract`` then ``to_storage`` per column.

    ``scales``, when given, gets each DECIMAL column's largest number of decimal places
    the API wrote ("7800.00": 2): SQLite keeps the number, not how it was written, and
    the result gives it back with that scale (local.py).
    """
    columns: list[Column] = [table.column(n) for n in names]
    product = table.product
    convert = [storage_converter(c.type, product) for c in columns]
    if scales is not None:
        for i, c in enumerate(columns):
            if c.type == "DECIMAL":
                convert[i] = _noting_scale(convert[i], scales, c.name)
    code = _flatten_code(tuple(tuple(c.path) for c in columns), tuple(c.type for c in columns))
    namespace: dict[str, Any] = {"_node": _node, "_dict": dict, "_EMPTY": _EMPTY}
    namespace.update((f"c{i}", f) for i, f in enumerate(convert))
    exec(code, namespace)  # the source is _flatten_code's: names and repr()s of the paths
    flatten: Callable[..., tuple[Any, ...]] = namespace["flatten"]
    return flatten


@functools.lru_cache(maxsize=256)
def _flatten_code(paths: tuple[tuple[str, ...], ...], types: tuple[str, ...]) -> Any:
    """The compiled ``flatten(record, parent=None)`` for columns at these paths and types."""
    lines = ["def flatten(record, parent=None):"]
    if any(path[:1] == (PARENT,) for path in paths):
        lines.append("    parent_ = parent if parent.__class__ is _dict else _node(parent)")
    # The objects on the columns' paths, as a tree from the record (and the parent):
    # an absent object (the usual case for many) sets all the columns under it to None
    # at once instead of looking each up in an empty mapping.
    fields: dict[tuple[str, ...], list[tuple[int, str]]] = {(): [], (PARENT,): []}
    children: dict[tuple[str, ...], list[tuple[str, ...]]] = {(): [], (PARENT,): []}
    for i, path in enumerate(paths):
        if path and path != (PARENT,):
            prefix = path[:-1]
            while prefix not in fields:  # an object not seen before, and those above it
                fields[prefix] = []
                children.setdefault(prefix, [])
                children.setdefault(prefix[:-1], []).append(prefix)
                prefix = prefix[:-1]
            fields[path[:-1]].append((i, path[-1]))
    count = [0]

    def under(prefix: tuple[str, ...]) -> list[int]:
        found = [i for i, _ in fields[prefix]]
        for child in children[prefix]:
            found += under(child)
        return found

    def emit(prefix: tuple[str, ...], var: str, indent: str) -> None:
        for i, key in fields[prefix]:
            lines.append(f"{indent}v{i} = {var}.get({key!r})")
        for child in children[prefix]:
            count[0] += 1
            name = f"n{count[0]}"
            lines.append(f"{indent}{name} = {var}.get({child[-1]!r})")
            lines.append(f"{indent}if {name}.__class__ is not _dict: {name} = _node({name})")
            lines.append(f"{indent}if {name} is _EMPTY:")
            lines.append(f"{indent}    " + "".join(f"v{i} = " for i in under(child)) + "None")
            lines.append(f"{indent}else:")
            emit(child, name, indent + "    ")

    for i, path in enumerate(paths):
        if not path or path == (PARENT,):  # the record itself (sagesql_record)
            lines.append(f"    v{i} = {'parent' if path else 'record'}")
    emit((), "record", "    ")
    if fields[(PARENT,)] or children[(PARENT,)]:
        emit((PARENT,), "parent_", "    ")
    values = []
    for i, sql_type in enumerate(types):
        kept = _KEPT.get(sql_type)
        test = f"v{i} if {kept.format(v=f'v{i}')} else " if kept else ""
        if sql_type == "BOOLEAN":  # JSON's true and false, stored as 1 and 0 (to_storage)
            test = f"1 if v{i} is True else 0 if v{i} is False else "
        values.append(f"({test}None if v{i} is None else c{i}(v{i}))")
    lines.append("    return (" + "".join(v + ", " for v in values) + ")")
    return compile("\n".join(lines) + "\n", "<sagesql flatten>", "exec")


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
