"""The Sage 200 emulator: the UK Standard and Professional APIs, served from the table definitions.

Both base paths answer, from the same data: ``/uk/sage200/accounts/v1`` (Standard)
and ``/uk/sage200extra/accounts/v1`` (Professional). A resource is the table whose
catalog operations have that path (``GET /customers`` is ``customers.list``); an
operation the table lacks is answered 405. Behaviour, as SAGE-APIS.md section 2 has it:

- OAuth bearer tokens (Sage ID scope ``openid profile email offline_access``); 401 when
  missing, invalid or expired. Rate limit per company (site and company headers).
- ``X-Site`` and ``X-Company`` on every resource but ``GET /sites``. A missing header is
  the gateway's ``400`` ``[{"$severity":"error","$dataCode":"HeaderNotFound",...}]``;
  an unknown site or company is ``403`` ``SiteNotFound``/``CompanyNotFound`` in the same
  format. The company is the store scope: each company has its own data.
- Lists are bare JSON arrays: ``$filter`` (odata.py), ``$orderby``, ``$select``,
  ``$expand`` (links such as ``customer`` are null unless expanded), ``$top`` (default
  500, at most 5000, more is a 400), ``$skip`` (a 400 without ``$orderby``), and
  ``$count=true``, whose body is the bare number of rows the filter keeps. Another
  ``$`` option, or a bad value, is a 400 naming it. Singletons (``/licence``,
  ``/current_user``) answer one object.
- ``GET /{resource}/{id}``, ``POST`` (200, the published definitions' status, not 201;
  the next integer id, required fields from the definition), ``PUT`` (a partial
  update; 200) and ``DELETE`` (204; Sage 200 keeps no tombstones). Fields the body
  should not set are ignored, as ASP.NET binding does.
  ``date_time_created``/``date_time_updated`` are UTC with milliseconds, by the sandbox
  clock. Order totals are the sums of their lines.
- Insert-only resources (invoices, credit notes, receipts, payments, bank entries):
  ``POST`` posts a transaction, visible afterwards in the matching posted-transactions
  list with its URN, moves the account's balance, and answers what the definition says
  (``{"urn": "..."}``); ``GET`` on them is 405.

Application errors (400, 404, 405) use the same error array; SAGE-APIS.md calls their
real format unconfirmed.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import date, datetime, timezone
from typing import Any

from werkzeug.wrappers import Request, Response

from sagesql.sandbox.app import ApiError, ProductApp, json_response
from sagesql.sandbox.clock import Clock, parse_time, sortable
from sagesql.sandbox.config import SandboxConfig
from sagesql.sandbox.odata import (
    Field,
    ODataError,
    datetime_text,
    filter_sql,
    orderby_sql,
    select_paths,
)
from sagesql.sandbox.records import get_path, has_path, set_path
from sagesql.sandbox.sage200_data import (
    CREDIT_NOTE,
    INVOICE,
    KEY_FIELD,
    PRODUCT,
    SALES_PAYMENT,
    SALES_RECEIPT,
    SIGN,
    SITES_SCOPE,
    Demo,
    blank_record,
    is_collection,
)
from sagesql.sandbox.store import Store, path_expr
from sagesql.schemas.catalog import Catalog, Column, Table, default_catalog, did_you_mean

API_PREFIXES = ("/uk/sage200extra/accounts/v1", "/uk/sage200/accounts/v1")
QUERY_OPTIONS = frozenset({"$filter", "$select", "$orderby", "$top", "$skip", "$count", "$expand"})

# Insert-only resources that post to a trader's account: ledger and transaction type.
TRADER_POSTINGS = {
    "sales_invoices": ("sales", INVOICE),
    "sales_credit_notes": ("sales", CREDIT_NOTE),
    "sales_receipts": ("sales", SALES_RECEIPT),
    "sales_payments": ("sales", SALES_PAYMENT),
    "purchase_invoices": ("purchase", INVOICE),
    "purchase_credit_notes": ("purchase", CREDIT_NOTE),
    "purchase_payments": ("purchase", SALES_RECEIPT),  # PurchasePaymentSalesReceipt
    "purchase_receipts": ("purchase", SALES_PAYMENT),
}
LEDGERS = {
    "sales": ("customers", "customer_id", "sales_posted_transactions"),
    "purchase": ("suppliers", "supplier_id", "purchase_posted_transactions"),
}
# Insert-only bank entries: bank transaction type and sign.
BANK_POSTINGS = {
    "bank_receipt": ("BankTransactionTypeReceipt", 1),
    "bank_payment": ("BankTransactionTypePayment", -1),
}
# The bank side of trader receipts and payments: (ledger, money in) -> type.
BANK_TYPES = {
    ("sales", True): "BankTransactionTypeCustomerReceipt",
    ("sales", False): "BankTransactionTypeCustomerRefund",
    ("purchase", False): "BankTransactionTypeSupplierPayment",
    ("purchase", True): "BankTransactionTypeSupplierRefund",
}
POSTED_TABLES = (
    "sales_posted_transactions",
    "purchase_posted_transactions",
    "bank_posted_transactions",
)
# Fields naming a record that must exist when a body sets them.
REFERENCES = {
    "customer_id": "customers",
    "supplier_id": "suppliers",
    "bank_id": "banks",
    "product_id": "products",
    "warehouse_id": "warehouses",
}
# Codes that must be unique within a company.
UNIQUE = {
    "customers": "reference",
    "suppliers": "reference",
    "products": "code",
    "banks": "code",
    "departments": "code",
    "cost_centres": "code",
    "warehouses": "name",
}
ORDERS = {"sop_orders": "sop_order_lines", "pop_orders": "pop_order_lines"}
ORDER_PRICE = {"sop_orders": "selling_unit_price", "pop_orders": "unit_buying_price"}


class Invalid(ApiError):
    """A 400 listing every field that is wrong, one error entry each."""

    def __init__(self, problems: list[tuple[str, str, str]]) -> None:
        code, message, source = problems[0]
        super().__init__(400, code, message, source)
        self.problems = problems


def now_ms(clock: Clock) -> datetime:
    """The sandbox time, to the millisecond (the precision Sage 200 writes)."""
    now = clock.now()
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def store_time(value: date | datetime) -> str:
    """A $filter date literal as the store's time column text."""
    if not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day, tzinfo=timezone.utc)
    return sortable(value)


def r2(value: float) -> float:
    return round(value + 0.0, 2)


def number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


class Sage200App(ProductApp):
    """Sage 200 over HTTP: sites, companies and every list resource of the catalog."""

    product = PRODUCT
    default_scope = "openid profile email offline_access"

    def __init__(
        self,
        config: SandboxConfig | None = None,
        *,
        clock: Clock | None = None,
        store: Store | None = None,
        catalog: Catalog | None = None,
    ) -> None:
        super().__init__(config, clock=clock, store=store)
        self.catalog = catalog or default_catalog()
        self.demo = Demo(self.config.seed, self.config.rows, self.catalog)
        self.store.set_seeder(self.demo)
        self._tables: dict[str, Table | None] = {}
        self._links: dict[tuple[str, str], Table | None] = {}
        # Ids come from max(id) + 1: one writer at a time.
        self._write_lock = threading.RLock()

    # -- the product's hooks -------------------------------------------------------------

    def rate_key(self, request: Request, principal: Any) -> str:
        site = request.headers.get("X-Site", "")
        company = request.headers.get("X-Company", "")
        return f"{site}/{company}"

    def error(self, err: ApiError) -> Response:
        problems = (
            err.problems
            if isinstance(err, Invalid)
            else [(err.code, err.message, err.source or "")]
        )
        return json_response(
            [
                {"$severity": "error", "$dataCode": code, "$message": message, "$source": source}
                for code, message, source in problems
            ],
            err.status,
            err.headers,
        )

    def route(self, request: Request, principal: Any) -> Response:
        rest = self._api_path(request.path)
        parts = [p for p in rest.split("/") if p]
        if not parts:
            raise ApiError(404, "ResourceNotFound", "name a resource, e.g. /customers")
        if parts == ["sites"]:
            # The one resource that needs neither X-Site nor X-Company.
            if request.method != "GET":
                raise self._not_allowed(request.method, ["GET"])
            sites = self._table("sites")
            assert sites is not None  # a table of the catalog
            return self.list_resource(request, SITES_SCOPE, sites)
        scope = self._scope(request)
        table = self._table(parts[0])
        if table is None or len(parts) > 2:
            raise ApiError(404, "ResourceNotFound", f"no resource at {rest}")
        ops = table.operations
        if len(parts) == 1:
            if request.method == "GET" and "list" in ops:
                return self.list_resource(request, scope, table)
            if request.method == "POST" and "create" in ops:
                return self.create(request, scope, table)
            allowed = [m for m, op in (("GET", "list"), ("POST", "create")) if op in ops]
            raise self._not_allowed(request.method, allowed)
        item = {"GET": "get", "PUT": "update", "DELETE": "delete"}
        if item.get(request.method) not in ops:
            allowed = [m for m, op in item.items() if op in ops]
            raise self._not_allowed(request.method, allowed)
        try:
            key = int(parts[1])
        except ValueError:
            raise ApiError(
                404, "RecordNotFound", f"{table.name} ids are integers, not {parts[1]!r}"
            ) from None
        if request.method == "GET":
            return self.get(request, scope, table, key)
        if request.method == "PUT":
            return self.update(request, scope, table, key)
        return self.delete(scope, table, key)

    # -- routing helpers -----------------------------------------------------------------

    def _api_path(self, path: str) -> str:
        for prefix in API_PREFIXES:
            if path == prefix or path.startswith(prefix + "/"):
                return path[len(prefix) :]
        raise ApiError(
            404,
            "ResourceNotFound",
            f"no API at {path}: use {API_PREFIXES[1]} (Standard) or {API_PREFIXES[0]} "
            "(Professional)",
        )

    def _table(self, name: str) -> Table | None:
        """The table served at /name (one of its operations has that path), or None."""
        if name not in self._tables:
            found = None
            if self.catalog.find(name, PRODUCT):
                table = self.catalog.table(name, PRODUCT)
                paths = {f"/{name}", f"/{name}/{{key}}"}
                if any(op.path in paths for op in table.operations.values()):
                    found = table
            self._tables[name] = found
        return self._tables[name]

    @staticmethod
    def _not_allowed(method: str, allowed: list[str]) -> ApiError:
        return ApiError(
            405,
            "MethodNotAllowed",
            f"{method} is not supported here; use {', '.join(allowed) or 'nothing'}",
            headers={"Allow": ", ".join(allowed)},
        )

    def _scope(self, request: Request) -> str:
        """The company (store scope) the X-Site and X-Company headers select."""
        for header in ("X-Site", "X-Company"):
            if not request.headers.get(header, "").strip():
                raise ApiError(
                    400,
                    "HeaderNotFound",
                    f"The request has no '{header}' header; GET /sites lists the site and "
                    "company ids",
                    source=header,
                )
        site = request.headers["X-Site"].strip()
        company = request.headers["X-Company"].strip()
        if site.lower() != self.demo.site_id.lower():
            raise ApiError(403, "SiteNotFound", f"no access to site {site!r}", source="X-Site")
        ids = {str(c.id) for c in self.demo.companies}
        if company not in ids:
            raise ApiError(
                403,
                "CompanyNotFound",
                f"no access to company {company!r} on this site",
                source="X-Company",
            )
        return company

    # -- reads ---------------------------------------------------------------------------

    def resolver(self, table: Table) -> Callable[[str], Field]:
        """Field paths (``name``, ``main_address/city``) of a table for $filter and $orderby."""
        columns = {"/".join(c.path): c for c in table.columns}

        def resolve(name: str) -> Field:
            column = columns.get(name)
            if column is None:
                hint = did_you_mean(name, columns)
                raise ODataError(
                    f"unknown field {name!r} of {table.name}" + (f" ({hint})" if hint else "")
                )
            # The store's own columns hold the record times (indexed) and the id order.
            if column.path == ("date_time_updated",):
                return Field("updated", "DATETIME", nullable=False, convert=store_time)
            if column.path == ("date_time_created",):
                return Field("created", "DATETIME", nullable=False, convert=store_time)
            if column.path == ("id",) and table.key == "id":
                return Field(path_expr(column.path), "INTEGER", nullable=False, order_sql="seq")
            return Field(path_expr(column.path), column.type)

        return resolve

    def list_resource(self, request: Request, scope: str, table: Table) -> Response:
        args = request.args
        for name in args:
            if name.startswith("$") and name not in QUERY_OPTIONS:
                raise self._bad_query(f"unknown query option {name!r}", name)
        resolve = self.resolver(table)
        where, params = self._where(args.get("$filter"), resolve)
        order = "seq"  # insertion order, which is id order
        orderby = args.get("$orderby")
        if orderby is not None:
            try:
                order = ", ".join([*orderby_sql(orderby, resolve), "seq"])
            except ODataError as err:
                raise self._bad_query(f"$orderby: {err}", "$orderby") from None
        paging = table.paging
        top = self._integer(args, "$top", paging.default_page_size)
        if top > paging.max_page_size:
            raise self._bad_query(f"$top={top} is over the limit of {paging.max_page_size}", "$top")
        skip = self._integer(args, "$skip", 0)
        if "$skip" in args and orderby is None:
            raise self._bad_query(
                "$skip needs $orderby (e.g. $orderby=id&$top=500&$skip=500)", "$skip"
            )
        select, expand = self._projection(table, args)
        count = args.get("$count")
        if count is not None and count.lower() not in ("true", "false"):
            raise self._bad_query(f"$count must be true or false, not {count!r}", "$count")
        if count is not None and count.lower() == "true":
            # The number of rows the filter keeps, whatever $top and $skip say.
            return json_response(self.store.count(scope, table.name, where=where, params=params))
        rows = self.store.select(
            scope,
            table.name,
            where=where,
            params=params,
            order=order,
            limit=top if paging.style != "none" else 1,
            offset=skip,
        )
        records = [self.shape(scope, table, json.loads(row[0]), select, expand) for row in rows]
        if paging.style == "none":  # /licence, /current_user: one object
            if not records:
                raise ApiError(404, "RecordNotFound", f"no {table.name}")
            return json_response(records[0])
        return json_response(records)

    def _where(self, text: str | None, resolve: Callable[[str], Field]) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        if text is not None:
            try:
                sql, params = filter_sql(text, resolve)
            except ODataError as err:
                raise self._bad_query(f"$filter: {err}", "$filter") from None
            clauses.append(sql)
        lag = self.visible_before()
        if lag is not None:
            # Index lag: the newest changes are not listed yet.
            clauses.append("updated < ?")
            params.append(lag)
        return " AND ".join(f"({c})" for c in clauses), params

    def _bad_query(self, message: str, option: str) -> ApiError:
        return ApiError(400, "InvalidQuery", message, source=option)

    def _integer(self, args: Any, name: str, default: int) -> int:
        raw = args.get(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise self._bad_query(f"{name} must be a whole number, not {raw!r}", name) from None
        if value < 0:
            raise self._bad_query(f"{name} must not be negative", name)
        return value

    def _projection(
        self, table: Table, args: Any
    ) -> tuple[list[tuple[str, ...]] | None, list[str]]:
        """The $select paths (None for everything) and the $expand links, checked."""
        select: list[tuple[str, ...]] | None = None
        expand: list[str] = []
        paths = [c.path for c in table.columns]
        if args.get("$select") is not None:
            try:
                select = select_paths(args["$select"])
            except ODataError as err:
                raise self._bad_query(f"$select: {err}", "$select") from None
            for path in select:
                if not any(p[: len(path)] == path for p in paths):
                    shown = "/".join(path)
                    hint = did_you_mean(shown, ("/".join(p) for p in paths))
                    raise self._bad_query(
                        f"$select: unknown field {shown!r} of {table.name}"
                        + (f" ({hint})" if hint else ""),
                        "$select",
                    )
        if args.get("$expand") is not None:
            try:
                wanted = select_paths(args["$expand"], "$expand")
            except ODataError as err:
                raise self._bad_query(f"$expand: {err}", "$expand") from None
            links = {c.path[0] for c in table.columns if self._is_link(c)}
            for path in wanted:
                if len(path) != 1 or path[0] not in links:
                    raise self._bad_query(
                        f"$expand: {'/'.join(path)!r} is not a link of {table.name}"
                        + (f"; links: {', '.join(sorted(links))}" if links else ""),
                        "$expand",
                    )
                expand.append(path[0])
        return select, expand

    @staticmethod
    def _is_link(column: Column) -> bool:
        return column.type == "JSON" and len(column.path) == 1 and not is_collection(column)

    def shape(
        self,
        scope: str,
        table: Table,
        record: dict[str, Any],
        select: list[tuple[str, ...]] | None = None,
        expand: list[str] | None = None,
    ) -> dict[str, Any]:
        """A stored record as the API answers it: links expanded, fields selected."""
        record.pop(KEY_FIELD, None)
        for link in expand or ():
            record[link] = self._expanded(scope, table, link, record)
        if select is None:
            return record
        out: dict[str, Any] = {}
        for path in select:
            if has_path(record, path):
                set_path(out, path, get_path(record, path))
        return out

    def _expanded(
        self, scope: str, table: Table, link: str, record: dict[str, Any]
    ) -> dict[str, Any] | None:
        """The record a link names (``customer`` by ``customer_id``), or null."""
        target = self._link_table(table, link)
        key = record.get(f"{link}_id")
        if target is None or not isinstance(key, int):
            return None
        found = self.store.get(scope, target.name, key)
        if found is not None:
            found.pop(KEY_FIELD, None)
        return found

    def _link_table(self, table: Table, link: str) -> Table | None:
        """The table of a link: customer -> customers, default_tax_code -> tax_codes."""
        cache_key = (table.name, link)
        if cache_key not in self._links:
            found = None
            words = link.split("_")
            for start in range(len(words)):
                stem = "_".join(words[start:])
                plural = stem[:-1] + "ies" if stem.endswith("y") else stem + "s"
                candidate = self._table(plural)
                if candidate is not None and "get" in candidate.operations:
                    found = candidate
                    break
            self._links[cache_key] = found
        return self._links[cache_key]

    def get(self, request: Request, scope: str, table: Table, key: int) -> Response:
        record = self._existing(scope, table, key)
        select, expand = self._projection(table, request.args)
        return json_response(self.shape(scope, table, record, select, expand))

    def _existing(self, scope: str, table: Table, key: int) -> dict[str, Any]:
        record = self.store.get(scope, table.name, key)
        if record is None:
            raise ApiError(404, "RecordNotFound", f"{table.name} {key} does not exist")
        return record

    # -- writes --------------------------------------------------------------------------

    def _body(self, request: Request) -> dict[str, Any]:
        try:
            body = json.loads(request.get_data(as_text=True) or "null")
        except ValueError as err:
            raise ApiError(400, "InvalidRequestBody", f"the body is not JSON: {err}") from None
        if not isinstance(body, dict):
            raise ApiError(400, "InvalidRequestBody", "the body must be a JSON object")
        return body

    def _values(
        self, table: Table, body: dict[str, Any], *, creating: bool
    ) -> dict[tuple[str, ...], Any]:
        """The writable values of a body by record path, checked against the columns."""
        problems: list[tuple[str, str, str]] = []
        values: dict[tuple[str, ...], Any] = {}
        for column in table.columns:
            field = "/".join(column.body_path)
            present = has_path(body, column.body_path)
            value = get_path(body, column.body_path)
            if creating and column.required_on_create and (value is None or value == ""):
                problems.append(("RequiredFieldMissing", f"'{field}' is required", field))
                continue
            # Read-only fields are ignored, but for the few a POST must set (write-once).
            if not present or (column.read_only and not (creating and column.required_on_create)):
                continue
            checked = self._checked(column, value, field, problems)
            if checked is not _BAD:
                values[column.path] = checked
        if problems:
            raise Invalid(problems)
        return values

    @staticmethod
    def _checked(
        column: Column, value: Any, field: str, problems: list[tuple[str, str, str]]
    ) -> Any:
        """The value to store for a column, or _BAD after noting the problem."""
        if value is None:
            return None
        kind = column.type
        expected = {
            "INTEGER": "an integer",
            "DECIMAL": "a number",
            "BOOLEAN": "true or false",
            "TEXT": "a string",
            "DATETIME": "a date-time string",
            "DATE": "a date string",
        }.get(kind, "a collection" if is_collection(column) else "an object")
        ok = {
            "INTEGER": isinstance(value, int) and not isinstance(value, bool),
            "DECIMAL": isinstance(value, (int, float)) and not isinstance(value, bool),
            "BOOLEAN": isinstance(value, bool),
            "TEXT": isinstance(value, str),
            "DATETIME": isinstance(value, str),
            "DATE": isinstance(value, str),
        }.get(kind, isinstance(value, list if is_collection(column) else dict))
        if not ok:
            problems.append(("InvalidFieldValue", f"'{field}' must be {expected}", field))
            return _BAD
        if kind == "TEXT" and column.max_length and len(value) > column.max_length:
            problems.append(
                (
                    "InvalidFieldValue",
                    f"'{field}' is longer than {column.max_length} characters",
                    field,
                )
            )
            return _BAD
        if kind in ("DATETIME", "DATE"):
            try:
                return datetime_text(parse_time(value))
            except ValueError:
                problems.append(("InvalidFieldValue", f"'{field}' is not a date-time", field))
                return _BAD
        if kind == "DECIMAL":
            return float(value)
        return value

    def _check_references(self, scope: str, values: dict[tuple[str, ...], Any]) -> None:
        problems = []
        for path, value in values.items():
            target = REFERENCES.get(path[-1])
            if target and value is not None and self.store.get(scope, target, value) is None:
                field = "/".join(path)
                problems.append(("RecordNotFound", f"'{field}': no {target} {value}", field))
        if problems:
            raise Invalid(problems)

    def _check_unique(
        self, scope: str, table: Table, record: dict[str, Any], key: int | None
    ) -> None:
        field = UNIQUE.get(table.name)
        if field is None:
            return
        clash = self.store.select(
            scope,
            table.name,
            where=f"{path_expr((field,))} = ? COLLATE NOCASE AND key != ?",
            params=[record.get(field), str(key)],
            limit=1,
            columns="key",
        )
        if clash:
            raise Invalid(
                [
                    (
                        "DuplicateValue",
                        f"a {table.name} record has {field} {record.get(field)!r}",
                        field,
                    )
                ]
            )

    def _next_id(self, scope: str, resource: str, *, take: bool = True) -> int:
        """The next id of a resource: an identity, never reused after a delete."""
        name = f"sage200.next_id/{scope}/{resource}"
        key = max(self.store.max_key(scope, resource) + 1, int(self.store.meta(name) or 0))
        self.store.set_meta(name, str(key + 1 if take else key))
        return key

    def _set_times(
        self, record: dict[str, Any], table: Table, now: datetime, *, created: bool
    ) -> None:
        if table.created_column and created:
            record[table.created_column] = datetime_text(now)
        if table.updated_column:
            record[table.updated_column] = datetime_text(now)

    def create(self, request: Request, scope: str, table: Table) -> Response:
        body = self._body(request)
        if "list" not in table.operations:
            return self.post(scope, table, body)
        values = self._values(table, body, creating=True)
        self._check_references(scope, values)
        with self._write_lock:
            record = blank_record(table)
            for path, value in values.items():
                set_path(record, path, value)
            key = self._next_id(scope, table.name)
            if table.key:
                record[table.key] = key
            else:
                record[KEY_FIELD] = str(key)
            self._check_unique(scope, table, record, None)
            if table.name in ORDERS:
                self._order_lines(scope, table, record, {})
            now = now_ms(self.clock)
            self._set_times(record, table, now, created=True)
            self.store.insert(
                scope, table.name, dict(record), created=sortable(now), updated=sortable(now)
            )
        return json_response(
            self.shape(scope, table, record), 200
        )  # the published definitions answer a POST with 200

    def update(self, request: Request, scope: str, table: Table, key: int) -> Response:
        body = self._body(request)
        with self._write_lock:
            record = self._existing(scope, table, key)
            values = self._values(table, body, creating=False)
            self._check_references(scope, values)
            previous_lines = {
                line.get("id"): line for line in record.get("lines") or [] if isinstance(line, dict)
            }
            for path, value in values.items():
                set_path(record, path, value)
            self._check_unique(scope, table, record, key)
            if table.name in ORDERS and ("lines",) in values:
                self._order_lines(scope, table, record, previous_lines)
            now = now_ms(self.clock)
            self._set_times(record, table, now, created=False)
            self.store.replace(scope, table.name, str(key), record, updated=sortable(now))
        return json_response(self.shape(scope, table, record))

    def delete(self, scope: str, table: Table, key: int) -> Response:
        with self._write_lock:
            self._existing(scope, table, key)
            self._next_id(scope, table.name, take=False)  # remember the highest id
            self.store.remove(scope, table.name, str(key))
        return Response(status=204)

    # -- orders --------------------------------------------------------------------------

    def _order_lines(
        self,
        scope: str,
        table: Table,
        record: dict[str, Any],
        previous: dict[Any, dict[str, Any]],
    ) -> None:
        """Check and complete an order's lines, then total them on the order."""
        line_table = self.catalog.table(ORDERS[table.name], PRODUCT)
        parent_key = line_table.parent.key_column if line_table.parent else "order_id"
        price_field = ORDER_PRICE[table.name]
        next_id = self._max_line_id(scope, table) + 1
        lines = []
        problems: list[tuple[str, str, str]] = []
        for index, given in enumerate(record.get("lines") or []):
            if not isinstance(given, dict):
                problems.append(
                    ("InvalidFieldValue", f"'lines[{index}]' must be an object", "lines")
                )
                continue
            old = previous.get(given.get("id"))
            try:
                values = self._values(line_table, given, creating=old is None)
                self._check_references(scope, values)
            except Invalid as err:
                problems += [(c, f"lines[{index}]: {m}", f"lines/{s}") for c, m, s in err.problems]
                continue
            line = dict(old) if old else blank_record(line_table)
            for path, value in values.items():
                set_path(line, path, value)
            if old is None:
                line["id"], next_id = next_id, next_id + 1
            line[parent_key] = record["id"]
            line["line_number"] = index + 1
            self._price_line(scope, line, price_field)
            lines.append(line)
        if problems:
            raise Invalid(problems)
        record["lines"] = lines
        net = r2(sum(number(line.get("line_total_value")) for line in lines))
        tax = r2(sum(number(line.get("line_tax_value")) for line in lines))
        record.update(subtotal_goods_value=net, total_net_value=net, total_tax_value=tax)
        record["total_gross_value"] = r2(net + tax)

    def _price_line(self, scope: str, line: dict[str, Any], price_field: str) -> None:
        product = self.store.get(scope, "products", line.get("product_id") or 0)
        price = line.get(price_field)
        if not price and product is not None:
            price = product.get("standard_cost")  # no price book here: sell at cost
        price = number(price)
        line[price_field] = price
        discount = number(line.get("unit_discount_percent"))
        unit = r2(price * (1 - discount / 100))
        line["unit_discount_value"] = r2(price - unit)
        line["discounted_unit_price"] = unit
        net = r2(unit * number(line.get("line_quantity")))
        tax_id = line.get("tax_code_id") or (product or {}).get("tax_code_id")
        tax_code = self.store.get(scope, "tax_codes", tax_id) if tax_id else None
        rate = number((tax_code or {}).get("tax_rate"))
        line["tax_code_id"] = tax_id
        line["line_total_value"] = net
        line["line_tax_value"] = r2(net * rate / 100)

    def _max_line_id(self, scope: str, table: Table) -> int:
        name = self.store.ensure(scope, table.name)
        rows = self.store.execute(
            f"SELECT max(json_extract(j.value, '$.id')) FROM \"{name}\", "
            "json_each(data, '$.lines') AS j WHERE scope = ?",
            (scope,),
        )
        return int(rows[0][0] or 0)

    # -- insert-only postings ------------------------------------------------------------

    def post(self, scope: str, table: Table, body: dict[str, Any]) -> Response:
        """POST to an insert-only resource: post the transaction it describes."""
        values = self._values(table, body, creating=True)
        self._check_references(scope, values)
        flat = {"/".join(path): value for path, value in values.items()}
        with self._write_lock:
            now = now_ms(self.clock)
            if table.name in TRADER_POSTINGS:
                urn = self._post_to_trader(scope, table.name, flat, now)
                return json_response(
                    {"urn": str(urn)}, 200
                )  # the published definitions answer a POST with 200
            if table.name in BANK_POSTINGS:
                kind, sign = BANK_POSTINGS[table.name]
                value = flat.get("cheque_value")
                if value is None:
                    value = sum(
                        number(item.get("gross_value"))
                        or number(item.get("goods_value")) + number(item.get("tax_value"))
                        for item in flat.get("nominal_analysis_items") or []
                        if isinstance(item, dict)
                    )
                urn = self._next_urn(scope)
                self._post_to_bank(
                    scope, flat["bank_id"], kind, sign * number(value), flat, urn, now
                )
                return json_response(
                    {"urn": str(urn)}, 200
                )  # the published definitions answer a POST with 200
            if table.name == "bank_transfer":
                return self._transfer(scope, table, flat, now)
            if table.name == "sales_allocations":
                return self._allocate(scope, flat, now)
        # Postings with nothing to show here (stock transfers): accepted as sent.
        return json_response({}, 200)  # the published definitions answer a POST with 200

    def _next_urn(self, scope: str) -> int:
        highest = 0
        for name in POSTED_TABLES:
            table = self.store.ensure(scope, name)
            rows = self.store.execute(
                f"SELECT max(json_extract(data, '$.urn')) FROM \"{table}\" WHERE scope = ?",
                (scope,),
            )
            highest = max(highest, int(rows[0][0] or 0))
        return highest + 1

    def _insert_posted(
        self, scope: str, name: str, fields: dict[str, Any], now: datetime
    ) -> dict[str, Any]:
        table = self.catalog.table(name, PRODUCT)
        record = blank_record(table)
        record.update(fields)
        record["id"] = self._next_id(scope, name)
        self._set_times(record, table, now, created=True)
        self.store.insert(scope, name, dict(record), created=sortable(now), updated=sortable(now))
        return record

    def _touch(
        self, scope: str, resource: str, key: int, changes: dict[str, Any], now: datetime
    ) -> None:
        record = self.store.get(scope, resource, key)
        if record is None:
            return
        for field, delta in changes.items():
            record[field] = r2(number(record.get(field)) + delta)
        record["date_time_updated"] = datetime_text(now)
        self.store.replace(scope, resource, str(key), record, updated=sortable(now))

    def _post_to_trader(
        self, scope: str, resource: str, flat: dict[str, Any], now: datetime
    ) -> int:
        ledger, kind = TRADER_POSTINGS[resource]
        traders, trader_field, posted = LEDGERS[ledger]
        trader_id = flat[trader_field]
        if kind in (INVOICE, CREDIT_NOTE):
            goods = flat.get("document_goods_value")
            if goods is None:
                goods = sum(
                    number(i.get("value"))
                    for i in flat.get("nominal_analysis_items") or []
                    if isinstance(i, dict)
                )
            tax = flat.get("document_tax_value")
            if tax is None:
                tax = sum(
                    number(i.get("tax_amount"))
                    for i in flat.get("tax_analysis_items") or []
                    if isinstance(i, dict)
                )
        else:
            goods, tax = number(flat.get("cheque_value")), 0.0
        goods, tax = r2(number(goods)), r2(number(tax))
        gross = r2(goods + tax)
        discount = r2(number(flat.get("document_discount_value")))
        day = flat.get("transaction_date") or datetime_text(
            now.replace(hour=0, minute=0, second=0, microsecond=0)
        )
        urn = self._next_urn(scope)
        reference = flat.get("reference") or ""
        self._insert_posted(
            scope,
            posted,
            {
                trader_field: trader_id,
                "trader_transaction_type": kind,
                "reference": reference,
                "second_reference": flat.get("second_reference") or "",
                "transaction_date": day,
                "posted_date": datetime_text(now),
                "due_date": flat.get("due_date") or day,
                "document_goods_value": goods,
                "document_tax_value": tax,
                "document_gross_value": gross,
                "document_discount_value": discount,
                "document_outstanding_value": gross,
                "base_goods_value": goods,
                "base_tax_value": tax,
                "base_gross_value": gross,
                "control_value_in_base_currency": gross,
                "exchange_rate": number(flat.get("exchange_rate")) or 1.0,
                "settled_immediately": bool(flat.get("settled_immediately")),
                "discount_days": flat.get("discount_days") or 0,
                "urn": urn,
                "user_name": "MANAGER",
            },
            now,
        )
        self._touch(scope, traders, trader_id, {"balance": SIGN[kind] * gross}, now)
        if kind in (SALES_RECEIPT, SALES_PAYMENT) and flat.get("bank_id"):
            # Money in for sales receipts and purchase receipts, out for the payments.
            money_in = (ledger == "sales") == (kind == SALES_RECEIPT)
            self._post_to_bank(
                scope,
                flat["bank_id"],
                BANK_TYPES[(ledger, money_in)],
                gross if money_in else -gross,
                {"reference": reference, "transaction_date": day},
                urn,
                now,
                source="Sales" if ledger == "sales" else "Purchases",
            )
        return urn

    def _post_to_bank(
        self,
        scope: str,
        bank_id: int,
        kind: str,
        value: float,
        flat: dict[str, Any],
        urn: int,
        now: datetime,
        source: str = "Cash Book",
    ) -> dict[str, Any]:
        day = flat.get("transaction_date") or datetime_text(
            now.replace(hour=0, minute=0, second=0, microsecond=0)
        )
        record = self._insert_posted(
            scope,
            "bank_posted_transactions",
            {
                "bank_id": bank_id,
                "bank_transaction_type": kind,
                "entry_description": flat.get("narrative")
                or kind.removeprefix("BankTransactionType"),
                "reference": flat.get("reference") or "",
                "second_reference": flat.get("second_reference") or "",
                "transaction_date": day,
                "posted_date": datetime_text(now),
                "cheque_value": r2(value),
                "cheque_to_account_currency_rate": 1.0,
                "bank_cheque_to_base_currency_rate": 1.0,
                "cheque_currency_id": 1,
                "source": source,
                "urn": urn,
                "user_name": "MANAGER",
            },
            now,
        )
        self._touch(scope, "banks", bank_id, {"balance": value, "balance_in_base": value}, now)
        return record

    def _transfer(self, scope: str, table: Table, flat: dict[str, Any], now: datetime) -> Response:
        problems = []
        for field in ("bank_from_id", "bank_to_id"):
            if self.store.get(scope, "banks", flat[field]) is None:
                problems.append(("RecordNotFound", f"'{field}': no banks {flat[field]}", field))
        if flat["bank_from_id"] == flat["bank_to_id"]:
            problems.append(("InvalidFieldValue", "a transfer needs two banks", "bank_to_id"))
        if problems:
            raise Invalid(problems)
        value = number(flat["payment_value"])
        urn = self._next_urn(scope)
        self._post_to_bank(
            scope, flat["bank_from_id"], "BankTransactionTypeTransferOut", -value, flat, urn, now
        )
        self._post_to_bank(
            scope, flat["bank_to_id"], "BankTransactionTypeTransferIn", value, flat, urn, now
        )
        answer = blank_record(table)
        answer.update(flat)
        return json_response(answer, 200)  # the published definitions answer a POST with 200

    def _allocate(self, scope: str, flat: dict[str, Any], now: datetime) -> Response:
        """Allocate posted sales transactions of one customer against each other."""
        lines = flat.get("allocation_lines") or []
        problems = []
        found = []
        for index, line in enumerate(lines):
            key = line.get("posted_tran_id") if isinstance(line, dict) else None
            record = (
                self.store.get(scope, "sales_posted_transactions", key)
                if isinstance(key, int)
                else None
            )
            if record is None or record.get("customer_id") != flat["customer_id"]:
                problems.append(
                    (
                        "RecordNotFound",
                        f"allocation_lines[{index}]: no posted transaction {key} of customer "
                        f"{flat['customer_id']}",
                        "allocation_lines",
                    )
                )
                continue
            found.append((record, number(line.get("value_to_allocate"))))
        if problems or not found:
            raise Invalid(
                problems or [("InvalidFieldValue", "nothing to allocate", "allocation_lines")]
            )
        for record, value in found:
            record["document_allocated_value"] = r2(
                number(record.get("document_allocated_value")) + value
            )
            record["document_outstanding_value"] = r2(
                number(record.get("document_outstanding_value")) - value
            )
            record["date_time_updated"] = datetime_text(now)
            self.store.replace(
                scope, "sales_posted_transactions", str(record["id"]), record, updated=sortable(now)
            )
        return json_response(
            {"customer_id": flat["customer_id"], "allocation_lines": lines}, 200
        )  # the published definitions answer a POST with 200


class _Bad:
    """The marker of a value that failed its check."""


_BAD: Any = _Bad()
