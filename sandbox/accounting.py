"""The Sage Accounting v3.1 emulator: businesses, paged lists, filters, writes and actions.

Served under ``/v3.1``, one resource per list endpoint of the catalog (its
``operations.list.path``), driven by the table definitions; code only where Sage's
semantics need it (businesses, contacts, documents, journals)::

    GET    /businesses[/{key}|/lead]       the login's two businesses
    GET    /{resource}?page=&items_per_page=&attributes=&<filters>&sort=
    GET    /{resource}/{key}               one record, all attributes
    POST   /{resource}                     {"<singular>": {...}}          -> 201 record
    PUT    /{resource}/{key}               {"<singular>": {changes}}      -> 200 record
    DELETE /{resource}/{key}                                              -> 204
    POST   /{sales|purchase}_{invoices|credit_notes}/{key}/release       -> 201 record
    POST   /journals/{key}/reissue                                        -> 201 new journal

``X-Business`` picks the business (the store scope); without it, the lead business.

Choices where Sage's documents leave room (the connector must not rely on more):

- ``items_per_page`` above the maximum (200) is clamped to it, and below 1 raised to 1:
  the definition declares the bounds without saying what happens past them, and
  clamping never breaks a client that follows ``$next``. Text that is not a number is a
  422. A page past the end answers the last page.
- records come in insertion order (the store's ``seq``, unique, so pages never skip or
  repeat); ``sort=`` orders by the field and then by ``seq`` in the same direction.
  Totals and deep-page bookmarks are kept per query until the resource is written
  (see PageIndex), and the common filters have indexes: a page of a million contacts
  is an index range scan.
- filters come from the table definition's ``pushdown.parameters`` (the exact ones);
  besides them: ``deleted_since`` (tombstones only, exclusive), the views' fixed
  parameters (``contact_type_id``: membership in ``contact_types``), any other
  ``<link>_id`` naming a link or link array of the records, ``exclude_system`` and
  ``visible_in``/``not_visible_in``. Other parameters are ignored, as Sage does.
  ``search`` is a case-insensitive substring (ASCII case folding, SQLite's LIKE).
- ``nested_attributes`` is accepted and ignored: embedded links always carry
  ``id``, ``displayed_as`` and ``$path``.
- an unknown ``X-Business`` is a 403 ``MultiUserAccessDenied``.
- writes ignore fields the body schema does not accept; ``*_id`` values must name
  records that exist (422 otherwise); documents' line amounts and totals are computed
  by the server from quantity, unit price, discount and tax rate.
- DELETE of a sales invoice or credit note voids it (200 with the record, as the
  definition says) and needs the ``void_reason`` query parameter unless it is a draft,
  which is deleted (204); a DELETE with a body is a 400, as the definition has none.
  Other deletes keep a tombstone with ``deleted_at``, listed by ``deleted_since``.
- malformed JSON is a 400 ``InvalidJSON``, a body without the envelope key a 422, a
  content type other than JSON a 415, an operation the table lacks a 405.
"""

from __future__ import annotations

import base64
import json
import math
import sqlite3
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlencode

import msgspec
from werkzeug.datastructures import MultiDict
from werkzeug.wrappers import Request, Response

from sagesql.sandbox.accounting_data import (
    SETTINGS_KEY,
    USER_SCOPE,
    AccountingData,
    Resource,
    document_totals,
    fit,
    line_amounts,
    link_target,
    money,
    resources,
    singular,
    tax_analysis,
    with_links,
)
from sagesql.sandbox.app import ApiError, ProductApp, json_response
from sagesql.sandbox.clock import Clock, iso, parse_time, sortable
from sagesql.sandbox.config import SandboxConfig
from sagesql.sandbox.records import get_path, set_path
from sagesql.sandbox.store import Store, path_expr
from sagesql.schemas.catalog import Column, Table

API_PREFIX = "/v3.1"
# Resources whose records grow with the books: an equality filter on a link to one of
# them is selective enough to deserve an index (statuses, types and banks are not).
GROWING = frozenset(
    {
        "contacts",
        "contact_persons",
        "addresses",
        "products",
        "services",
        "stock_items",
        "transactions",
        "journals",
        "sales_invoices",
        "sales_credit_notes",
        "sales_quotes",
        "sales_estimates",
        "purchase_invoices",
        "purchase_credit_notes",
    }
)
VOIDABLE = frozenset({"sales_invoices", "sales_credit_notes"})
# Nested records a list answers as links {id, displayed_as, $path}, as Sage's recorded
# samples show (schemas/definitions/samples/ledgerscope-GetAll_BankAccount.json: a bank
# account's main_address). The same rule applies to a nested object that is a record of
# its own in the definition (id, displayed_as, $path and a resource of its own): a tax
# profile's address_region (AddressRegion, /address_regions). Not cut: a sales
# document's main_address/delivery_address (SalesArtefactAddress: the document's own
# copy, no resource behind it) and a bank account's main_contact_person
# (BankAccountContact: no id, no $path). A contact's main_address, delivery_address and
# main_contact_person (Address, ContactPerson) fit the rule too, but no sample shows it
# and the connector reads their columns (main_address_city...) from the list, so cutting
# them would answer NULL there: they stay whole until the connector reads them by GET.
LISTED_AS_LINKS: dict[str, tuple[str, ...]] = {
    "bank_accounts": ("main_address", "main_contact_person"),
    "tax_profiles": ("address_region",),
}
# GET /{resource}/{key}/<name> routes of the definition beside actions.
SUB_RESOURCES = frozenset({("attachments", "file"), ("bank_accounts", "bank_feed")})
RELEASED_STATUS = "UNPAID"
# /businesses does not page: Sage answers every business with this page size.
BUSINESSES_PAGE_SIZE = 2147483647
DOCUMENT_PREFIXES = {
    "sales_invoices": "SI",
    "sales_credit_notes": "SCN",
    "purchase_invoices": "PI",
    "purchase_credit_notes": "PCN",
    "sales_quotes": "SQ",
    "sales_estimates": "SE",
}
DOCUMENT_TYPES = {
    "sales_invoices": "SALES_INVOICE",
    "sales_credit_notes": "SALES_CREDIT_NOTE",
    "purchase_invoices": "PURCHASE_INVOICE",
    "purchase_credit_notes": "PURCHASE_CREDIT_NOTE",
}


class RecordInvalid(ApiError):
    """A 422 naming every problem of a body: one error entry each."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__(422, "RecordInvalid", problems[0][1], source=problems[0][0])
        self.problems = problems


# -- list queries -----------------------------------------------------------------------


@dataclass
class Query:
    """A list query as SQL over the store: clauses (ANDed), their parameters, the order."""

    clauses: list[str] = field(default_factory=list)
    params: list[Any] = field(default_factory=list)
    deleted: bool = False
    # (SQL expression, descending); "seq" last, so the order is total.
    order: list[tuple[str, bool]] = field(default_factory=lambda: [("seq", False)])

    def add(self, clause: str, *params: Any) -> None:
        self.clauses.append(clause)
        self.params.extend(params)

    @property
    def where(self) -> str:
        return " AND ".join(f"({c})" for c in self.clauses)

    @property
    def order_sql(self) -> str:
        return ", ".join(f"{expr} {'DESC' if desc else 'ASC'}" for expr, desc in self.order)

    @property
    def key(self) -> tuple[Any, ...]:
        return (tuple(self.clauses), tuple(self.params), self.deleted, tuple(self.order))


class PageIndex:
    """Totals and page bookmarks of list queries, kept until their resource changes.

    Counting a million rows, or stepping over them with OFFSET, costs tens of
    milliseconds. A query's total is counted once; a deep page starts from a bookmark,
    the order key of the row at a multiple of STEP, found once (by stepping from the
    nearest bookmark already known, so a client paging forward pays a short scan per
    STEP rows) and kept; the page is then a short indexed range scan. Every write
    through the API bumps the resource's generation, which drops both.
    """

    STEP = 1000
    MIN_OFFSET = 2 * STEP  # shallower pages use a plain OFFSET
    SIZE = 512  # queries remembered

    def __init__(self, store: Store) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._generation: dict[tuple[str, str], int] = {}
        self._entries: OrderedDict[tuple[Any, ...], dict[str, Any]] = OrderedDict()

    def changed(self, scope: str, resource: str) -> None:
        with self._lock:
            key = (scope, resource)
            self._generation[key] = self._generation.get(key, 0) + 1

    def _entry(self, scope: str, resource: str, query: Query) -> dict[str, Any]:
        key = (scope, resource, *query.key)
        with self._lock:
            generation = self._generation.get((scope, resource), 0)
            entry = self._entries.get(key)
            if entry is None or entry["generation"] != generation:
                entry = {"generation": generation, "marks": {}}
                self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self.SIZE:
                self._entries.popitem(last=False)
            return entry

    def count(self, scope: str, resource: str, query: Query) -> int:
        entry = self._entry(scope, resource, query)
        if "total" not in entry:
            entry["total"] = self.store.count(
                scope, resource, where=query.where, params=query.params, deleted=query.deleted
            )
        return int(entry["total"])

    def rows(self, scope: str, resource: str, query: Query, offset: int, limit: int) -> list[str]:
        where, params = query.where, list(query.params)
        # Bookmarks need an order of non-null store columns (json fields may be null).
        if offset >= self.MIN_OFFSET and all(
            expr in ("seq", "created", "updated") for expr, _ in query.order
        ):
            slot = offset // self.STEP
            mark = self._mark(scope, resource, query, slot)
            if mark is not None:
                bound, values = self._bound(query, mark)
                where = f"{where} AND {bound}" if where else bound
                params += values
                offset -= slot * self.STEP
        found = self.store.select(
            scope,
            resource,
            where=where,
            params=params,
            order=query.order_sql,
            limit=limit,
            offset=offset,
            deleted=query.deleted,
        )
        return [row[0] for row in found]

    @staticmethod
    def _bound(query: Query, mark: tuple[Any, ...]) -> tuple[str, list[Any]]:
        """Rows from the bookmark on, in the query's order (a row-value comparison)."""
        columns = ", ".join(expr for expr, _ in query.order)
        holes = ", ".join("?" for _ in query.order)
        op = "<=" if query.order[0][1] else ">="
        return f"(({columns}) {op} ({holes}))", list(mark)

    def _mark(self, scope: str, resource: str, query: Query, slot: int) -> tuple[Any, ...] | None:
        """The order key of row ``slot * STEP`` (None past the end)."""
        entry = self._entry(scope, resource, query)
        marks: dict[int, tuple[Any, ...] | None] = entry["marks"]
        if slot in marks:
            return marks[slot]
        known = max((k for k in marks if k < slot and marks[k] is not None), default=0)
        where, params = query.where, list(query.params)
        if known:
            bound, values = self._bound(query, marks[known])  # type: ignore[arg-type]
            where = f"{where} AND {bound}" if where else bound
            params += values
        found = self.store.select(
            scope,
            resource,
            where=where,
            params=params,
            order=query.order_sql,
            limit=1,
            offset=(slot - known) * self.STEP,
            deleted=query.deleted,
            columns=", ".join(expr for expr, _ in query.order),
        )
        marks[slot] = tuple(found[0]) if found else None
        return marks[slot]


# -- the app ------------------------------------------------------------------------------


class AccountingApp(ProductApp):
    """Sage Business Cloud Accounting v3.1 over the demo books."""

    product = "sage_accounting"

    def __init__(
        self,
        config: SandboxConfig | None = None,
        *,
        clock: Clock | None = None,
        store: Store | None = None,
    ) -> None:
        super().__init__(config, clock=clock, store=store)
        self.data = AccountingData(self.config.seed, self.config.rows)
        self.lead, self.second = self.data.lead, self.data.second
        self.resources = resources()
        self.pages = PageIndex(self.store)
        self.store.set_seeder(self._seed)
        self._write_lock = threading.RLock()

    def _seed(self, store: Store, scope: str, resource: str) -> Iterator[dict[str, Any]]:
        name = store.table_name(resource)
        res = self.resources.get(resource)
        for index, columns in self.indexes(res).items() if res else ():
            store.execute(f'CREATE INDEX IF NOT EXISTS "{name}_{index}" ON "{name}" ({columns})')
        yield from self.data(store, scope, resource)

    @staticmethod
    def indexes(res: Resource) -> dict[str, str]:
        """Indexes that serve the list queries (made before the demo rows go in).

        Live rows in order, with the times, so that counting and paging (also by
        ``updated_or_created_since``) read the index only; the sorts by creation; the
        selective equality filters (record ids, email: their SQL is the filter's own);
        contacts by contact type.
        """
        table = res.table
        out = {"live": "scope, deleted, seq, updated, created"}
        sort = table.pushdown.sort
        if sort and "created_at" in sort.columns:
            out["created"] = "scope, created, seq"
        for f in table.pushdown.parameters:
            if f.operator == "=" and _selective(table, f.column):
                expr = path_expr(table.column(f.column).path)
                nocase = " COLLATE NOCASE" if "email" in f.column else ""
                out[f"by_{f.column}"] = f"scope, {expr}{nocase}"
        for view in res.views:
            for parameter, value in view.fixed_parameters.items():
                member = _membership(table, parameter, value)
                if member is not None:
                    out[f"{parameter}_{value.lower()}"] = f"scope, deleted, ({member}), seq"
        return out

    # -- what the base class asks ------------------------------------------------------

    def error(self, err: ApiError) -> Response:
        problems = err.problems if isinstance(err, RecordInvalid) else [(err.source, err.message)]
        return json_response(
            [
                {"$severity": "error", "$dataCode": err.code, "$message": m, "$source": s or ""}
                for s, m in problems
            ],
            err.status,
            err.headers,
        )

    def rate_key(self, request: Request, principal: Any) -> str:
        """The limit counts per business, as Sage's does."""
        return request.headers.get("X-Business", "").strip() or self.lead

    def business(self, request: Request) -> str:
        """The store scope: the X-Business header's business, or the lead one."""
        wanted = request.headers.get("X-Business", "").strip()
        if not wanted:
            return self.lead
        if wanted in (self.lead, self.second):
            return wanted
        raise ApiError(
            403,
            "MultiUserAccessDenied",
            "You do not have access to the business given in X-Business",
            source="X-Business",
        )

    def route(self, request: Request, principal: Any) -> Response:
        path = request.path
        if not path.startswith(API_PREFIX + "/"):
            raise ApiError(404, "RecordNotFound", f"no resource at {path}")
        parts = [p for p in path[len(API_PREFIX) + 1 :].split("/") if p]
        if not parts:
            raise ApiError(404, "RecordNotFound", "no resource given")
        method = request.method
        if parts[0] == "businesses":
            return self.businesses(request, parts[1:])
        if parts[0] == "user" and len(parts) == 1:
            if method != "GET":
                raise _not_allowed(method, "GET")
            return json_response(self.data.user())
        scope = self.business(request)
        res = self.resources.get(parts[0])
        if res is None or len(parts) > 3:
            raise ApiError(404, "RecordNotFound", f"no resource at {path}")
        ops = res.table.operations
        if len(parts) == 1:
            if res.singleton:
                if method == "GET":
                    return json_response(self._load(scope, res, SETTINGS_KEY))
                if method == "PUT" and "update" in ops:
                    return self.update(request, scope, res, SETTINGS_KEY)
                raise _not_allowed(method, _allowed(res, collection=True))
            if method == "GET":
                return self.list_page(request, scope, res)
            if method == "POST" and "create" in ops:
                return self.create(request, scope, res)
            raise _not_allowed(method, _allowed(res, collection=True))
        key = parts[1]
        if len(parts) == 3:
            if method == "POST" and parts[2] in _actions(res):
                return self.action(scope, res, key, parts[2])
            if method == "GET" and (parts[0], parts[2]) in SUB_RESOURCES:
                return self.sub_resource(request, scope, res, key, parts[2])
            raise ApiError(404, "RecordNotFound", f"no resource at {path}")
        if method == "GET" and "get" in ops:
            return json_response(self._load(scope, res, key))
        if method == "PUT" and "update" in ops:
            return self.update(request, scope, res, key)
        if method == "DELETE" and "delete" in ops:
            return self.delete(request, scope, res, key)
        raise _not_allowed(method, _allowed(res, collection=False))

    # -- businesses ----------------------------------------------------------------------

    def businesses(self, request: Request, rest: list[str]) -> Response:
        res = self.resources["businesses"]
        if not rest:
            if request.method != "GET":
                raise _not_allowed(request.method, "GET")
            items = self.store.records(USER_SCOPE, "businesses")
            return json_response(
                {
                    "$total": len(items),
                    "$page": 1,
                    "$next": None,
                    "$back": None,
                    # /businesses says it snake case, unlike every other list.
                    "$items_per_page": BUSINESSES_PAGE_SIZE,
                    "$items": items,
                }
            )
        if len(rest) > 1:
            raise ApiError(404, "RecordNotFound", "no such resource")
        key = self.lead if rest[0] == "lead" else rest[0]
        if request.method == "GET":
            return json_response(self._load(USER_SCOPE, res, key))
        if request.method == "PUT":
            return self.update(request, USER_SCOPE, res, key)
        raise _not_allowed(request.method, "GET, PUT")

    # -- reads ---------------------------------------------------------------------------

    def _load(self, scope: str, res: Resource, key: str) -> dict[str, Any]:
        record = self.store.get(scope, res.name, key)
        if record is None:
            raise ApiError(
                404,
                "RecordNotFound",
                f"{singular(res.name).replace('_', ' ').capitalize()} {key} was not found",
            )
        return record

    def list_page(self, request: Request, scope: str, res: Resource) -> Response:
        table = res.table
        args = request.args
        per_page = _int_arg(args, "items_per_page", table.paging.default_page_size)
        per_page = max(1, min(per_page, table.paging.max_page_size))
        wanted_page = max(1, _int_arg(args, "page", 1))
        query = self.query(res, args)
        visible = self.visible_before()
        if visible is not None:
            query.add("updated < ?", visible)
        total = self.pages.count(scope, res.name, query)
        last = max(1, math.ceil(total / per_page))
        page = min(wanted_page, last)
        offset = (page - 1) * per_page
        rows = self.pages.rows(scope, res.name, query, offset, per_page) if total else []
        # A tombstone says when it was deleted, whatever the attributes asked for.
        extra = ("deleted_at",) if query.deleted and table.has_column("deleted_at") else ()
        items = self.project(res, rows, args.get("attributes"), extra)
        head = {
            "$total": total,
            "$page": page,
            "$next": self._link(res, args, page + 1, per_page) if page < last else None,
            "$back": self._link(res, args, page - 1, per_page) if page > 1 else None,
            "$itemsPerPage": per_page,
        }
        body = json.dumps(head, separators=(",", ":"))[:-1] + ',"$items":[' + ",".join(items)
        return Response(body + "]}", status=200, mimetype="application/json")

    @staticmethod
    def _link(res: Resource, args: MultiDict[str, str], page: int, per_page: int) -> str:
        """A relative link to another page, carrying the other query parameters."""
        rest = [(k, v) for k, v in args.items(multi=True) if k not in ("page", "items_per_page")]
        query = urlencode([("page", page), ("items_per_page", per_page), *rest], safe=":,")
        return f"/{res.name}?{query}"

    @staticmethod
    def project(
        res: Resource, rows: list[str], attributes: str | None, extra: tuple[str, ...] = ()
    ) -> list[str]:
        """Items as JSON text: the base attributes, or all, or the base and those named.

        Nested records that Sage lists as links (LISTED_AS_LINKS, from the recorded
        samples: a bank account's main_address) are ``{id, displayed_as, $path}`` here,
        whole only in the record's own GET."""
        links = LISTED_AS_LINKS.get(res.name, ())
        if attributes and attributes.strip().lower() == "all":
            if not links:
                return rows  # the stored JSON is the full record
            return [_as_links(text, links) for text in rows]
        projection = res.table.pushdown.projection
        always = projection.always if projection else ("id", "displayed_as", "$path")
        wanted = [*always, *extra]
        if attributes:
            wanted += [a.strip() for a in attributes.split(",") if a.strip()]
        out = []
        for text in rows:
            record = _decode(text)
            picked = {k: record[k] for k in wanted if k in record}
            out.append(_as_links(picked, links))
        return out

    # -- filters -------------------------------------------------------------------------

    def query(self, res: Resource, args: MultiDict[str, str]) -> Query:
        """The list query of the request's filter and sort parameters (SQL over the store)."""
        table = res.table
        query = Query()
        handled: set[str] = {"page", "items_per_page", "attributes", "nested_attributes", "sort"}
        groups: dict[str, list[Any]] = {}
        for f in table.pushdown.parameters:
            groups.setdefault(f.parameter, []).append(f)
        for name, filters in groups.items():
            handled.add(name)
            raw = args.get(name)
            if raw is None or raw == "":
                continue
            exact = [f for f in filters if f.exact] or filters
            if name == "updated_or_created_since":
                since = sortable(_time_arg(name, raw))
                query.add("updated >= ? OR created >= ?", since, since)
                continue
            likes = [f for f in exact if f.operator == "LIKE"]
            if likes:
                pattern = "%" + raw.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
                query.add(
                    " OR ".join(f"{self._expr(table, f.column)} LIKE ? ESCAPE '\\'" for f in likes),
                    *[pattern + "%"] * len(likes),
                )
            for f in exact:
                if f.operator == "LIKE":
                    continue
                expr = self._expr(table, f.column)
                value = self._value(table, f, name, raw, expr)
                op = f.operator if f.operator in ("=", ">=", "<=", ">", "<") else "="
                if op == "=" and "email" in f.column:
                    query.add(f"{expr} = ? COLLATE NOCASE", value)
                else:
                    query.add(f"{expr} {op} ?", value)
        deletions = table.deletions
        if deletions is not None:
            handled.add(deletions.parameter)
            raw = args.get(deletions.parameter)
            if raw:
                query.deleted = True
                op = ">=" if deletions.inclusive else ">"
                query.add(f"deleted {op} ?", sortable(_time_arg(deletions.parameter, raw)))
        for name, raw in args.items():
            if name in handled or raw == "":
                continue
            clause = self._extra_filter(res, name, raw)
            if clause is not None:
                query.add(*clause)
        self._sort(res, args, query)
        return query

    @staticmethod
    def _expr(table: Table, column_name: str) -> str:
        """SQL for a column: the store's time columns for updated/created, else the JSON."""
        if column_name == table.updated_column:
            return "updated"
        if column_name == table.created_column:
            return "created"
        return path_expr(table.column(column_name).path)

    @staticmethod
    def _value(table: Table, f: Any, name: str, raw: str, expr: str) -> Any:
        fmt = f.value_format
        if fmt == "datetime":
            instant = _time_arg(name, raw)
            return sortable(instant) if expr in ("updated", "created") else iso(instant)
        if fmt in ("date", "day_datetime"):
            return _time_arg(name, raw).date().isoformat()
        if fmt == "boolean":
            return _bool_arg(name, raw)
        return raw

    def _extra_filter(self, res: Resource, name: str, raw: str) -> tuple[Any, ...] | None:
        """Published filters the definition's pushdown leaves out (see the module doc)."""
        table = res.table
        if name == "exclude_system" and table.has_column("system"):
            if _bool_arg(name, raw):
                return ("coalesce(json_extract(data, '$.system'), 0) = 0",)
            return None
        if name in ("visible_in", "not_visible_in"):
            column = f"visible_in_{raw}"
            if not table.has_column(column):
                raise ApiError(422, "RecordInvalid", f"{raw!r} is not a valid area", source=name)
            want = 1 if name == "visible_in" else 0
            return (f"coalesce({path_expr((column,))}, 0) = ?", want)
        if not name.endswith("_id"):
            return None
        if table.has_column(name) and table.column(name).path[-1] == "id":
            return (f"{path_expr(table.column(name).path)} = ?", raw)
        member = _membership(table, name, raw)
        # The same SQL as the contact type indexes' (the value inline), so they serve it.
        return (f"({member}) = 1",) if member is not None else None

    def _sort(self, res: Resource, args: MultiDict[str, str], query: Query) -> None:
        raw = args.get("sort")
        sort = res.table.pushdown.sort
        if not raw or sort is None:
            return
        name, _, direction = raw.partition(":")
        name, direction = name.strip(), (direction.strip().lower() or "asc")
        if name not in sort.columns:
            raise ApiError(
                422,
                "RecordInvalid",
                f"sort by {name!r} is not available; use one of {', '.join(sort.columns)}",
                source="sort",
            )
        if direction not in ("asc", "desc"):
            raise ApiError(422, "RecordInvalid", "sort direction must be asc or desc", "sort")
        desc = direction == "desc"
        query.order = [(self._expr(res.table, name), desc), ("seq", desc)]

    # -- writes --------------------------------------------------------------------------

    def _now(self) -> datetime:
        # Sage's times have whole seconds: the store's column agrees with updated_at.
        return self.clock.now().replace(microsecond=0)

    def create(self, request: Request, scope: str, res: Resource) -> Response:
        table = res.table
        body = _body(request, table.operations["create"].envelope or singular(res.name))
        with self._write_lock:
            writer = Writer(self, scope, res)
            record = writer.record(body, creating=True)
            writer.raise_problems()
            if res.name == "contacts":
                self._unique_reference(scope, record.get("reference"), None)
            now = self._now()
            record = self.finish_new(scope, res, record, now)
            key = get_path(record, res.key_path)
            stored = dict(record)
            stored.update(_key=key, _created=sortable(now), _updated=sortable(now))
            try:
                self.store.insert_many(scope, res.name, [stored])
            except sqlite3.IntegrityError:
                raise ApiError(
                    422, "RecordInvalid", f"a record with key {key} already exists"
                ) from None
            self.pages.changed(scope, res.name)
        return json_response(record, 201)

    def finish_new(
        self, scope: str, res: Resource, record: dict[str, Any], now: datetime
    ) -> dict[str, Any]:
        """A complete new record: every field of the table, ids, times and computed values."""
        table = res.table
        full: dict[str, Any] = {
            c.path[0]: None for c in table.columns if not c.path[0].startswith("$parent")
        }
        for key, value in record.items():
            full[key] = value
        if res.key_path == ("id",):
            full["id"] = uuid.uuid4().hex
        key = get_path(full, res.key_path)
        if "$path" in full:
            full["$path"] = f"/{res.name}/{key}"
        for stamp in ("created_at", "updated_at"):
            if stamp in full:
                full[stamp] = iso(now)
        if "deleted_at" in full:
            full["deleted_at"] = None
        if res.name == "contacts":
            self._contact_defaults(scope, full)
        if res.children and any(k in full for k in ("net_amount", "total")):
            self._document_defaults(scope, res, full)
        if "displayed_as" in full and not full.get("displayed_as"):
            full["displayed_as"] = _display(full, res, key)
        full.pop("links", None)
        return with_links(res.name, full)

    def _unique_reference(self, scope: str, reference: Any, key: str | None) -> None:
        """A contact's reference is unique in its business: Sage answers 422 on its field."""
        if not reference:
            return
        clash = self.store.count(
            scope,
            "contacts",
            where="lower(json_extract(data, '$.reference')) = lower(?) AND key IS NOT ?",
            params=(str(reference), key),
        )
        if clash:
            raise ApiError(422, "RecordInvalid", "has already been taken", source="reference")

    def _contact_defaults(self, scope: str, record: dict[str, Any]) -> None:
        if not record.get("reference"):
            letters = "".join(ch for ch in record["name"].upper() if "A" <= ch <= "Z")[:3]
            total = self.store.count(scope, "contacts") + self.store.count(
                scope, "contacts", deleted=True
            )
            record["reference"] = f"{letters or 'C'}{total + 1:03d}"[:10]
        record["displayed_as"] = f"{record['name']} ({record['reference']})"
        for name, value in (
            ("balance", "0.00"),
            ("system", False),
            ("is_active", True),
            ("deletable", True),
            ("locale", "en"),
            ("currency", {"id": "GBP", "displayed_as": "Pound Sterling (GBP)"}),
        ):
            if record.get(name) is None:
                record[name] = value
        if isinstance(record.get("currency"), dict):
            record["currency"].setdefault("$path", f"/currencies/{record['currency']['id']}")

    def _document_defaults(self, scope: str, res: Resource, record: dict[str, Any]) -> None:
        self.compute(scope, res, record)
        prefix = DOCUMENT_PREFIXES.get(res.name)
        if prefix:
            total = self.store.count(scope, res.name) + self.store.count(
                scope, res.name, deleted=True
            )
            number = f"{prefix}-{total + 1}"
            record["displayed_as"] = number
            for field_name in ("invoice_number", "credit_note_number", "quote_number"):
                if field_name in record and not record.get(field_name):
                    record[field_name] = number
        if "status" in record and record.get("status") is None:
            record["status"] = self._lookup(scope, "artefact_statuses", RELEASED_STATUS)
        status = (record.get("status") or {}).get("id")
        if res.name in DOCUMENT_TYPES and record.get("transaction_type") is None:
            record["transaction_type"] = self._lookup(
                scope, "transaction_types", DOCUMENT_TYPES[res.name]
            )
        contact = record.get("contact")
        if isinstance(contact, dict) and "contact_name" in record:
            found = self.store.get(scope, "contacts", contact["id"]) or {}
            record["contact_name"] = record.get("contact_name") or found.get("name")
            record["contact_reference"] = record.get("contact_reference") or found.get("reference")
        if "currency" in record and record.get("currency") is None:
            record["currency"] = self._lookup(scope, "currencies", "GBP")
        if "total_amount" in record and "outstanding_amount" in record:
            record["outstanding_amount"] = "0.00" if status == "DRAFT" else record["total_amount"]
            if "total_paid" in record:
                record["total_paid"] = "0.00"
        for name, value in (("exchange_rate", "1.0"), ("editable", status == "DRAFT")):
            if name in record and record.get(name) is None:
                record[name] = value
        if "due_date" in record and not record.get("due_date") and record.get("date"):
            due = date.fromisoformat(record["date"]) + timedelta(days=30)
            record["due_date"] = due.isoformat()

    def compute(self, scope: str, res: Resource, record: dict[str, Any]) -> None:
        """Line amounts and the document's totals (net, tax, total), or a journal's total."""
        if res.name == "journals" or "journal_lines" in res.children:
            lines = record.get("journal_lines") or []
            debit = sum((Decimal(str(x.get("debit") or 0)) for x in lines), Decimal(0))
            credit = sum((Decimal(str(x.get("credit") or 0)) for x in lines), Decimal(0))
            if debit != credit:
                raise ApiError(
                    422,
                    "RecordInvalid",
                    f"debits ({money(debit)}) and credits ({money(credit)}) do not balance",
                    source="journal_lines",
                )
            if "total" in record:
                record["total"] = money(debit)
            return
        for field_name in res.children:
            lines = record.get(field_name)
            if not isinstance(lines, list) or not lines:
                continue
            if not all(isinstance(x, dict) and "unit_price" in x for x in lines):
                continue
            child = res.children[field_name]
            for n, line in enumerate(lines):
                rate = line.get("tax_rate")
                percent = Decimal(0)
                if isinstance(rate, dict) and rate.get("id"):
                    found = self.store.get(scope, "tax_rates", rate["id"]) or {}
                    percent = Decimal(str(found.get("percentage") or 0))
                lines[n] = fit(line_amounts(line, percent), child)
            totals = document_totals(lines)
            for name, value in totals.items():
                if name in record:
                    record[name] = value
            for name in ("net_amount", "tax_amount", "total_amount"):
                if f"base_currency_{name}" in record:
                    record[f"base_currency_{name}"] = totals[name]
            if "tax_analysis" in record:
                record["tax_analysis"] = tax_analysis(lines)

    def _lookup(self, scope: str, resource: str, key: str) -> dict[str, Any] | None:
        found = self.store.get(self._lookup_scope(scope), resource, key)
        if found is None:
            return None
        return {"id": key, "displayed_as": found.get("displayed_as"), "$path": f"/{resource}/{key}"}

    def _lookup_scope(self, scope: str) -> str:
        # Businesses live in the login's scope; what they link to lives in the lead business.
        return self.lead if scope == USER_SCOPE else scope

    def update(self, request: Request, scope: str, res: Resource, key: str) -> Response:
        table = res.table
        body = _body(request, table.operations["update"].envelope or singular(res.name))
        with self._write_lock:
            record = self._load(scope, res, key)
            if res.name in VOIDABLE and (record.get("status") or {}).get("id") == "VOID":
                raise ApiError(422, "RecordInvalid", "a void document cannot be changed", "status")
            writer = Writer(self, scope, res)
            changes = writer.record(body, creating=False)
            writer.raise_problems()
            if res.name == "contacts" and "reference" in changes:
                self._unique_reference(scope, changes["reference"], key)
            for name, value in changes.items():
                current = record.get(name)
                if isinstance(current, dict) and isinstance(value, dict) and "id" not in value:
                    current.update(value)  # an embedded object: merge (main_address...)
                else:
                    record[name] = value
            if res.name == "contacts" and ("name" in changes or "reference" in changes):
                record["displayed_as"] = f"{record['name']} ({record['reference']})"
            if res.children and any(k in changes for k in res.children):
                self.compute(scope, res, record)
                status = (record.get("status") or {}).get("id")
                if "outstanding_amount" in record and status not in ("PAID", "DRAFT"):
                    paid = Decimal(str(record.get("total_paid") or 0))
                    record["outstanding_amount"] = money(Decimal(record["total_amount"]) - paid)
            self._touch(scope, res, key, record)
        return json_response(record)

    def _touch(self, scope: str, res: Resource, key: str, record: dict[str, Any]) -> None:
        """Store a changed record with a new updated time."""
        now = self._now()
        if "updated_at" in record:
            record["updated_at"] = iso(now)
        self.store.replace(scope, res.name, key, record, updated=sortable(now))
        self.pages.changed(scope, res.name)

    def delete(self, request: Request, scope: str, res: Resource, key: str) -> Response:
        with self._write_lock:
            record = self._load(scope, res, key)
            status = (record.get("status") or {}).get("id")
            reason = _void_reason(request) if res.name in VOIDABLE else None
            if res.name in VOIDABLE and status != "DRAFT":
                if status == "VOID":
                    raise ApiError(422, "RecordInvalid", "the document is already void", "status")
                if not reason:
                    raise ApiError(
                        422,
                        "RecordInvalid",
                        "void_reason is required to void a document that is not a draft",
                        source="void_reason",
                    )
                record["status"] = self._lookup(scope, "artefact_statuses", "VOID")
                record["void_reason"] = reason
                record["editable"] = False
                for name in ("outstanding_amount", "base_currency_outstanding_amount"):
                    if name in record:
                        record[name] = "0.00"
                self._touch(scope, res, key, record)
                return json_response(record)
            self._tombstone(scope, res, key, record)
        return Response(status=204)

    def _tombstone(self, scope: str, res: Resource, key: str, record: dict[str, Any]) -> None:
        now = self._now()
        if res.table.has_column("deleted_at"):
            record["deleted_at"] = iso(now)
        self.store.mark_deleted(scope, res.name, key, sortable(now), record)
        self.pages.changed(scope, res.name)

    def sub_resource(
        self, request: Request, scope: str, res: Resource, key: str, name: str
    ) -> Response:
        """GET /attachments/{key}/file (the file's bytes when Accept asks for
        application/octet-stream, as the definition says it must; else the Attachment)
        and GET /bank_accounts/{key}/bank_feed (a Base: id, displayed_as, $path)."""
        record = self._load(scope, res, key)
        if name == "file":
            if "application/octet-stream" in request.headers.get("Accept", ""):
                try:
                    content = base64.b64decode(str(record.get("file") or ""), validate=False)
                except ValueError:
                    content = b""
                return Response(content, status=200, mimetype="application/octet-stream")
            return json_response(record)
        return json_response(
            {
                "id": record.get("id"),
                "displayed_as": record.get("displayed_as"),
                "$path": f"/bank_accounts/{key}/bank_feed",
            }
        )

    def action(self, scope: str, res: Resource, key: str, action: str) -> Response:
        with self._write_lock:
            record = self._load(scope, res, key)
            if action == "release":
                status = (record.get("status") or {}).get("id")
                if status != "DRAFT":
                    raise ApiError(
                        422, "RecordInvalid", f"only a draft can be released (it is {status})"
                    )
                record["status"] = self._lookup(scope, "artefact_statuses", RELEASED_STATUS)
                record["editable"] = False
                for name in ("outstanding_amount", "base_currency_outstanding_amount"):
                    if name in record:
                        record[name] = record.get("total_amount")
                self._touch(scope, res, key, record)
                return json_response(record, 201)
            if action == "reissue":
                # A new journal with the same content; the old one is voided (a tombstone).
                now = self._now()
                copy = json.loads(json.dumps(record))
                copy["id"] = uuid.uuid4().hex
                copy["$path"] = f"/{res.name}/{copy['id']}"
                for line in copy.get("journal_lines") or []:
                    line["id"] = uuid.uuid4().hex
                copy["created_at"] = copy["updated_at"] = iso(now)
                copy["deleted_at"] = None
                self._tombstone(scope, res, key, record)
                stored = dict(copy, _created=sortable(now), _updated=sortable(now))
                self.store.insert_many(scope, res.name, [stored])
                self.pages.changed(scope, res.name)
                return json_response(copy, 201)
        raise ApiError(404, "RecordNotFound", f"no action {action}")


# -- request bodies -------------------------------------------------------------------------


class Writer:
    """A create or update body turned into record fields, with Sage's 422 problems."""

    def __init__(self, app: AccountingApp, scope: str, res: Resource) -> None:
        self.app, self.scope, self.res = app, scope, res
        self.problems: list[tuple[str, str]] = []

    def raise_problems(self) -> None:
        if self.problems:
            raise RecordInvalid(self.problems)

    def problem(self, source: str, message: str) -> None:
        self.problems.append((source, message))

    def record(self, body: dict[str, Any], *, creating: bool) -> dict[str, Any]:
        return self.convert(self.res.table, body, creating=creating, where="", top=True)

    def convert(
        self, table: Table, body: dict[str, Any], *, creating: bool, where: str, top: bool
    ) -> dict[str, Any]:
        by_body_path = {
            c.body_path: c
            for c in table.columns
            if not c.read_only and not c.path[0].startswith("$")
        }
        record: dict[str, Any] = {}
        pairs: list[tuple[tuple[str, ...], Any]] = []
        for name, value in body.items():
            if isinstance(value, dict) and not any(p == (name,) for p in by_body_path):
                pairs += [((name, sub), v) for sub, v in value.items()]
            else:
                pairs.append(((name,), value))
        for path, value in pairs:
            column = by_body_path.get(path)
            if column is None:
                continue  # read-only or unknown: Sage ignores it
            source = where + ".".join(path)
            converted = self.value(column, value, source, creating=creating, top=top)
            if converted is _SKIP:
                continue
            target = column.path
            if column.body_path[-1].endswith("_id") and column.path[-1] == "id":
                target = column.path[:-1]
            set_path(record, target, converted)
        if creating:
            for column in table.columns:
                given = get_path(body, column.body_path), get_path(record, column.path[:1])
                if column.required_on_create and not column.read_only and all(map(_missing, given)):
                    name = ".".join(column.body_path)
                    self.problem(where + name, f"{name} is required")
        return record

    def value(self, column: Column, value: Any, source: str, *, creating: bool, top: bool) -> Any:
        last = column.body_path[-1]
        if value is None:
            return None
        if last.endswith("_ids") and column.type == "JSON":
            if not isinstance(value, list):
                self.problem(source, f"{last} must be a list of ids")
                return _SKIP
            target = link_target(singular(column.path[-1]))
            return [self.link(target, str(v), source) for v in value]
        if last.endswith("_id") and column.path[-1] == "id":
            return self.link(link_target(column.path[-2]), str(value), source)
        if top and column.type == "JSON" and column.path[0] in self.res.children:
            return self.lines(column.path[0], value, source, creating=creating)
        return self.scalar(column, value, source)

    def link(self, target: str | None, key: str, source: str) -> dict[str, Any]:
        if target is None or target not in self.app.resources:
            return {"id": key, "displayed_as": None}
        found = self.app.store.get(self.app._lookup_scope(self.scope), target, key)
        if found is None:
            self.problem(source, f"{singular(target).replace('_', ' ')} {key} does not exist")
            return {"id": key}
        return {"id": key, "displayed_as": found.get("displayed_as"), "$path": f"/{target}/{key}"}

    def lines(self, name: str, value: Any, source: str, *, creating: bool) -> Any:
        if not isinstance(value, list) or not all(isinstance(x, dict) for x in value):
            self.problem(source, f"{name} must be a list of objects")
            return _SKIP
        child = self.res.children[name]
        out = []
        for n, line in enumerate(value):
            line = self.item_defaults(dict(line))
            converted = self.convert(child, line, creating=True, where=f"{name}[{n}].", top=False)
            converted.setdefault("id", uuid.uuid4().hex)
            if child.has_column("displayed_as"):
                converted.setdefault("displayed_as", converted.get("description"))
            out.append(converted)
        if (
            creating
            and not out
            and any(c.required_on_create for c in self.res.table.columns if c.path == (name,))
        ):
            self.problem(source, f"{name} needs at least one line")
        return out

    def item_defaults(self, line: dict[str, Any]) -> dict[str, Any]:
        """A line naming a product or service takes its description, price, ledger and tax."""
        sales = not self.res.name.startswith("purchase")
        for kind in ("product", "service"):
            key = line.get(f"{kind}_id")
            if not key:
                continue
            item = self.app.store.get(self.scope, f"{kind}s", str(key))
            if item is None:
                return line  # the link check reports it
            line.setdefault("description", item.get("description"))
            ledger = item.get("sales_ledger_account" if sales else "purchase_ledger_account")
            tax = item.get("sales_tax_rate" if sales else "purchase_tax_rate")
            if isinstance(ledger, dict):
                line.setdefault("ledger_account_id", ledger.get("id"))
            if isinstance(tax, dict):
                line.setdefault("tax_rate_id", tax.get("id"))
            price = None
            if sales and kind == "product" and item.get("sales_prices"):
                price = item["sales_prices"][0].get("price")
            elif sales and kind == "service" and item.get("sales_rates"):
                price = item["sales_rates"][0].get("rate")
            else:
                price = item.get("cost_price")
            if price is not None:
                line.setdefault("unit_price", price)
        return line

    def scalar(self, column: Column, value: Any, source: str) -> Any:
        kind = column.type
        try:
            if kind == "DECIMAL":
                if isinstance(value, bool):
                    raise ValueError
                number = Decimal(str(value))
                if not number.is_finite():
                    raise ValueError
                if any(w in column.name for w in ("quantity", "rate", "percentage")):
                    return str(number)
                return money(number)
            if kind == "INTEGER":
                if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                    raise ValueError
                return int(value)
            if kind == "BOOLEAN":
                if isinstance(value, bool):
                    return value
                if str(value).lower() in ("true", "false"):
                    return str(value).lower() == "true"
                raise ValueError
            if kind == "DATE":
                return parse_time(str(value)[:10]).date().isoformat()
            if kind == "DATETIME":
                return iso(parse_time(str(value)))
            if kind == "TEXT":
                if isinstance(value, dict | list):
                    raise ValueError
                text = str(value)
                if column.max_length and len(text) > column.max_length:
                    self.problem(source, f"is too long (maximum is {column.max_length} characters)")
                return text
        except (ValueError, InvalidOperation, TypeError):
            expected = {
                "DECIMAL": "a number",
                "INTEGER": "an integer",
                "BOOLEAN": "true or false",
                "DATE": "a date (YYYY-MM-DD)",
                "DATETIME": "a date-time",
                "TEXT": "text",
            }[kind]
            self.problem(source, f"must be {expected}")
            return _SKIP
        return value


_SKIP = object()


# -- helpers ---------------------------------------------------------------------------------


def _selective(table: Table, column_name: str) -> bool:
    """Whether an equality filter picks few rows: an email, or the id of a record of a
    resource that grows with the books (a contact; not a status or a bank account)."""
    if "email" in column_name:
        return True
    path = table.column(column_name).path
    if len(path) < 2 or path[-1] != "id":
        return False
    return link_target(path[-2]) in GROWING


def _membership(table: Table, parameter: str, value: str) -> str | None:
    """SQL true when a link array of the record (``contact_types`` for ``contact_type_id``)
    holds the id ``value``; None if the table has no such array.

    The value is written inline (as an SQL literal of its JSON text), so that the query's
    expression is the index's own.
    """
    stem = parameter.removesuffix("_id")
    names = (stem + "s", stem + "es", stem[:-1] + "ies" if stem.endswith("y") else "")
    array = next((n for n in names if n and table.has_column(n)), None)
    if array is None or table.column(array).type != "JSON":
        return None
    needle = '"id":' + json.dumps(value, ensure_ascii=False)
    literal = "'" + needle.replace("'", "''") + "'"
    return f"instr({path_expr(table.column(array).path)}, {literal}) > 0"


def _actions(res: Resource) -> set[str]:
    """The POST /{key}/<action> paths of the table's procedures (release, reissue)."""
    out = set()
    for procedure in res.table.procedures:
        path = str(procedure.request.get("path", ""))
        parts = path.strip("/").split("/")
        if procedure.request.get("method") == "POST" and len(parts) == 3:
            out.add(parts[2])
    return out


def _allowed(res: Resource, *, collection: bool) -> str:
    ops = res.table.operations
    if collection:
        methods = ["GET"] if "list" in ops else []
        if "create" in ops and not res.singleton:
            methods.append("POST")
        if "update" in ops and res.singleton:
            methods.append("PUT")
    else:
        methods = [
            m for m, op in (("GET", "get"), ("PUT", "update"), ("DELETE", "delete")) if op in ops
        ]
    return ", ".join(methods)


def _not_allowed(method: str, allowed: str) -> ApiError:
    return ApiError(
        405,
        "MethodNotAllowed",
        f"{method} is not allowed here" + (f"; use {allowed}" if allowed else ""),
        headers={"Allow": allowed},
    )


def _body(request: Request, envelope: str) -> dict[str, Any]:
    """The object under the envelope key of a JSON body (415, 400, 422 otherwise)."""
    if request.mimetype != "application/json":
        raise ApiError(
            415,
            "UnsupportedMediaType",
            f"the body must be application/json, not {request.mimetype or 'nothing'}",
        )
    try:
        data = json.loads(request.get_data(as_text=True))
    except ValueError as exc:
        raise ApiError(400, "InvalidJSON", f"the body is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get(envelope), dict):
        raise ApiError(
            422,
            "RecordInvalid",
            f'the body must be an object {{"{envelope}": {{...}}}}',
            source=envelope,
        )
    return data[envelope]


# A projected page parses and writes 200 stored records: msgspec does it three times as
# fast as json, which kept the sandbox's one interpreter busy past the latency it adds
# when 16 requests are in flight (bench/latency.py).
_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode


def _as_links(record: str | dict[str, Any], fields: tuple[str, ...]) -> str:
    """The record as JSON text, those nested records cut to their link."""
    data = _decode(record) if isinstance(record, str) else record
    for name in fields:
        value = data.get(name)
        if isinstance(value, dict) and value.get("id") is not None:
            data[name] = {k: value.get(k) for k in ("id", "displayed_as", "$path")}
    return _encode(data).decode()


def _void_reason(request: Request) -> str | None:
    """The ``void_reason`` query parameter (Sage's definition: DELETE takes no body)."""
    if request.get_data():
        raise ApiError(
            400,
            "InvalidRequest",
            "DELETE takes no body: give void_reason as a query parameter",
            source="void_reason",
        )
    reason = request.args.get("void_reason")
    return str(reason).strip() if reason else None


def _int_arg(args: MultiDict[str, str], name: str, default: int) -> int:
    raw = args.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ApiError(422, "RecordInvalid", f"{name} must be an integer", source=name) from None


def _time_arg(name: str, raw: str) -> datetime:
    try:
        return parse_time(raw.replace(" ", "+"))  # a '+' offset arrives as a space if unencoded
    except ValueError:
        raise ApiError(
            422,
            "RecordInvalid",
            f"{name} must be a date (YYYY-MM-DD) or a date-time (YYYY-MM-DDThh:mm:ss+hh:mm)",
            source=name,
        ) from None


def _bool_arg(name: str, raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered not in ("true", "false", "1", "0"):
        raise ApiError(422, "RecordInvalid", f"{name} must be true or false", source=name)
    return lowered in ("true", "1")


def _display(record: dict[str, Any], res: Resource, key: Any) -> str:
    for name in ("name", "description", "reference", "item_code", "displayed_as"):
        if record.get(name):
            return str(record[name])
    return f"{singular(res.name).replace('_', ' ').title()} {key}"


def _missing(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}
