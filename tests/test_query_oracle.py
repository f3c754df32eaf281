"""Oracle property test: the rows sagesql returns equal SQLite's over the sandbox's full data.

For each product a sandbox is started once per module. The full data of a few of its
tables is read page by page with plain ``requests`` and no filter, flattened with the
engine's own flattener (``engine.fetch.flattener``, so both sides see the same stored
values) and loaded into a plain sqlite3 database: the oracle, with sagesql's SQL
functions registered (``engine.local.register_functions``: exact sum/total/avg,
regexp) so that both sides compute the same SQL.

Hypothesis then generates SELECT statements over those tables: filters of every
pushable and non-pushable kind (comparisons, BETWEEN, IN, LIKE with ``%`` and ``_``,
IS [NOT] NULL, AND/OR/NOT nesting) on TEXT, INTEGER, DECIMAL, BOOLEAN, DATE and
DATETIME columns, with literals drawn from the data, its boundaries and values not in
it; ORDER BY, LIMIT/OFFSET, joins, aggregates with GROUP BY/HAVING. Each statement
runs through sagesql (``engine.pipeline.run`` over real HTTP, with whatever pushdown,
key lookups and paging the planner chooses) and through the oracle:

- an ordered statement (its ORDER BY ends with a unique key) must give the same list;
- an unordered one the same multiset of rows;
- LIMIT/OFFSET without ORDER BY (any rows may come): as many rows as SQL says, each
  one of the oracle's rows without the LIMIT.

Each statement is also run in the shapes BI tools, pandas and DB-API wrappers write
(``test_wrapped_statements_agree_with_the_oracle``): ``SELECT count(*) FROM (<q>) AS t``,
``SELECT * FROM (<q>) AS t WHERE <a random filter on its output columns>`` and a CTE,
so that no shortcut taken for a table inside a derived table changes the answer; every
statement's --explain must be the plan it ran with.

Literal normalisation on the oracle side follows the issue's type rules and nothing
else: a DATETIME column holds UTC text 'YYYY-MM-DD HH:MM:SS', with '.fff' when the
fraction is not zero (engine/values.py says why), and a literal compared with it means
an instant, so the oracle's copy of the statement carries that instant in that form: a
date literal means midnight UTC ('2025-01-01' is '2025-01-01 00:00:00'), a time with an
offset its UTC instant, an instant finer than the product keeps its digits (sorting
strictly between the two stored instants around it). Everything else is the same text
on both sides (booleans are written TRUE/FALSE/1/0, which SQLite reads as 1 and 0).
"""

from __future__ import annotations

import os
import sqlite3
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from sagesql.connector.client import SageClient
from sagesql.connector.properties import validate
from sagesql.engine.fetch import extract, flattener
from sagesql.engine.local import register_functions
from sagesql.engine.pipeline import explain, run
from sagesql.engine.values import SQLITE_TYPES
from sagesql.sandbox.config import SandboxConfig
from sagesql.sandbox.runner import Sandbox
from sagesql.schemas.catalog import default_catalog

# Examples per product and test: the whole file stays well under a minute. A longer hunt
# for bugs: SAGESQL_ORACLE_EXAMPLES=3000 SAGESQL_ORACLE_RANDOM=1 pytest tests/test_query_oracle.py
EXAMPLES = int(os.environ.get("SAGESQL_ORACLE_EXAMPLES", "120"))
SETTINGS = settings(
    max_examples=EXAMPLES,
    derandomize=not os.environ.get("SAGESQL_ORACLE_RANDOM"),
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)

Pair = tuple[str, str]  # (the SQL sagesql runs, the SQL the oracle runs)


@dataclass(frozen=True)
class TableSpec:
    """A table of the oracle: its key and the columns filters are drawn on."""

    name: str
    key: str
    columns: tuple[str, ...]
    groups: tuple[str, ...] = ()  # low-cardinality columns to GROUP BY


@dataclass(frozen=True)
class JoinSpec:
    """``left a JOIN right b ON on`` (columns qualified by a and b)."""

    left: str
    right: str
    on: str


SPECS: dict[str, tuple[list[TableSpec], list[JoinSpec]]] = {
    "sage_accounting": (
        [
            TableSpec(
                "contacts",
                "id",
                (
                    "id",
                    "name",
                    "reference",
                    "email",
                    "updated_at",
                    "created_at",
                    "balance",
                    "credit_limit",
                    "is_active",
                    "main_address_city",
                    "tax_number",
                    "deleted_at",
                ),
                ("main_address_city", "is_active", "credit_limit"),
            ),
            TableSpec(
                "customers",
                "id",
                ("id", "name", "reference", "email", "updated_at", "balance", "is_active"),
                ("main_address_city", "gb_based"),
            ),
            TableSpec(
                "sales_invoices",
                "id",
                (
                    "id",
                    "contact_id",
                    "contact_name",
                    "status_id",
                    "date",
                    "due_date",
                    "updated_at",
                    "total_amount",
                    "outstanding_amount",
                    "sent",
                    "reference",
                    "last_paid",
                    "invoice_number",
                ),
                ("status_id", "contact_id", "sent"),
            ),
            TableSpec(
                "sales_invoice_lines",
                "id",
                (
                    "id",
                    "sales_invoice_id",
                    "description",
                    "quantity",
                    "unit_price",
                    "net_amount",
                    "product_id",
                ),
                ("description", "tax_rate_id"),
            ),
            TableSpec(
                "products",
                "id",
                ("id", "item_code", "description", "active", "cost_price", "updated_at"),
                ("active", "catalog_item_type_id"),
            ),
            TableSpec(
                "ledger_accounts",
                "id",
                (
                    "id",
                    "nominal_code",
                    "name",
                    "ledger_account_type_id",
                    "ledger_account_classification_id",
                    "visible_in_sales",
                    "control_name",
                    "updated_at",
                ),
                ("ledger_account_type_id", "ledger_account_group_id"),
            ),
        ],
        [
            JoinSpec("sales_invoices", "contacts", "a.contact_id = b.id"),
            JoinSpec("sales_invoice_lines", "sales_invoices", "a.sales_invoice_id = b.id"),
            JoinSpec("customers", "sales_invoices", "b.contact_id = a.id"),
        ],
    ),
    "sage_200": (
        [
            TableSpec(
                "customers",
                "id",
                (
                    "id",
                    "reference",
                    "name",
                    "balance",
                    "on_hold",
                    "credit_limit",
                    "currency_id",
                    "account_opened",
                    "date_time_updated",
                    "main_address_city",
                    "payment_terms_days",
                    "website",
                ),
                ("currency_id", "on_hold", "main_address_city", "payment_terms_days"),
            ),
            TableSpec(
                "sop_orders",
                "id",
                (
                    "id",
                    "customer_id",
                    "document_no",
                    "document_date",
                    "total_gross_value",
                    "is_draft",
                    "currency_id",
                    "customer_document_no",
                    "requested_delivery_date",
                ),
                ("customer_id", "currency_id", "is_draft"),
            ),
            TableSpec(
                "sop_order_lines",
                "id",
                (
                    "id",
                    "sop_order_id",
                    "product_id",
                    "code",
                    "description",
                    "line_quantity",
                    "selling_unit_price",
                    "line_number",
                    "is_complete",
                ),
                ("line_number", "tax_code_id", "description"),
            ),
        ],
        [
            JoinSpec("sop_orders", "customers", "a.customer_id = b.id"),
            JoinSpec("sop_order_lines", "sop_orders", "a.sop_order_id = b.id"),
        ],
    ),
    "sage_crm": (
        [
            TableSpec(
                "company",
                "comp_companyid",
                (
                    "comp_companyid",
                    "comp_name",
                    "comp_type",
                    "comp_status",
                    "comp_website",
                    "comp_sector",
                    "comp_createddate",
                    "comp_updateddate",
                    "comp_deleted",
                ),
                ("comp_type", "comp_status", "comp_sector", "comp_territory"),
            ),
            TableSpec(
                "person",
                "pers_personid",
                (
                    "pers_personid",
                    "pers_companyid",
                    "pers_firstname",
                    "pers_lastname",
                    "pers_emailaddress",
                    "pers_updateddate",
                ),
                ("pers_companyid", "pers_lastname", "pers_createdby"),
            ),
            TableSpec(
                "opportunity",
                "oppo_opportunityid",
                (
                    "oppo_opportunityid",
                    "oppo_primarycompanyid",
                    "oppo_description",
                    "oppo_stage",
                    "oppo_status",
                    "oppo_forecast",
                    "oppo_createddate",
                ),
                ("oppo_stage", "oppo_status", "oppo_primarycompanyid"),
            ),
            TableSpec(
                "cases",
                "case_caseid",
                (
                    "case_caseid",
                    "case_primarycompanyid",
                    "case_description",
                    "case_status",
                    "case_priority",
                    "case_updateddate",
                ),
                ("case_status", "case_priority"),
            ),
        ],
        [
            JoinSpec("person", "company", "a.pers_companyid = b.comp_companyid"),
            JoinSpec("opportunity", "company", "a.oppo_primarycompanyid = b.comp_companyid"),
            JoinSpec("company", "person", "b.pers_companyid = a.comp_companyid"),
        ],
    ),
}

# Text literals that are in no table: quotes, LIKE wildcards, '&', unicode, case.
ODD_TEXTS = ("", "O'Brien", "%", "_", "a&b=c", "x' OR '1'='1", "Zoë", "ZOË OKAFOR", "ł", " ")


# -- the oracle ---------------------------------------------------------------------------


def api_session(sbx: Sandbox) -> requests.Session:
    """A plain requests session authorised for the sandbox's API."""
    props = sbx.connection_properties()
    session = requests.Session()
    if "OAuthAccessToken" in props:
        session.headers["Authorization"] = "Bearer " + props["OAuthAccessToken"]
    else:
        session.auth = (props["User"], props["Password"])
    if sbx.product == "sage_200":
        site = session.get(sbx.base_url + "/sites", timeout=30).json()[0]
        session.headers["X-Site"] = str(site["site_id"])
        session.headers["X-Company"] = str(site["company_id"])
    return session


def _all_records(session: requests.Session, sbx: Sandbox, table: Any) -> Iterator[dict[str, Any]]:
    """Every record of a table's list, page by page, unfiltered (the view's own
    fixed parameters aside: they are what the table is)."""
    url = sbx.base_url + table.operations["list"].path
    fixed = dict(table.fixed_parameters)
    if sbx.product == "sage_accounting":
        page = 1
        while True:
            body = session.get(
                url,
                params={**fixed, "attributes": "all", "items_per_page": 200, "page": page},
                timeout=30,
            ).json()
            yield from body["$items"]
            if not body.get("$next"):
                return
            page += 1
    elif sbx.product == "sage_200":
        skip = 0
        while True:
            body = session.get(
                url, params={**fixed, "$orderby": "id", "$top": 500, "$skip": skip}, timeout=30
            ).json()
            yield from body
            if len(body) < 500:
                return
            skip += 500
    else:
        start = 1
        while True:
            body = session.get(
                url, params={**fixed, "startIndex": start, "count": 1000}, timeout=30
            ).json()
            yield from body["$resources"]
            start += len(body["$resources"])
            if not body["$resources"] or start > body["$totalResults"]:
                return


def load_oracle(sbx: Sandbox, tables: list[TableSpec]) -> sqlite3.Connection:
    """The oracle database: each table's full, flattened data."""
    catalog = default_catalog()
    db = sqlite3.connect(":memory:")
    register_functions(db)
    session = api_session(sbx)
    for spec in tables:
        table = catalog.table(spec.name, sbx.product)
        source = catalog.table(table.parent.table, sbx.product) if table.parent else table
        names = [c.name for c in table.columns]
        flatten = flattener(table, names)
        rows = []
        for record in _all_records(session, sbx, source):
            if table.parent is None:
                rows.append(flatten(record))
                continue
            for line in extract(record, table.parent.path) or []:
                rows.append(flatten(line, record))
        columns = ", ".join(f'"{c.name}" {SQLITE_TYPES[c.type]}' for c in table.columns)
        db.execute(f'CREATE TABLE "{spec.name}" ({columns})')
        marks = ", ".join("?" * len(names))
        db.executemany(f'INSERT INTO "{spec.name}" VALUES ({marks})', rows)
        assert rows, f"the sandbox has no {spec.name}"
    return db


# -- literals -----------------------------------------------------------------------------


def quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def stored_instant(value: datetime, product: str) -> str:
    """The oracle's text for an instant (the same for every product): UTC seconds, then
    the fraction's digits when it is not zero (at least three, trailing zeros after the
    third dropped)."""
    value = value.astimezone(timezone.utc)
    head = value.strftime("%Y-%m-%d %H:%M:%S")
    if not value.microsecond:
        return head
    return head + "." + f"{value.microsecond:06d}".rstrip("0").ljust(3, "0")


def parse_stored(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


def iso_to_stored(value: Any) -> Any:
    """A DATETIME as sagesql returns it (ISO 8601 UTC, 'Z') in the oracle's form."""
    if not isinstance(value, str) or not value.endswith("Z") or "T" not in value:
        return value
    try:
        return stored_instant(datetime.fromisoformat(value.replace("Z", "+00:00")), "")
    except ValueError:
        return value


def datetime_literals(stored: str, product: str) -> list[Pair]:
    """Ways to write an instant taken from the data (and its neighbours) in SQL."""
    instant = parse_stored(stored)
    quantum = timedelta(milliseconds=1) if product == "sage_200" else timedelta(seconds=1)
    day = instant.date().isoformat()
    plus2 = instant.astimezone(timezone(timedelta(hours=2)))
    found: list[Pair] = [
        (quote(stored), quote(stored)),
        (
            quote(day),
            quote(stored_instant(datetime.fromisoformat(day + "T00:00:00+00:00"), product)),
        ),
        (
            quote(instant.strftime("%Y-%m-%d %H:%M:%S")),
            quote(stored_instant(instant.replace(microsecond=0), product)),
        ),
        (quote(plus2.isoformat()), quote(stored_instant(instant, product))),
        (
            quote(stored_instant(instant + quantum, product)),
            quote(stored_instant(instant + quantum, product)),
        ),
        (
            quote(stored_instant(instant - quantum, product)),
            quote(stored_instant(instant - quantum, product)),
        ),
    ]
    # An instant between two the product can store: half a quantum later.
    half = instant + quantum / 2
    found.append((quote(half.isoformat()), quote(stored_instant(half, product))))
    return found


def literal_candidates(kind: str, values: list[Any], product: str) -> list[Pair]:
    """Literals for a column: values from the data, boundaries and values not in it."""
    sample = values if len(values) <= 12 else [values[i * len(values) // 12] for i in range(12)]
    sample = sorted(set(sample + values[:1] + values[-1:]), key=values.index)
    out: list[Pair] = []

    def same(text: str) -> None:
        out.append((text, text))

    if kind == "TEXT":
        for v in sample:
            same(quote(v))
        for v in sample[:4]:
            for variant in (v.lower(), v.upper(), v + "x", v[:-1]):
                same(quote(variant))
        for odd in ODD_TEXTS:
            same(quote(odd))
    elif kind == "INTEGER":
        for v in sample:
            same(str(v))
        for v in (values[0] - 1, values[-1] + 1, 0, -1, 10**12):
            same(str(v))
    elif kind == "DECIMAL":
        for v in sample:
            same(repr(v))
        lo, hi = Decimal(repr(values[0])), Decimal(repr(values[-1]))
        for v in (
            lo - Decimal("0.01"),
            hi + Decimal("0.01"),
            Decimal(repr(sample[len(sample) // 2])) + Decimal("0.005"),
            Decimal("0"),
            Decimal("-0.50"),
        ):
            same(str(v))
        same(f"{Decimal(repr(sample[0])):.4f}")  # trailing zeros
        same(str(int(values[-1])))  # an integer literal
    elif kind == "BOOLEAN":
        for text in ("TRUE", "FALSE", "1", "0"):
            same(text)
    elif kind == "DATE":
        for v in sample:
            same(quote(v))
        first, last = date.fromisoformat(values[0]), date.fromisoformat(values[-1])
        for d in (
            first - timedelta(days=1),
            last + timedelta(days=1),
            date(2024, 2, 29),
            date(2025, 1, 1),
        ):
            same(quote(d.isoformat()))
    elif kind == "DATETIME":
        for v in sample[:8]:
            out.extend(datetime_literals(v, product))
        for v in (values[0], values[-1]):
            out.extend(datetime_literals(v, product)[4:6])
        out.append(
            (
                quote("2025-01-01"),
                quote(stored_instant(datetime(2025, 1, 1, tzinfo=timezone.utc), product)),
            )
        )
    return out


def like_patterns(values: list[str]) -> list[str]:
    """LIKE patterns from the data: prefixes, suffixes, infixes, '_' for a character,
    other letter cases, and patterns that match nothing or everything."""
    out = ["%", "", "%%", "_%", "%Ltd", "%ë%", "ZOË%", "%'%", "%&%"]
    sample = values[:: max(1, len(values) // 6)][:6]
    for v in sample:
        if not v:
            continue
        out += [v[:3] + "%", "%" + v[-3:], "%" + v[1:4] + "%", v, v.lower()[:4] + "%"]
        out += [
            v[:1] + "_" + v[2:5] + "%",
            "_" * len(v),
            v.upper() + "_",
            "%" + v[2:4].upper() + "%",
        ]
    return list(dict.fromkeys(out))


# -- the world of one product ---------------------------------------------------------------


@dataclass
class TableData:
    spec: TableSpec
    types: dict[str, str]  # every column's SQL type
    values: dict[str, list[Any]]  # distinct non-null values of the filter columns, sorted
    nullable: set[str]
    literals: dict[str, list[Pair]] = field(default_factory=dict)
    likes: dict[str, list[str]] = field(default_factory=dict)
    scalars: list[str] = field(default_factory=list)  # every non-JSON column
    pushable: list[str] = field(default_factory=list)  # filter columns the API can filter on
    sortable: list[str] = field(default_factory=list)  # filter columns the API can sort by


@dataclass
class World:
    product: str
    sandbox: Sandbox
    oracle: sqlite3.Connection
    tables: dict[str, TableData]
    joins: list[JoinSpec]
    connections: list[SageClient]

    def oracle_rows(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        cursor = self.oracle.execute(sql)
        return [d[0] for d in cursor.description], cursor.fetchall()

    def sagesql_rows(self, sql: str, connection: SageClient) -> tuple[list[str], list[tuple]]:
        """sagesql's rows, DATETIME columns (returned as ISO 8601) read back into the
        oracle's form."""
        result = run(connection, sql)
        try:
            instants = [i for i, c in enumerate(result.columns) if c.sql_type == "DATETIME"]
            rows = [
                tuple(iso_to_stored(v) if i in instants else v for i, v in enumerate(row))
                for row in result.rows
            ]
            return [c.name for c in result.columns], rows
        finally:
            result.close()


def build_world(product: str) -> World:
    tables, joins = SPECS[product]
    sbx = Sandbox(product, SandboxConfig(product=product, rate_limit_per_minute=10**9)).start()
    try:
        oracle = load_oracle(sbx, tables)
        catalog = default_catalog()
        data: dict[str, TableData] = {}
        for spec in tables:
            table = catalog.table(spec.name, product)
            types = {c.name: c.type for c in table.columns}
            values: dict[str, list[Any]] = {}
            nullable: set[str] = set()
            for name in spec.columns:
                found = [
                    r[0]
                    for r in oracle.execute(
                        f'SELECT DISTINCT "{name}" FROM "{spec.name}" ORDER BY 1'
                    ).fetchall()
                ]
                if None in found:
                    nullable.add(name)
                values[name] = [v for v in found if v is not None]
            item = TableData(spec, types, values, nullable)
            item.scalars = [c.name for c in table.columns if c.type != "JSON"]
            source = catalog.table(table.parent.table, product) if table.parent else table
            pushdown = source.pushdown
            filtered = {f.column for f in pushdown.parameters}
            if pushdown.expression is not None:
                filtered |= set(pushdown.expression.columns)
            if table.parent:
                filtered = {table.parent.key_column}
            item.pushable = [c for c in spec.columns if c in filtered or c == spec.key]
            sorts = set(pushdown.sort.columns) if pushdown.sort and not table.parent else set()
            item.sortable = [c for c in spec.columns if c in sorts]
            for name in spec.columns:
                present = values[name]
                if not present:
                    continue  # only NULLs: IS [NOT] NULL still applies
                item.literals[name] = literal_candidates(types[name], present, product)
                if types[name] == "TEXT":
                    item.likes[name] = like_patterns(present)
            data[spec.name] = item
        base = {
            **sbx.connection_properties(),
            "OAuthSettingsLocation": "memory://oracle",
            "RateLimit": "0",  # the sandbox's limit is off too: no waiting between pages
        }
        connections = [
            SageClient(validate(base)),
            # Small pages: several requests per table, LIMIT stopping the paging mid-way.
            SageClient(validate({**base, "Pagesize": "7"})),
        ]
        return World(product, sbx, oracle, data, joins, connections)
    except BaseException:
        sbx.stop()
        raise


@pytest.fixture(scope="module")
def worlds() -> Iterator[dict[str, World]]:
    """product -> its World, built on first use and stopped at the end of the module."""
    built: dict[str, World] = {}

    class Lazy(dict):  # type: ignore[type-arg]
        def __missing__(self, product: str) -> World:
            built[product] = self[product] = build_world(product)
            return built[product]

        def __repr__(self) -> str:  # Hypothesis prints the arguments of a failing case
            return f"worlds({', '.join(self)})"

    yield Lazy()
    for world in built.values():
        for connection in world.connections:
            connection.close()
        world.oracle.close()
        world.sandbox.stop()


PRODUCTS = list(SPECS)


# -- statements ------------------------------------------------------------------------------


def _ref(alias: str | None, column: str) -> str:
    return f"{alias}.{column}" if alias else column


@st.composite
def atom(
    draw: st.DrawFn,
    data: TableData,
    alias: str | None = None,
    only: tuple[str, str] | None = None,
) -> Pair:
    """One condition on one column (half the time one the API can filter on); ``only``:
    (column of the table, how the statement names it), for a column a derived table
    carries under a name of its own (``t.a_value``)."""
    if only is not None:
        name, col = only
    else:
        pushable = data.pushable and draw(st.booleans())
        name = draw(st.sampled_from(data.pushable if pushable else data.spec.columns))
        col = _ref(alias, name)
    kind = data.types[name]
    literals = data.literals.get(name)
    null_test = (f"{col} IS NULL", f"{col} IS NOT NULL")
    if not literals or draw(st.integers(0, 14)) == 0:
        text = draw(st.sampled_from(null_test))
        return text, text

    def lit() -> Pair:
        return draw(st.sampled_from(literals))

    if kind == "BOOLEAN":
        shape = draw(st.sampled_from(["bare", "not", "eq", "ne", "in"]))
        if shape == "bare":
            return col, col
        if shape == "not":
            return f"NOT {col}", f"NOT {col}"
    forms = ["cmp", "cmp", "cmp", "flipped", "between", "in", "not_in"]
    if kind == "TEXT" and name in data.likes:
        forms += ["like", "like", "not_like"]
    form = draw(st.sampled_from(forms))
    if kind == "BOOLEAN" and form in ("between",):
        form = "cmp"
    if form in ("cmp", "flipped"):
        op = draw(st.sampled_from(["=", "!=", "<>", "<", "<=", ">", ">="]))
        if kind == "BOOLEAN":
            op = draw(st.sampled_from(["=", "!="]))
        e, o = lit()
        if form == "flipped":
            return f"{e} {op} {col}", f"{o} {op} {col}"
        return f"{col} {op} {e}", f"{col} {op} {o}"
    if form == "between":
        (e1, o1), (e2, o2) = lit(), lit()
        neg = draw(st.sampled_from(["", "NOT "]))
        return f"{col} {neg}BETWEEN {e1} AND {e2}", f"{col} {neg}BETWEEN {o1} AND {o2}"
    if form in ("in", "not_in"):
        items = draw(st.lists(st.sampled_from(literals), min_size=1, max_size=5))
        neg = "NOT " if form == "not_in" else ""
        return (
            f"{col} {neg}IN ({', '.join(e for e, _ in items)})",
            f"{col} {neg}IN ({', '.join(o for _, o in items)})",
        )
    pattern = quote(draw(st.sampled_from(data.likes[name])))
    neg = "NOT " if form == "not_like" else ""
    return f"{col} {neg}LIKE {pattern}", f"{col} {neg}LIKE {pattern}"


def condition(
    data: TableData,
    alias: str | None = None,
    depth: int = 2,
    only: tuple[str, str] | None = None,
) -> st.SearchStrategy[Pair]:
    """A condition: atoms nested in AND, OR and NOT."""
    if depth == 0:
        return atom(data, alias, only)

    def combine(parts: tuple[Pair, Pair, str]) -> Pair:
        (e1, o1), (e2, o2), how = parts
        if how == "NOT":
            return f"NOT ({e1})", f"NOT ({o1})"
        return f"({e1} {how} {e2})", f"({o1} {how} {o2})"

    inner = condition(data, alias, depth - 1, only)
    return st.one_of(
        atom(data, alias, only),
        atom(data, alias, only),
        st.tuples(inner, inner, st.sampled_from(["AND", "AND", "OR", "NOT"])).map(combine),
    )


@st.composite
def where(draw: st.DrawFn, data: TableData, alias: str | None = None) -> Pair:
    """A WHERE clause of 0-3 top-level conjuncts, or ('', '')."""
    parts = draw(st.lists(condition(data, alias), min_size=0, max_size=3))
    if not parts:
        return "", ""
    return (
        " WHERE " + " AND ".join(e for e, _ in parts),
        " WHERE " + " AND ".join(o for _, o in parts),
    )


@dataclass
class Statement:
    sql: str  # what sagesql runs
    oracle: str  # what the oracle runs
    compare: str  # "list", "multiset" or "subset"
    limit: int | None = None
    offset: int = 0
    oracle_unlimited: str = ""  # for "subset": the oracle's statement without LIMIT/OFFSET
    # Output columns a filter over the statement may use: (output name, its table, the
    # table's column it carries).
    outputs: tuple[tuple[str, TableData, str], ...] = ()


@st.composite
def single_table(draw: st.DrawFn, world: World) -> Statement:
    data = world.tables[draw(st.sampled_from(sorted(world.tables)))]
    spec = data.spec
    key = spec.key
    shape = draw(st.sampled_from(["star", "columns", "columns"]))
    if shape == "star":
        projection = "*"
        selected = list(spec.columns)
    else:
        picked = draw(st.lists(st.sampled_from(data.scalars), min_size=1, max_size=4, unique=True))
        selected = list(dict.fromkeys([key, *picked]) if draw(st.booleans()) else picked)
        projection = ", ".join(selected)
    outputs = tuple((c, data, c) for c in selected if c in data.types and c in spec.columns)
    mode = draw(st.sampled_from(["plain", "ordered", "ordered", "limit", "paged"]))
    if mode == "paged":
        # At most one condition the API may apply exactly: LIMIT can reach the API.
        w_e, w_o = ("", "") if draw(st.booleans()) else draw(atom(data))
        w_e, w_o = (f" WHERE {w_e}", f" WHERE {w_o}") if w_e else ("", "")
        mode = draw(st.sampled_from(["ordered", "limit"]))
    else:
        w_e, w_o = draw(where(data))
    base_e = f"SELECT {projection} FROM {spec.name}{w_e}"
    base_o = f"SELECT {projection} FROM {spec.name}{w_o}"
    if mode == "plain":
        return Statement(base_e, base_o, "multiset", outputs=outputs)
    limit = draw(st.sampled_from([0, 1, 3, 7, 10, 100]))
    offset = draw(st.sampled_from([0, 0, 0, 2, 8]))
    window = f" LIMIT {limit}" + (f" OFFSET {offset}" if offset else "")
    if mode == "limit":
        return Statement(base_e + window, base_o + window, "subset", limit, offset, base_o, outputs)
    keys = []
    if draw(st.booleans()):
        first = draw(st.sampled_from(data.sortable or data.spec.columns))
        if draw(st.booleans()):
            first = draw(st.sampled_from(data.spec.columns))
        keys.append(first + draw(st.sampled_from(["", " DESC", " ASC"])))
    keys.append(key + draw(st.sampled_from(["", " DESC"])))
    order = " ORDER BY " + ", ".join(keys)
    if not draw(st.booleans()):
        window = ""
    return Statement(base_e + order + window, base_o + order + window, "list", outputs=outputs)


@st.composite
def aggregate(draw: st.DrawFn, world: World) -> Statement:
    data = world.tables[draw(st.sampled_from(sorted(world.tables)))]
    numbers = [c for c in data.spec.columns if data.types[c] in ("INTEGER", "DECIMAL")]
    measure = draw(st.sampled_from(numbers or [data.spec.key]))
    other = draw(st.sampled_from(data.spec.columns))
    items = [
        "count(*)",
        f"count({other}) AS filled",
        f"sum({measure}) AS total",
        f"min({other}) AS lo",
        f"max({measure}) AS hi",
        f"avg({measure}) AS mean",
    ]
    w_e, w_o = draw(where(data))
    outputs: list[tuple[str, TableData, str]] = [("lo", data, other), ("hi", data, measure)]
    if data.spec.groups and draw(st.integers(0, 3)):
        group = draw(st.sampled_from(data.spec.groups))
        if group in data.literals:
            outputs.append((group, data, group))
        having = draw(st.sampled_from(["", " HAVING count(*) > 1", f" HAVING sum({measure}) > 0"]))
        tail = f" GROUP BY {group}{having}"
        select = f"SELECT {group}, {', '.join(items)} FROM {data.spec.name}"
    else:
        tail = ""
        select = f"SELECT {', '.join(items)} FROM {data.spec.name}"
    if draw(st.booleans()):
        select = select.replace("SELECT ", "SELECT DISTINCT ", 1) if not tail else select
    return Statement(select + w_e + tail, select + w_o + tail, "multiset", outputs=tuple(outputs))


@st.composite
def join(draw: st.DrawFn, world: World) -> Statement:
    spec = draw(st.sampled_from(world.joins))
    left, right = world.tables[spec.left], world.tables[spec.right]
    kind = draw(st.sampled_from(["JOIN", "JOIN", "LEFT JOIN"]))
    parts_e, parts_o = [], []
    for data, alias in ((left, "a"), (right, "b")):
        if draw(st.booleans()):
            e, o = draw(condition(data, alias, depth=1))
            parts_e.append(e)
            parts_o.append(o)
    glue = draw(st.sampled_from([" AND ", " AND ", " OR "]))
    w_e = (" WHERE " + glue.join(parts_e)) if parts_e else ""
    w_o = (" WHERE " + glue.join(parts_o)) if parts_o else ""
    extra_a = draw(st.sampled_from(left.spec.columns))
    extra_b = draw(st.sampled_from(right.spec.columns))
    head = (
        f"SELECT a.{left.spec.key} AS a_key, b.{right.spec.key} AS b_key, "
        f"a.{extra_a} AS a_value, b.{extra_b} AS b_value "
        f"FROM {spec.left} a {kind} {spec.right} b ON {spec.on}"
    )
    outputs = (
        ("a_key", left, left.spec.key),
        ("b_key", right, right.spec.key),
        ("a_value", left, extra_a),
        ("b_value", right, extra_b),
    )
    if draw(st.booleans()):
        order = f" ORDER BY a.{left.spec.key}, b.{right.spec.key} LIMIT 5"
        return Statement(head + w_e + order, head + w_o + order, "list", outputs=outputs)
    return Statement(head + w_e, head + w_o, "multiset", outputs=outputs)


@st.composite
def wrapped(draw: st.DrawFn, base: Statement) -> list[Statement]:
    """The statement as the inner query of the shapes BI tools, pandas and DB-API wrappers
    write: ``SELECT count(*) FROM (<q>) AS t``, ``SELECT * FROM (<q>) AS t WHERE <filter>``
    (a random condition on one of its output columns) and a CTE (its rows or its count,
    filtered or not). The catalog tables are then inside a derived table: no shortcut
    that reads the outer statement's parts (count from the API's total, LIMIT, sorting)
    may fire for them, and literals compared with the derived columns are stored forms.

    Over a LIMIT without ORDER BY (any rows may come) a filtered statement is checked to
    select only rows the unlimited one selects, at most LIMIT of them; a count is exact.
    """

    def inner_filter(alias: str) -> Pair:
        if not base.outputs:
            return "", ""
        name, data, column = draw(st.sampled_from(base.outputs))
        e, o = draw(condition(data, depth=1, only=(column, f"{alias}.{name}")))
        return f" WHERE {e}", f" WHERE {o}"

    loose = base.compare == "subset"  # which rows the inner LIMIT keeps is not defined
    out = [
        Statement(
            f"SELECT count(*) AS n FROM ({base.sql}) AS t",
            f"SELECT count(*) AS n FROM ({base.oracle}) AS t",
            "multiset",
        )
    ]
    w_e, w_o = inner_filter("t")
    derived_e, derived_o = (
        f"SELECT * FROM ({base.sql}) AS t{w_e}",
        f"SELECT * FROM ({{}}) AS t{w_o}",
    )
    if loose:
        unlimited = derived_o.format(base.oracle_unlimited)
        out.append(Statement(derived_e, "", "within", base.limit, 0, unlimited))
    else:
        out.append(Statement(derived_e, derived_o.format(base.oracle), "multiset"))
    w_e, w_o = inner_filter("c") if draw(st.booleans()) else ("", "")
    count = draw(st.booleans())
    if count and loose:
        w_e = w_o = ""  # how many of an undefined choice of rows pass a filter: not defined
    outer = "count(*) AS n" if count else "*"
    cte_e = f"WITH c AS ({base.sql}) SELECT {outer} FROM c{w_e}"
    cte_o = f"WITH c AS ({{}}) SELECT {outer} FROM c{w_o}"
    if loose and not count:
        out.append(
            Statement(cte_e, "", "within", base.limit, 0, cte_o.format(base.oracle_unlimited))
        )
    else:
        out.append(Statement(cte_e, cte_o.format(base.oracle), "multiset"))
    return out


# -- comparing ---------------------------------------------------------------------------------


def canon(value: Any) -> tuple[Any, ...]:
    """A value as both sides agree on it: numbers by value (Decimal and bool included)."""
    if value is None:
        return (0,)
    if isinstance(value, (bool, int, float, Decimal)):
        return (1, float(value))
    return (2, str(value))


def canon_rows(rows: list[tuple[Any, ...]]) -> list[tuple[tuple[Any, ...], ...]]:
    return [tuple(canon(v) for v in row) for row in rows]


def check(world: World, statement: Statement, connection: SageClient) -> None:
    note(f"sagesql: {statement.sql}")
    note(f"oracle:  {statement.oracle or statement.oracle_unlimited}")
    result = run(connection, statement.sql)
    try:
        # DATETIME columns come back as ISO 8601: read them back into the oracle's form.
        instants = [i for i, c in enumerate(result.columns) if c.sql_type == "DATETIME"]
        names = [c.name for c in result.columns]
        got = [
            tuple(iso_to_stored(v) if i in instants else v for i, v in enumerate(row))
            for row in result.rows
        ]
    finally:
        result.close()
    ran = result.plan.explain()  # type: ignore[attr-defined]
    note(f"plan:\n{ran}")
    # --explain claims nothing (a count from the API's total, a LIMIT, a sort) that the
    # run did not do: it is the plan the statement ran with.
    assert explain(connection, statement.sql) == ran
    if statement.compare == "within":
        oracle_names, every = world.oracle_rows(statement.oracle_unlimited)
        assert names == oracle_names
        assert len(got) <= (statement.limit or 0), f"{len(got)} rows, LIMIT {statement.limit}"
        missing = Counter(canon_rows(got)) - Counter(canon_rows(every))
        assert not missing, f"rows the statement does not select: {list(missing)[:3]}"
        return
    if statement.compare == "subset":
        _, every = world.oracle_rows(statement.oracle_unlimited)
        expected_count = max(0, min(statement.limit or 0, len(every) - statement.offset))
        assert len(got) == expected_count, f"{len(got)} rows, not {expected_count}"
        missing = Counter(canon_rows(got)) - Counter(canon_rows(every))
        assert not missing, f"rows the statement does not select: {list(missing)[:3]}"
        return
    oracle_names, expected = world.oracle_rows(statement.oracle)
    assert names == oracle_names
    if statement.compare == "list":
        assert canon_rows(got) == canon_rows(expected)
    else:
        assert sorted(canon_rows(got)) == sorted(canon_rows(expected))


@pytest.mark.parametrize("product", PRODUCTS)
@SETTINGS
@given(data=st.data())
def test_filters_order_and_limits_agree_with_the_oracle(
    worlds: dict[str, World], product: str, data: st.DataObject
) -> None:
    world = worlds[product]
    statement = data.draw(single_table(world), label="statement")
    connection = data.draw(st.sampled_from(world.connections), label="connection")
    check(world, statement, connection)


@pytest.mark.parametrize("product", PRODUCTS)
@settings(SETTINGS, max_examples=EXAMPLES // 3)
@given(data=st.data())
def test_aggregates_agree_with_the_oracle(
    worlds: dict[str, World], product: str, data: st.DataObject
) -> None:
    world = worlds[product]
    check(world, data.draw(aggregate(world), label="statement"), world.connections[0])


@pytest.mark.parametrize("product", PRODUCTS)
@settings(SETTINGS, max_examples=EXAMPLES // 3)
@given(data=st.data())
def test_joins_agree_with_the_oracle(
    worlds: dict[str, World], product: str, data: st.DataObject
) -> None:
    world = worlds[product]
    statement = data.draw(join(world), label="statement")
    connection = data.draw(st.sampled_from(world.connections), label="connection")
    check(world, statement, connection)


# Base statements per product for the wrapped shapes, each run three ways.
WRAPPED_EXAMPLES = max(1, EXAMPLES // 3)


@pytest.mark.parametrize("product", PRODUCTS)
@settings(SETTINGS, max_examples=WRAPPED_EXAMPLES)
@given(data=st.data())
def test_wrapped_statements_agree_with_the_oracle(
    worlds: dict[str, World], product: str, data: st.DataObject
) -> None:
    """Every statement of the tests above, as count(*) over it, as a derived table with
    a filter of its own and as a CTE, gives the oracle's answer."""
    world = worlds[product]
    base = data.draw(
        st.one_of(single_table(world), single_table(world), aggregate(world), join(world)),
        label="statement",
    )
    connection = data.draw(st.sampled_from(world.connections), label="connection")
    for statement in data.draw(wrapped(base), label="wrapped"):
        check(world, statement, connection)


def test_the_oracle_holds_the_full_data(worlds: dict[str, World]) -> None:
    """The oracle is only as good as its data: every table is whole, as sagesql reads it."""
    for product in PRODUCTS:
        world = worlds[product]
        for name in world.tables:
            (count,) = world.oracle.execute(f'SELECT count(*) FROM "{name}"').fetchone()
            _, rows = world.sagesql_rows(f"SELECT count(*) AS n FROM {name}", world.connections[0])
            assert rows == [(count,)], (product, name)


def test_plain_projections_skip_sqlite_and_still_agree_with_it() -> None:
    """A streaming SELECT of plain columns without WHERE is computed without SQLite
    (engine.local's projector); its rows, types included, are those SQLite gives (here:
    the same statement with ``WHERE 1``, which SQLite runs), whole REALs in a DECIMAL
    column, -0.0, NaN, huge numbers and text in numeric columns included."""
    import sqlglot

    from sagesql.engine import local

    columns = [("t", "TEXT"), ("i", "INTEGER"), ("d", "DECIMAL"), ("b", "BOOLEAN")]
    columns += [("w", "DATETIME"), ("j", "JSON")]
    tricky = [
        ("a", 1, 25000.0, 1, "2025-01-01T00:00:00Z", "[1]"),
        ("b", None, -0.0, 0, None, None),
        (None, 2**61, 0.1, None, "x", "{}"),
        ("c", 3, 1e300, 1, "y", "2"),
        ("d", 4, float(2**53), 0, "z", "null"),
    ]
    awkward = [  # values SQLite's affinity converts: those batches go through SQLite
        ("e", "12", 1.5, 1, "z", "[]"),
        ("f", 5, float("nan"), 1, "z", "[]"),
        ("g", 2**63 - 1, "12.50", 1, "z", "[]"),
        ("h", 6, 2.0**63, 1, "z", "[]"),
    ]
    sql = "SELECT d, i, t, d AS again, b, w, j FROM t0"

    def rows(text: str, data: list[tuple[Any, ...]], batch: int) -> list[str]:
        tree = sqlglot.parse_one(text, read="sqlite")
        source = local.LocalSource("t0", columns, iter(data))
        result = local.evaluate(tree, [source], batch_rows=batch)
        assert result.evaluation.streaming
        try:
            return [repr(row) for row in result.rows]
        finally:
            result.close()

    for data in (tricky, tricky + awkward, awkward + tricky):
        for batch in (1, 3, 100):
            assert rows(sql, data, batch) == rows(sql + " WHERE 1", data, batch)
    assert rows(sql + " LIMIT 2 OFFSET 1", tricky, 2) == rows(
        sql + " WHERE 1 LIMIT 2 OFFSET 1", tricky, 2
    )


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.sampled_from([float("inf"), -float("inf"), 1e300])  # json.loads reads 1e400 as inf
    | st.text()
    | st.sampled_from(["2025-01-01T10:00:00Z", "2025-01-01T10:00:00.123Z", "2025-02-30T10:00:00Z"])
    | st.sampled_from(["12.50", "1e3", " 7 ", "2025-01-01", "true", "٢٠٢٥-01-01T10:00:00Z"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=4,
)


@settings(SETTINGS, max_examples=400)
@given(
    value=JSON_VALUES,
    kind=st.sampled_from(sorted(SQLITE_TYPES)),
    product=st.sampled_from(PRODUCTS),
)
def test_the_fast_flattening_stores_what_to_storage_stores(
    value: Any, kind: str, product: str
) -> None:
    """engine.values.storage_converter (what the flattener uses) is to_storage, faster."""
    from sagesql.engine.values import storage_converter, to_storage

    if value is None:
        return
    fast, slow = storage_converter(kind, product)(value), to_storage(kind, value, product)
    assert type(fast) is type(slow) and repr(fast) == repr(slow)
