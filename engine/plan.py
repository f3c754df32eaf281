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
exactly and the API returns the rows in the statement's order. Whatever is pushed,
SQLite re-evaluates the whole statement over the fetched rows, so pushdown can only
make a query cheaper, never change its answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlglot import exp
from sqlglot.optimizer.scope import Scope, traverse_scope

from sagesql.connector.catalog import Catalog, Table
from sagesql.connector.dialects import Pushed, SortKey, for_table
from sagesql.engine.conditions import column_map, normalize_literals, split_and, to_predicate
from sagesql.engine.names import TableRef
from sagesql.engine.predicates import And, Comparison, Predicate
from sagesql.engine.statement import READ_DIALECT

# Above this many keys, one list request beats a GET per key.
MAX_KEY_LOOKUPS = 20


@dataclass
class Scan:
    """How one table reference's rows are fetched."""

    ref: TableRef
    columns: list[str]
    conjuncts: list[Predicate] = field(default_factory=list)
    local_only: list[str] = field(default_factory=list)  # conditions SQLite alone applies
    pushed: Pushed = field(default_factory=Pushed)
    keys: tuple[Any, ...] | None = None  # GET one record per key
    limit: int | None = None  # fetch at most this many records
    source: Table | None = None  # the table actually requested (a child's parent)
    notes: list[str] = field(default_factory=list)

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


@dataclass
class Plan:
    tree: exp.Expression  # the statement SQLite runs, over the scans' local tables
    scans: list[Scan]

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
            if scan.limit is not None:
                lines.append(f"  limit: stops after {scan.limit} records")
            lines.extend(f"  note: {n}" for n in scan.notes + scan.pushed.notes)
        lines.append("local (SQLite):")
        lines.append("  " + self.tree.sql(READ_DIALECT))
        return "\n".join(line for line in lines if line)


def _scope_of(tree: exp.Expression, ref: TableRef) -> tuple[Scope, exp.Table] | None:
    for scope in traverse_scope(tree):
        for source in scope.sources.values():
            if isinstance(source, exp.Table) and source.name == ref.local_name:
                return scope, source
    return None


def _is_simple(select: exp.Expression, scope: Scope) -> bool:
    """One source, no grouping, aggregates, DISTINCT or windows: rows map one to one."""
    if not isinstance(select, exp.Select) or len(scope.sources) != 1:
        return False
    if any(select.args.get(k) for k in ("group", "having", "distinct", "joins")):
        return False
    return select.find(exp.AggFunc, exp.Window, exp.Subquery) is None


def _int_literal(node: exp.Expression | None) -> int | None:
    if node is None:
        return 0
    value = node.expression if isinstance(node, (exp.Limit, exp.Offset)) else node
    if isinstance(value, exp.Literal) and not value.is_string and value.this.isdigit():
        return int(value.this)
    return None


def plan(tree: exp.Expression, refs: Sequence[TableRef], catalog: Catalog) -> Plan:
    """The plan of a resolved (qualified) statement."""
    columns = column_map(tree, list(refs))
    scans = [_plan_scan(tree, ref, columns, catalog) for ref in refs]
    normalize_literals(tree, columns)
    return Plan(tree, scans)


def _plan_scan(
    tree: exp.Expression, ref: TableRef, columns: dict[int, Any], catalog: Catalog
) -> Scan:
    table = ref.table
    used = {col.name for owner, col in columns.values() if owner is ref}
    if table.key:
        used.add(table.key)
    needed = [c.name for c in table.columns if c.name in used] or [table.columns[0].name]
    scan = Scan(ref, needed)
    found = _scope_of(tree, ref)
    candidates: list[exp.Expression] = []
    select: exp.Expression | None = None
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
    if table.parent is not None:
        _plan_child(scan, catalog)
        return scan
    dialect = for_table(table)
    lookup = dialect.key_values(scan.conjuncts)
    scan.pushed = dialect.push(
        scan.conjuncts, order=order, columns=None if len(needed) == len(table.columns) else needed
    )
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
        limit, offset = (
            _int_literal(select.args.get("limit")),
            _int_literal(select.args.get("offset")),
        )
        if select.args.get("limit") is not None and limit is not None and offset is not None:
            scan.limit = limit + offset
        if scan.pushed.sorted and select.args.get("order"):
            # The API already returns SQLite's order: without ORDER BY the rows can stream.
            select.set("order", None)
    return scan


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


def _order(select: exp.Expression, ref: TableRef, columns: dict[int, Any]) -> list[SortKey]:
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
    pushed = for_table(parent).push([], columns=[array] if array else None)
    scan.pushed = Pushed(params=pushed.params, notes=pushed.notes)
