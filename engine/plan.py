"""The plan: for each table of a statement, the API requests to make and what stays local.

For every reference to a catalog table the planner finds the conditions that concern
that table alone and that may filter its rows before the statement runs:

- WHERE and inner-join ON conjuncts, unless the table is on the NULL-filled side of an
  outer join (then only its own LEFT JOIN's ON conjuncts), since filtering it earlier
  would change which rows come out NULL-extended;
- turned into predicates (conditions.py) and handed to the table's product dialect,
  which says what the API applies and whether exactly.

A key predicate (``id = x``, ``id IN (...)``) becomes GET-one requests when that is
fewer requests. LIMIT reaches the API only when the whole WHERE is applied there
exactly and the API returns the rows in the statement's order. Rules about the
statement (LIMIT, ORDER BY, count(*) from the API's total) apply only to a table in the
statement's own FROM, never to one inside a subquery, CTE or set operation, and join
narrowing only to tables of the same FROM. Whatever is pushed,
SQLite re-evaluates the whole statement over the fetched rows, so pushdown can only
make a query cheaper, never change its answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
from sqlglot import exp
from sqlglot.optimizer.scope import Scope, traverse_scope

from sagesql.connector.dialects import Pushed, SortKey
from sagesql.connector.predicates import And, Comparison, Predicate
from sagesql.connector.products import dialect_for, paginator_for
from sagesql.connector.properties import Settings
from sagesql.engine.conditions import (
    column_map,
    normalize_literals,
    passed_through,
    split_and,
    to_predicate,
)
from sagesql.engine.local import SQLITE_AGGREGATES
from sagesql.engine.names import RECORD_COLUMN, TableRef
from sagesql.engine.statement import READ_DIALECT
from sagesql.schemas.catalog import Catalog, Table

# Above this many keys, one list request beats a GET per key.
MAX_KEY_LOOKUPS = 20
# The clauses a statement answered by the API's total may have (sqlglot's arg names).
COUNT_CLAUSES = frozenset({"expressions", "from_", "from", "where"})


class Scan(msgspec.Struct):
    """How one table reference's rows are fetched."""

    ref: TableRef
    columns: list[str]
    conjuncts: list[Predicate] = msgspec.field(default_factory=list)
    local_only: list[str] = msgspec.field(default_factory=list)  # conditions SQLite alone applies
    pushed: Pushed = msgspec.field(default_factory=Pushed)
    keys: tuple[Any, ...] | None = None  # GET one record per key
    limit: int | None = None  # fetch at most this many records
    offset: int = 0  # ... from this one on (the statement's OFFSET, read by the API)
    source: Table | None = None  # the table actually requested (a child's parent)
    notes: list[str] = msgspec.field(default_factory=list)
    # An equi-join narrows this table to the values the other side has (decided at run
    # time, once they are known): see JoinKey and narrowed().
    join: JoinKey | None = None
    order: list[SortKey] = msgspec.field(default_factory=list)
    empty: bool = False  # narrowed to no value at all: nothing to fetch
    # The API applies the whole WHERE exactly, in the statement's order: a LIMIT on the
    # statement (the number in ``limit``, when it has one) stops this scan's paging.
    pushes_limit: bool = False
    # The connection's settings, for a dialect a property tunes (CRMFilterOperators).
    settings: Settings | None = None

    @property
    def table(self) -> Table:
        return self.ref.table

    def requests(self) -> list[tuple[str, str, dict[str, str]]]:
        """(method, path, params) of the first request(s), for --explain."""
        source = self.source or self.table
        if self.keys is not None:
            get = source.operations["get"]
            return [(get.method, get.path.replace("{key}", str(k)), {}) for k in self.keys]
        listing = source.operations.get("list")
        if listing is None:
            return []
        return [(listing.method, listing.path, dict(self.pushed.params))]


class JoinKey(msgspec.Struct, frozen=True):
    """``ON inner.column = outer.outer_column``: the outer scan is read first."""

    outer: int  # index of the outer scan in Plan.scans
    outer_column: str
    column: str


# Join values per narrowed request at most (fewer where the API's filter must stay
# shorter: a chunk is halved until the dialect takes it), and at most this many
# narrowed requests before listing the inner table is
# the better bet (its size is unknown; a listing reads 1,000 to 5,000 records a page).
MAX_JOIN_VALUES = 1000
MAX_JOIN_CHUNKS = 3
# A GET per join value can cost more than listing the inner table (one page holds up to
# 200 records, and the table's size is unknown): only a single GET is never worse.
MAX_JOIN_LOOKUPS = 1


class Plan(msgspec.Struct):
    tree: exp.Expression  # the statement SQLite runs, over the scans' local tables
    scans: list[Scan]
    # SELECT count(*) FROM t [WHERE ...all applied exactly by the API]: the API's own total
    # answers it with one request (the result column's name).
    count_only: str | None = None

    @property
    def pushes_limit(self) -> bool:
        """Whether a LIMIT on this statement reaches the API (its one table's paging stops
        there), whether or not the statement has one."""
        return len(self.scans) == 1 and self.scans[0].pushes_limit

    def explain(self) -> str:
        lines: list[str] = []
        for scan in self.scans:
            t = scan.table
            alias = f" AS {scan.ref.alias}" if scan.ref.alias != t.name else ""
            lines.append(f"{t.name}{alias} ({t.product})")
            if scan.source is not None and scan.source is not t:
                lines.append(
                    f"  rows from {scan.source.name}.{'.'.join(t.parent.path)}" if t.parent else ""
                )
            for method, path, params in scan.requests()[:5]:
                query = "&".join(f"{k}={v}" for k, v in params.items())
                lines.append(f"  {method} {path}{'?' + query if query else ''}")
            if scan.keys is not None and len(scan.keys) > 5:
                lines.append(f"  ... {len(scan.keys) - 5} more GET requests")
            if scan.keys is None and (scan.source or t).paging.style != "none":
                lines.append(f"  paged: {(scan.source or t).paging.style}")
            exact = [str(c) for i, c in enumerate(scan.conjuncts) if i in scan.pushed.exact]
            approx = [
                str(c)
                for i, c in enumerate(scan.conjuncts)
                if i in scan.pushed.pushed and i not in scan.pushed.exact
            ]
            local = [str(c) for i, c in enumerate(scan.conjuncts) if i not in scan.pushed.pushed]
            if exact:
                lines.append(f"  applied by the API: {'; '.join(exact)}")
            if approx:
                lines.append(f"  narrowed by the API, re-checked locally: {'; '.join(approx)}")
            if local or scan.local_only:
                lines.append(f"  applied locally: {'; '.join(local + scan.local_only)}")
            if scan.pushed.sorted:
                lines.append("  sorted by the API")
            if scan.offset:
                lines.append(f"  offset: starts at record {scan.offset + 1} (the page holding it)")
            if scan.limit is not None:
                lines.append(f"  limit: stops after {scan.limit} records")
            if scan.join is not None:
                outer = self.scans[scan.join.outer].ref.alias
                lines.append(
                    f"  join: narrowed at run time to the {outer}.{scan.join.outer_column} "
                    f"values read first ({scan.join.column} IN (...) where the API filters on "
                    f"it, in up to {MAX_JOIN_CHUNKS} requests of at most {MAX_JOIN_VALUES} "
                    f"values; a GET for {MAX_JOIN_LOOKUPS} key; else a listing)"
                )
            lines.extend(f"  note: {n}" for n in scan.notes + scan.pushed.notes)
        if self.count_only:
            lines.append("  count: the API's total answers it (one request, no records read)")
        lines.append("local (SQLite):")
        lines.append("  " + self.tree.sql(READ_DIALECT))
        return "\n".join(line for line in lines if line)


def _scope_of(tree: exp.Expression, ref: TableRef) -> tuple[Scope, exp.Table] | None:
    for scope in traverse_scope(tree):
        for source in scope.sources.values():
            if isinstance(source, exp.Table) and source.name == ref.local_name:
                return scope, source
    return None


def _is_simple(select: exp.Expr, scope: Scope) -> bool:
    """One source, no grouping, aggregates, DISTINCT or windows: rows map one to one."""
    if not isinstance(select, exp.Select) or len(scope.sources) != 1:
        return False
    if any(select.args.get(k) for k in ("group", "having", "distinct", "joins")):
        return False
    for node in select.walk():
        if isinstance(node, (exp.AggFunc, exp.Window, exp.Subquery)):
            return False
        # SQLite aggregates sqlglot reads as plain functions: total(), jsonb_group_array()
        if isinstance(node, exp.Anonymous) and node.name.lower() in SQLITE_AGGREGATES:
            return False
    return True


def _int_literal(node: exp.Expression | None) -> int | None:
    if node is None:
        return 0
    value = node.expression if isinstance(node, (exp.Limit, exp.Offset)) else node
    if isinstance(value, exp.Literal) and not value.is_string and value.this.isdigit():
        return int(value.this)
    return None


def plan(
    tree: exp.Expression,
    refs: Sequence[TableRef],
    catalog: Catalog,
    settings: Settings | None = None,
) -> Plan:
    """The plan of a resolved (qualified) statement (``settings``: the connection's)."""
    columns = column_map(tree, list(refs))
    scans = [_plan_scan(tree, ref, columns, catalog, settings) for ref in refs]
    _plan_joins(tree, scans, columns)
    # Literals compared with a derived table's or CTE's column are stored forms too.
    normalize_literals(tree, {**columns, **passed_through(tree, columns)})
    return Plan(tree, scans, count_only=_count_only(tree, scans))


def _count_only(tree: exp.Expression, scans: list[Scan]) -> str | None:
    """The result name when the statement is a bare count(*) the API's total answers.

    Only where that is provably the same answer: the statement's top level is exactly
    ``SELECT count(*) FROM <the catalog table> [WHERE ...]``, the whole WHERE applied
    exactly by the API, and nothing else anywhere (no derived table, CTE, subquery,
    join, grouping, DISTINCT, LIMIT/OFFSET or window). A count over a subquery or CTE
    counts that query's rows, which the table's total knows nothing about.
    """
    if not isinstance(tree, exp.Select) or len(scans) != 1 or len(tree.expressions) != 1:
        return None
    if any(value for key, value in tree.args.items() if key not in COUNT_CLAUSES):
        return None
    scan = scans[0]
    from_ = tree.args.get("from_") or tree.args.get("from")
    source = from_.this if from_ is not None else None
    if not (isinstance(source, exp.Table) and source.name == scan.ref.local_name):
        return None  # a derived table, a CTE or a table function: not the catalog table
    nested = (exp.Select, exp.Subquery, exp.SetOperation, exp.Window)
    if any(isinstance(node, nested) for node in tree.walk() if node is not tree):
        return None
    item = tree.expressions[0]
    count = item.this if isinstance(item, exp.Alias) else item
    if not (isinstance(count, exp.Count) and isinstance(count.this, exp.Star)):
        return None
    table = scan.source or scan.table
    exact = not scan.local_only and len(scan.pushed.exact) == len(scan.conjuncts)
    if (
        not exact
        or scan.keys is not None
        or scan.table.parent is not None
        or table.paging.total == "none"
        or table.paging.style == "none"
    ):
        return None
    return item.alias_or_name


def _plan_scan(
    tree: exp.Expression,
    ref: TableRef,
    columns: dict[int, Any],
    catalog: Catalog,
    settings: Settings | None = None,
) -> Scan:
    table = ref.table
    used = {col.name for owner, col in columns.values() if owner is ref}
    if table.key:
        used.add(table.key)
    needed = [c.name for c in table.columns if c.name in used] or [table.columns[0].name]
    scan = Scan(ref, needed, settings=settings)
    found = _scope_of(tree, ref)
    candidates: list[exp.Expression] = []
    select: exp.Expr | None = None
    scope: Scope | None = None
    if found is not None:
        scope, source = found
        select = scope.expression
        candidates = _candidates(select, source) if isinstance(select, exp.Select) else []
    for node in candidates:
        predicate = to_predicate(node, ref, columns)
        if predicate is None:
            scan.local_only.append(node.sql(READ_DIALECT))
        elif isinstance(predicate, And):
            # BETWEEN is two conjuncts: each bound may use a parameter of its own.
            scan.conjuncts.extend(predicate.items)
        else:
            scan.conjuncts.append(predicate)
    order = _order(select, ref, columns) if select is not None else []
    scan.order = order
    if table.parent is not None:
        _plan_child(scan, catalog)
        return scan
    if _choose_requests(scan):
        return scan
    if (
        scope is not None
        and select is not None
        and scope.is_root
        and isinstance(tree, exp.Select)
        and _is_simple(select, scope)
        and not scan.local_only
        and len(scan.pushed.exact) == len(scan.conjuncts)
        and (not select.args.get("order") or scan.pushed.sorted)
    ):
        scan.pushes_limit = True
        limit, offset = (
            _int_literal(select.args.get("limit")),
            _int_literal(select.args.get("offset")),
        )
        if select.args.get("limit") is not None and limit is not None and offset is not None:
            scan.limit = limit + offset
            if offset and paginator_for(table).addressable:
                # The API starts at the page holding row OFFSET (paging.start): the rows
                # before it are neither read nor skipped again locally.
                scan.limit, scan.offset = limit, offset
                select.set("offset", None)
        if scan.pushed.sorted and select.args.get("order"):
            # The API already returns SQLite's order: without ORDER BY the rows can stream.
            select.set("order", None)
    return scan


def _every_field(scan: Scan) -> bool:
    """Whether the scan needs every field: all columns, or the record column alone or
    with the key (the whole record). Beside other columns, the record holds the fields
    they need (an instance's attributes= polls those; its events carry what Sage sent)."""
    if len(scan.columns) == len(scan.table.columns):
        return True
    return RECORD_COLUMN in scan.columns and set(scan.columns) <= {RECORD_COLUMN, scan.table.key}


def _choose_requests(scan: Scan) -> bool:
    """Set the scan's list parameters or key lookups; True when it reads keys one by one."""
    table = scan.table
    dialect = dialect_for(table, scan.settings)
    lookup = dialect.key_values(scan.conjuncts)
    needed = None if _every_field(scan) else scan.columns
    scan.pushed = dialect.push(scan.conjuncts, order=scan.order, columns=needed)
    if lookup is not None:
        index, keys = lookup
        one_list_request = index in scan.pushed.exact and len(keys) > 1
        if table.fixed_parameters:
            scan.notes.append(
                "a key lookup would bypass the view's filter "
                f"{dict(table.fixed_parameters)}: listing instead"
            )
        elif len(keys) <= MAX_KEY_LOOKUPS and not one_list_request:
            scan.keys = tuple(dict.fromkeys(keys))
            scan.pushed = Pushed(pushed={index}, exact={index})
            return True
    return False


def _plan_joins(tree: exp.Expression, scans: list[Scan], columns: dict[int, Any]) -> None:
    """Mark inner tables of equi-joins with the outer column whose values narrow them."""
    index = {id(scan.ref): i for i, scan in enumerate(scans)}
    for select in tree.find_all(exp.Select):
        # Only tables of this SELECT's own FROM and joins narrow each other: a correlated
        # column of an enclosing query (ON x.id = outer.id in a subquery) does not filter
        # the enclosing query's rows, so its table must not be narrowed by the join.
        own = {
            node.name
            for node in [_from_table(select), *(j.this for j in select.args.get("joins") or [])]
            if isinstance(node, exp.Table)
        }
        for join in select.args.get("joins") or []:
            side = (join.side or "").upper()
            if side not in ("", "LEFT") or (join.kind or "").upper() not in ("", "INNER"):
                continue  # a RIGHT/FULL join keeps every row of the joined table
            inner = _scan_of(join.this, scans)
            if inner is None or inner.keys is not None or inner.table.parent is not None:
                continue
            for condition in split_and(join.args.get("on")):
                if not isinstance(condition, exp.EQ):
                    continue
                ends = [
                    end
                    for n in (condition.this, condition.expression)
                    if isinstance(n, exp.Column) and (end := columns.get(id(n))) is not None
                ]
                if len(ends) != 2:
                    continue
                mine = [e for e in ends if e[0] is inner.ref]
                other = [e for e in ends if e[0] is not inner.ref]
                if len(mine) != 1 or len(other) != 1:
                    continue
                outer = index.get(id(other[0][0]))
                types = {mine[0][1].type, other[0][1].type}
                if outer is None or not types <= {"TEXT", "INTEGER"}:
                    continue
                if scans[outer].ref.local_name not in own:
                    continue
                first = scans[outer]
                if (
                    side == ""
                    and first.join is None
                    and first.keys is None
                    and first.table.parent is None
                    and not first.pushed.pushed
                    and inner.pushed.pushed
                ):
                    # An inner join whose joined table is the filtered one: read it first
                    # and narrow the unfiltered side by its values instead.
                    first.join = JoinKey(index[id(inner.ref)], mine[0][1].name, other[0][1].name)
                elif first.join is None or first.join.outer != index[id(inner.ref)]:
                    inner.join = JoinKey(outer, other[0][1].name, mine[0][1].name)
                break


def _from_table(select: exp.Select) -> exp.Expression | None:
    from_ = select.args.get("from_") or select.args.get("from")
    return from_.this if from_ is not None else None


def _scan_of(node: exp.Expression, scans: list[Scan]) -> Scan | None:
    if isinstance(node, exp.Table):
        return next((s for s in scans if s.ref.local_name == node.name), None)
    return None


def narrowed(scan: Scan, values: Sequence[Any]) -> list[Scan]:
    """The scans reading only rows whose join column is one of ``values`` (the outer
    side's), in chunks whose filter the API applies, when that takes fewer requests; else
    the scan unchanged. Chunks split distinct values, so no row is read twice."""
    assert scan.join is not None
    wanted = tuple(dict.fromkeys(v for v in values if v is not None))
    if len(wanted) > MAX_JOIN_VALUES * MAX_JOIN_CHUNKS:
        return [scan]
    column = scan.table.column(scan.join.column)
    if column.type == "INTEGER":
        wanted = tuple(v for v in wanted if isinstance(v, int))
    else:
        wanted = tuple(str(v) for v in wanted)
    whole = _narrow(scan, column.name, wanted)
    if whole.empty:
        return [whole]
    if _choose_requests(whole):
        return [whole] if len(wanted) <= MAX_JOIN_LOOKUPS else [scan]
    return _chunks(scan, column.name, wanted) or [scan]


_SAMPLES = {
    "INTEGER": 1,
    "DECIMAL": 1,
    "BOOLEAN": 1,
    "DATE": "2025-01-01",
    "DATETIME": "2025-01-01 00:00:00",
}


def narrowable(scan: Scan) -> bool:
    """Whether ``narrowed`` can read less than the scan's listing for some values: the
    join column is a key the API gets one by one, or a filter on it the API applies.
    When it cannot, the scan need not wait for the outer side's values."""
    if scan.join is None:
        return False
    try:
        column = scan.table.column(scan.join.column)
        sample = _SAMPLES.get(column.type, "x")
        narrow = _narrow(scan, column.name, (sample,))
        if _choose_requests(narrow):
            return True
        return len(narrow.conjuncts) - 1 in narrow.pushed.pushed
    except Exception:  # whatever the planner makes of a sample value: narrow as before
        return True


def _chunks(scan: Scan, column: str, values: tuple[Any, ...]) -> list[Scan] | None:
    """Narrowed scans whose IN filter the API applies, a chunk it would not take (too long
    a filter for its URL) halved until it does; None when that takes more than
    MAX_JOIN_CHUNKS requests, or one value is not pushed."""
    done: list[Scan] = []
    pending = [values[i : i + MAX_JOIN_VALUES] for i in range(0, len(values), MAX_JOIN_VALUES)]
    while pending:
        chunk = pending.pop(0)
        narrow = _narrow(scan, column, chunk)
        one_by_one = _choose_requests(narrow)  # (sets what the API applies)
        if (
            len(chunk) <= MAX_JOIN_LOOKUPS
            if one_by_one
            else len(narrow.conjuncts) - 1 in narrow.pushed.pushed
        ):
            done.append(narrow)
        elif len(chunk) > 1:
            half = len(chunk) // 2
            pending[:0] = [chunk[:half], chunk[half:]]
        else:
            return None
        if len(done) + len(pending) > MAX_JOIN_CHUNKS:
            return None
    return done


def _narrow(scan: Scan, column: str, values: tuple[Any, ...]) -> Scan:
    narrow = Scan(
        scan.ref,
        scan.columns,
        conjuncts=[*scan.conjuncts, Comparison(column, "IN", values)],
        order=scan.order,
        settings=scan.settings,
    )
    narrow.empty = not values
    return narrow


def _candidates(select: exp.Select, source: exp.Table) -> list[exp.Expression]:
    """The conditions that may filter this source's rows before the statement runs."""
    joins = select.args.get("joins") or []
    from_ = select.args.get("from_") or select.args.get("from")
    in_from = from_ is not None and from_.this is source
    mine = next((j for j in joins if j.this is source), None)
    sides = {(j.side or "").upper() for j in joins}
    if mine is not None and (mine.side or "").upper() in ("LEFT", "FULL"):
        return split_and(mine.args.get("on"))  # its own ON only
    if in_from and sides & {"RIGHT", "FULL"}:
        return []  # the FROM table is NULL-extended by a RIGHT or FULL join
    where = select.args.get("where")
    found = split_and(where.this if where is not None else None)
    for join in joins:
        if not (join.side or "") and (join.kind or "").upper() in ("", "INNER"):
            found.extend(split_and(join.args.get("on")))
    return found


def _order(select: exp.Expr, ref: TableRef, columns: dict[int, Any]) -> list[SortKey]:
    """The ORDER BY as sort keys when every item is a plain column of this table."""
    order = select.args.get("order") if isinstance(select, exp.Select) else None
    if order is None:
        return []
    # ORDER BY a selected column's name: the qualifier leaves it naming the output column.
    outputs = {e.alias.lower(): e.this for e in select.expressions if isinstance(e, exp.Alias)}
    keys: list[SortKey] = []
    for item in order.expressions:
        node = item.this if isinstance(item, exp.Ordered) else item
        if isinstance(node, exp.Column) and not node.table:
            node = outputs.get(node.name.lower(), node)
        owner = columns.get(id(node)) if isinstance(node, exp.Column) else None
        if owner is None or owner[0] is not ref:
            return []
        nulls_first = item.args.get("nulls_first") if isinstance(item, exp.Ordered) else None
        keys.append(SortKey(owner[1].name, bool(item.args.get("desc")), nulls_first))
    return keys


def _plan_child(scan: Scan, catalog: Catalog) -> None:
    """A line table's rows come from its parent's records: list them, or GET by parent key."""
    parent_info = scan.table.parent
    assert parent_info is not None
    parent = catalog.table(parent_info.table, scan.table.product)
    scan.source = parent
    keys: tuple[Any, ...] | None = None
    for index, c in enumerate(scan.conjuncts):
        if isinstance(c, Comparison) and c.column == parent_info.key_column and c.op in ("=", "IN"):
            keys = (c.value,) if c.op == "=" else tuple(c.value)
            scan.pushed = Pushed(pushed={index}, exact={index})
            break
    if keys is not None and len(keys) <= MAX_KEY_LOOKUPS and "get" in parent.operations:
        scan.keys = tuple(dict.fromkeys(keys))
        return
    array = next((c.name for c in parent.columns if c.path == parent_info.path), None)
    pushed = dialect_for(parent, scan.settings).push([], columns=[array] if array else None)
    scan.pushed = Pushed(params=pushed.params, notes=pushed.notes)
