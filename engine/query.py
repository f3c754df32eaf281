"""A query's own path: planned against the catalog, then fetched and evaluated locally.

``prepare`` plans a SELECT (no request is made); ``run_tree`` fetches what the plan
asks for, narrowing the inner side of a join by the values of its outer side, and lets
SQLite evaluate the statement over those rows.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any, cast

from sqlglot import exp

from sagesql.connector.properties import Settings
from sagesql.connector.seams import Client, Planning, Transport
from sagesql.engine import fetch, local
from sagesql.engine.fold import fold
from sagesql.engine.names import resolve
from sagesql.engine.plan import Plan, narrowable, narrowed, plan
from sagesql.engine.result import Result, ResultColumn
from sagesql.engine.statement import Params, bind, parse
from sagesql.errors import NotSupportedError

QUERIES = (exp.Select, exp.Union, exp.Intersect, exp.Except)


def prepare(connection: Planning, sql: str, params: Params = None) -> Plan:
    """The plan of a query (no request is made)."""
    tree = bind(parse(sql), params)
    if not isinstance(tree, QUERIES):
        kind = type(tree).__name__.upper()
        raise NotSupportedError(
            f"{kind} is not a query",
            hint="run writes with pipeline.run; prepare plans SELECT queries",
        )
    return prepare_tree(connection, tree)


def prepare_tree(connection: Planning, tree: exp.Expression) -> Plan:
    """The plan of a parsed, bound query; a table the API cannot read fails here."""
    tree = folded(connection, tree)
    qualified, refs = resolve(tree, connection.catalog, connection.product.id)
    settings = getattr(connection, "settings", None)  # a Client has them, a Planning may not
    the_plan = plan(
        qualified,
        refs,
        connection.catalog,
        settings if isinstance(settings, Settings) else None,
    )
    for scan in the_plan.scans:
        source = scan.source or scan.table
        ops = source.operations
        if not ("list" in ops or (scan.keys is not None and "get" in ops)):
            raise NotSupportedError(
                f"{source.name} cannot be read: the API only accepts new records there",
                hint=f"read them back from the table its description names "
                f"('sagesql describe {source.name}')",
            )
    return the_plan


def folded(connection: Planning, tree: exp.Expression) -> exp.Expression:
    """Constant date and time expressions as literals, 'now' read from the connection's
    clock (engine/fold.py), so that the planner pushes them like any literal."""
    return fold(tree, getattr(connection, "clock", None))


def run_tree(connection: Client, tree: exp.Expression, *, max_rows: int | None = None) -> Result:
    """The result of a parsed, bound query."""
    settings = connection.settings
    cap = max_rows if max_rows is not None else settings.max_rows
    the_plan = prepare_tree(connection, capped(tree, cap))
    # Opened on the first request (Sage 200 asks for its site then), so that a statement
    # SQLite refuses sends nothing.
    transport = cast(Transport, _LazyTransport(connection))
    if the_plan.count_only is not None:
        total = fetch.total(the_plan.scans[0], transport)
        if total is not None:
            column = ResultColumn(the_plan.count_only, "INTEGER")
            counted = Result([column], iter([(total,)]))
            counted.plan = the_plan  # type: ignore[attr-defined]
            return counted
    read = _JoinValues(the_plan)
    scales: list[dict[str, int]] = [{} for _ in the_plan.scans]
    sources = [
        local.LocalSource(
            scan.ref.local_name,
            [(name, scan.table.column(name).type) for name in scan.columns],
            read.rows(i, transport, settings, scales[i]),
            scales[i],
            product=scan.table.product,
        )
        for i, scan in enumerate(the_plan.scans)
    ]
    # The side that narrows another is loaded first (local evaluation loads in order).
    order = _load_order(the_plan)
    if len(order) > 1:
        # Local evaluation loads one source after the other: a source that is not
        # narrowed by another (or whose join column the API cannot filter on) is read
        # meanwhile, in a thread of its own, so the reads overlap.
        # It starts when the first source is first read: a statement SQLite refuses
        # (checked over the empty tables) still sends nothing.
        ahead: list[_Prefetched] = []
        for i in order[1:]:
            if the_plan.scans[i].join is None or not narrowable(the_plan.scans[i]):
                prefetched = _Prefetched(sources[i].rows)
                sources[i].rows = prefetched
                ahead.append(prefetched)
        if ahead:
            sources[order[0]].rows = _starting(
                sources[order[0]].rows, ahead, lambda: connection.transport
            )
    result = local.evaluate(the_plan.tree, [sources[i] for i in order])
    if cap is not None and cap >= 0:
        streamed = result.rows
        result.rows = itertools.islice(streamed, cap)
        result.on_close.insert(0, getattr(streamed, "close", lambda: None))
    result.plan = the_plan  # type: ignore[attr-defined]
    return result


def _load_order(the_plan: Plan) -> list[int]:
    """Scan indexes, every join's outer side before the side it narrows."""
    order: list[int] = []
    waiting = list(range(len(the_plan.scans)))
    while waiting:
        ready = [
            i for i in waiting if (join := the_plan.scans[i].join) is None or join.outer in order
        ]
        if not ready:  # a cycle cannot be planned; keep the statement's order
            return order + waiting
        order.extend(ready)
        waiting = [i for i in waiting if i not in ready]
    return order


class _JoinValues:
    """Rows of each scan; the outer side of an equi-join records its join column's values,
    which narrow the inner side's requests. Local evaluation loads the sources in order,
    each whole, so the outer side is read before the inner one starts."""

    def __init__(self, the_plan: Plan) -> None:
        self.plan = the_plan
        self.wanted: dict[tuple[int, str], list[Any]] = {}
        for scan in the_plan.scans:
            if scan.join is not None:
                self.wanted[(scan.join.outer, scan.join.outer_column)] = []
        self.finished: set[int] = set()

    def rows(
        self,
        i: int,
        transport: Transport,
        settings: Settings,
        scales: dict[str, int] | None = None,
    ) -> Iterator[tuple[Any, ...]]:
        scans = [self.plan.scans[i]]
        join = scans[0].join
        if join is not None and join.outer in self.finished:
            scans = narrowed(scans[0], self.wanted[(join.outer, join.outer_column)])
        parallel = settings.max_concurrency > 1
        rows = (
            row
            for scan in scans
            if not scan.empty
            for row in fetch.rows(
                scan, transport, page_size=settings.pagesize, parallel=parallel, scales=scales
            )
        )
        scan = scans[0]
        taps = [
            (scan.columns.index(col), values)
            for (outer, col), values in self.wanted.items()
            if outer == i and col in scan.columns
        ]
        for row in rows:
            for position, values in taps:
                values.append(row[position])
            yield row
        self.finished.add(i)


class _Prefetched:
    """An iterator of rows read ahead in a thread of its own, at most ``PREFETCH_ROWS``
    ahead of the reader; the reader gets the rows in order, then any error the source
    raised. ``close`` stops the reading and closes the source."""

    _END = object()

    def __init__(self, rows: Iterator[tuple[Any, ...]]) -> None:
        self._rows = rows
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=PREFETCH_ROWS // PREFETCH_CHUNK)
        self._stop = threading.Event()
        self._chunk: Iterator[tuple[Any, ...]] = iter(())
        self._thread = threading.Thread(target=self._read, name="sagesql-prefetch", daemon=True)
        self._started = False
        self._lock = threading.Lock()

    def start(self) -> None:
        with self._lock:
            if not self._started and not self._stop.is_set():
                self._started = True
                self._thread.start()

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _read(self) -> None:
        try:
            while not self._stop.is_set():
                chunk = list(itertools.islice(self._rows, PREFETCH_CHUNK))
                if not chunk or not self._put(chunk):
                    break
            self._put(self._END)
        except BaseException as exc:  # handed to the reader, raised there
            self._put(exc)

    def __iter__(self) -> _Prefetched:
        return self

    def __next__(self) -> tuple[Any, ...]:
        for row in self._chunk:
            return row
        self.start()
        item = self._queue.get()
        if item is self._END:
            self._queue.put(item)  # asked again: still the end
            raise StopIteration
        if isinstance(item, BaseException):
            raise item
        self._chunk = iter(item)
        return next(self)

    def close(self) -> None:
        with self._lock:
            self._stop.set()
            started = self._started
        if started:
            self._thread.join()
        close = getattr(self._rows, "close", None)
        if close is not None:
            close()


def _starting(
    rows: Iterator[tuple[Any, ...]], ahead: list[_Prefetched], open_transport: Callable[[], Any]
) -> Iterator[tuple[Any, ...]]:
    """The rows, starting the read-ahead of the other sources when first asked for (the
    transport opened first, in this thread: Sage 200 asks for its site once)."""
    open_transport()
    for prefetched in ahead:
        prefetched.start()
    try:
        yield from rows
    finally:
        close = getattr(rows, "close", None)
        if close is not None:
            close()


# Rows a source no other narrows may be read ahead of local evaluation (in chunks).
PREFETCH_ROWS = 20_000
PREFETCH_CHUNK = 200


def capped(tree: exp.Expression, cap: int | None) -> exp.Expression:
    """The query with LIMIT cap when that is tighter than its own (the first cap rows are
    the same), so that the planner fits the pages to it and paging stops there."""
    if cap is None or cap < 0 or not isinstance(tree, exp.Select) or _one_row(tree):
        return tree
    limit = tree.args.get("limit")
    if limit is not None:
        value = limit.expression
        if not (isinstance(value, exp.Literal) and value.is_int and int(value.this) > cap):
            return tree
    tree.set("limit", exp.Limit(expression=exp.Literal.number(cap)))
    return tree


def _one_row(select: exp.Select) -> bool:
    """An aggregate query without GROUP BY: one row at most, whatever the cap (which
    would only hide it from the count shortcut)."""
    if select.args.get("group"):
        return False
    inner = (exp.Select, exp.Subquery, exp.Window)
    return any(
        isinstance(node, exp.AggFunc)
        or (isinstance(node, exp.Anonymous) and node.name.lower() in local.SQLITE_AGGREGATES)
        for item in select.expressions
        for node in item.walk(prune=lambda n: isinstance(n, inner))
    )


class _LazyTransport:
    """The connection's transport, opened when first used."""

    def __init__(self, connection: Client) -> None:
        self._connection = connection

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection.transport, name)
