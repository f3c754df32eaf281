"""The catalog: the virtual tables of schemas/ as immutable objects, loaded lazily.

Listing tables reads only ``schemas/index.json``; a table's own file is parsed the
first time the table is asked for, then kept. Names resolve case-insensitively,
aliases included; unknown names raise errors that name the closest matches.

>>> from sagesql.schemas.catalog import default_catalog
>>> default_catalog().table("customers", "SageAccounting").updated_column
'updated_at'
"""

from __future__ import annotations

import difflib
import json
import threading
from collections.abc import Iterable, Mapping
from functools import cache
from importlib import resources
from importlib.abc import Traversable
from types import MappingProxyType
from typing import Any

import msgspec

from sagesql.errors import ConfigurationError, UnknownColumnError, UnknownTableError

SQL_TYPES = ("TEXT", "INTEGER", "DECIMAL", "BOOLEAN", "DATE", "DATETIME", "JSON")

# Statement kind -> the operation that carries it out.
STATEMENT_OPERATIONS = {
    "SELECT": "list",
    "INSERT": "create",
    "UPDATE": "update",
    "DELETE": "delete",
}


# Classes are msgspec Structs, not dataclasses: creating one is ~40x cheaper on Python 3.11,
# and these are on every command's start-up path (issue 17).


def _frozen(mapping: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping or {}))


def close_matches(name: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """The candidates closest to a misspelt name, best first."""
    pool = list(candidates)
    lowered = {c.lower(): c for c in pool}
    found = difflib.get_close_matches(name.lower(), list(lowered), n=n, cutoff=0.6)
    if not found and len(name) >= 4:
        # A word of the name inside a candidate (invoice -> sales_invoices) helps too.
        found = [c for c in lowered if name.lower() in c][:n]
    return [lowered[f] for f in found]


def did_you_mean(name: str, candidates: Iterable[str]) -> str | None:
    matches = close_matches(name, candidates)
    return f"did you mean {', '.join(matches)}?" if matches else None


class Column(msgspec.Struct, frozen=True):
    name: str
    type: str
    path: tuple[str, ...]
    nullable: bool
    read_only: bool
    required_on_create: bool
    description: str
    write_path: tuple[str, ...] | None = None
    max_length: int | None = None
    enum: tuple[str, ...] | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Column:
        return cls(
            name=d["name"],
            type=d["type"],
            path=tuple(d["path"]),
            nullable=d["nullable"],
            read_only=d["read_only"],
            required_on_create=d["required_on_create"],
            description=d.get("description", ""),
            write_path=tuple(d["write_path"]) if d.get("write_path") else None,
            max_length=d.get("max_length"),
            enum=tuple(d["enum"]) if d.get("enum") else None,
        )

    @property
    def body_path(self) -> tuple[str, ...]:
        """Where the value goes in a create or update body."""
        return self.write_path or self.path


class Operation(msgspec.Struct, frozen=True):
    method: str
    path: str
    envelope: str | None = None
    body_schema: str | None = None
    record_schema: str | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Operation:
        return cls(
            d["method"], d["path"], d.get("envelope"), d.get("body_schema"), d.get("record_schema")
        )


class ParameterFilter(msgspec.Struct, frozen=True):
    """A predicate the API applies through a query parameter of its own."""

    column: str
    operator: str
    parameter: str
    exact: bool
    value_format: str = "text"
    description: str = ""


class FilterLanguage(msgspec.Struct, frozen=True):
    """A filter expression the API evaluates: OData ``$filter`` or SData ``where``."""

    syntax: str
    parameter: str
    logical: frozenset[str]
    columns: Mapping[str, frozenset[str]]

    def operators(self, column: str) -> frozenset[str]:
        return self.columns.get(column, frozenset())


class Sort(msgspec.Struct, frozen=True):
    parameter: str
    syntax: str
    columns: tuple[str, ...]
    multiple: bool = False


class Projection(msgspec.Struct, frozen=True):
    parameter: str
    always: tuple[str, ...]
    all: str | None = None


class Pushdown(msgspec.Struct, frozen=True):
    parameters: tuple[ParameterFilter, ...]
    expression: FilterLanguage | None
    sort: Sort | None
    projection: Projection | None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Pushdown:
        expr = d.get("expression")
        sort = d.get("sort")
        proj = d.get("projection")
        return cls(
            parameters=tuple(ParameterFilter(**p) for p in d.get("parameters", [])),
            expression=FilterLanguage(
                syntax=expr["syntax"],
                parameter=expr["parameter"],
                logical=frozenset(expr["logical"]),
                columns=_frozen({k: frozenset(v) for k, v in expr["columns"].items()}),
            )
            if expr
            else None,
            sort=Sort(
                sort["parameter"],
                sort["syntax"],
                tuple(sort["columns"]),
                sort.get("multiple", False),
            )
            if sort
            else None,
            projection=Projection(proj["parameter"], tuple(proj["always"]), proj.get("all"))
            if proj
            else None,
        )


class Paging(msgspec.Struct, frozen=True):
    style: str
    max_page_size: int
    default_page_size: int
    total: str = "none"


class Deletions(msgspec.Struct, frozen=True):
    parameter: str
    inclusive: bool
    column: str


class Parent(msgspec.Struct, frozen=True):
    table: str
    path: tuple[str, ...]
    key_column: str


class ProcedureParameter(msgspec.Struct, frozen=True):
    name: str
    type: str
    required: bool
    description: str
    default: Any = None
    enum: tuple[str, ...] | None = None


class Procedure(msgspec.Struct, frozen=True):
    name: str
    description: str
    parameters: tuple[ProcedureParameter, ...]
    result_columns: tuple[tuple[str, str, str], ...]
    request: Mapping[str, Any]

    def to_description(self, table: str | None) -> dict[str, Any]:
        """What ``sagesql procedures --format json`` shows of it (``table``: its table)."""
        return {
            "name": self.name,
            "table": table,
            "parameters": [
                {"name": q.name, "type": q.type, "required": q.required} for q in self.parameters
            ],
            "returns": [name for name, _, _ in self.result_columns],
            "description": self.description,
        }

    @property
    def signature(self) -> str:
        """``@Id, @VoidReason?``: its parameters, the optional ones marked."""
        return ", ".join(f"@{q.name}{'' if q.required else '?'}" for q in self.parameters)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Procedure:
        return cls(
            name=d["name"],
            description=d["description"],
            parameters=tuple(
                ProcedureParameter(
                    p["name"],
                    p["type"],
                    p["required"],
                    p.get("description", ""),
                    p.get("default"),
                    tuple(p["enum"]) if p.get("enum") else None,
                )
                for p in d["parameters"]
            ),
            result_columns=tuple(
                (c["name"], c["type"], c.get("description", "")) for c in d["result_columns"]
            ),
            request=_frozen(d["request"]),
        )


class Table(msgspec.Struct, frozen=True):
    """One virtual table: where its rows come from and what the API can do for a query."""

    name: str
    product: str
    description: str
    aliases: tuple[str, ...]
    resource: str
    operations: Mapping[str, Operation]
    key: str | None
    updated_column: str | None
    created_column: str | None
    deletions: Deletions | None
    paging: Paging
    fixed_parameters: Mapping[str, str]
    columns: tuple[Column, ...]
    pushdown: Pushdown
    children: tuple[str, ...]
    parent: Parent | None
    procedures: tuple[Procedure, ...]
    module: str = ""
    # A view's condition on its rows (customers: contact_types holds CUSTOMER): supplied
    # on INSERT when not given, checked on INSERT and UPDATE (WITH CHECK OPTION).
    fixed_values: Mapping[str, str] = msgspec.field(default_factory=dict)
    # Derived from columns: left out of repr and ==.
    _by_name: Mapping[str, Column] = msgspec.field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Table:
        columns = tuple(Column.from_dict(c) for c in d["columns"])
        parent = d.get("parent")
        deletions = d.get("deletions")
        return cls(
            name=d["name"],
            product=d["product"],
            description=d["description"],
            aliases=tuple(d.get("aliases", ())),
            resource=d["resource"],
            operations=_frozen({k: Operation.from_dict(v) for k, v in d["operations"].items()}),
            key=d.get("key"),
            updated_column=d.get("updated_column"),
            created_column=d.get("created_column"),
            deletions=Deletions(**deletions) if deletions else None,
            paging=Paging(**d["paging"]),
            fixed_parameters=_frozen(d.get("fixed_parameters")),
            fixed_values=_frozen(d.get("fixed_values")),
            columns=columns,
            pushdown=Pushdown.from_dict(d["pushdown"]),
            children=tuple(d.get("children", ())),
            parent=Parent(parent["table"], tuple(parent["path"]), parent["key_column"])
            if parent
            else None,
            procedures=tuple(Procedure.from_dict(p) for p in d.get("procedures", ())),
            module=d.get("module", ""),
            _by_name=_frozen({c.name.lower(): c for c in columns}),
        )

    def __rich_repr__(self) -> list[tuple[str, Any]]:  # rich too: without the index
        return [(f, getattr(self, f)) for f in _TABLE_SHOWN]

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self.__rich_repr__())
        return f"{self.__class__.__qualname__}({shown})"

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return tuple(getattr(self, f) for f in _TABLE_SHOWN) == tuple(
            getattr(other, f) for f in _TABLE_SHOWN
        )

    __hash__ = None  # type: ignore[assignment]  # (its mappings never hashed anyway)

    def column(self, name: str) -> Column:
        """The column of that name (any case), or UnknownColumnError naming close matches."""
        found = self._by_name.get(name.lower())
        if found is None:
            raise UnknownColumnError(
                f"unknown column {name!r} in table {self.name}",
                hint=did_you_mean(name, (c.name for c in self.columns))
                or f"run 'sagesql describe {self.name}' to list its columns",
            )
        return found

    def has_column(self, name: str) -> bool:
        return name.lower() in self._by_name

    @property
    def statements(self) -> tuple[str, ...]:
        """The SQL statements the table supports (a child table is read through its parent)."""
        kinds = [s for s, op in STATEMENT_OPERATIONS.items() if op in self.operations]
        if self.parent is not None and "SELECT" not in kinds:
            kinds.insert(0, "SELECT")
        return tuple(kinds)

    def pushdown_by_column(self) -> dict[str, list[str]]:
        """Column -> how each predicate on it reaches the API, for describe and docs."""
        out: dict[str, list[str]] = {}
        if self.key and "get" in self.operations:
            out.setdefault(self.key, []).append(f"= (GET {self.operations['get'].path})")
        for p in self.pushdown.parameters:
            exact = "" if p.exact else ", re-checked locally"
            out.setdefault(p.column, []).append(f"{p.operator} ({p.parameter}{exact})")
        expr = self.pushdown.expression
        if expr:
            for col, ops in expr.columns.items():
                if ops:
                    listed = " ".join(sorted(ops, key=_OPERATOR_ORDER.index))
                    out.setdefault(col, []).append(f"{listed} ({expr.parameter})")
        return out

    def to_description(self, product_name: str) -> dict[str, Any]:
        """What ``sagesql describe`` shows, as JSON-ready data.

        ``product_name`` is the product's connection name (``SageAccounting``): a table
        knows its product's key only, the catalog knows its names.
        """
        pushdown = self.pushdown_by_column()
        sort_columns = set(self.pushdown.sort.columns) if self.pushdown.sort else set()
        return {
            "name": self.name,
            "product": product_name,
            "description": self.description,
            "aliases": list(self.aliases),
            "key": self.key,
            "updated_column": self.updated_column,
            "created_column": self.created_column,
            "deletions": self.deletions.parameter if self.deletions else None,
            "statements": list(self.statements),
            "operations": {k: f"{op.method} {op.path}" for k, op in self.operations.items()},
            "parent": self.parent.table if self.parent else None,
            "children": list(self.children),
            "procedures": [p.name for p in self.procedures],
            "columns": [
                {
                    "name": c.name,
                    "type": c.type,
                    "nullable": c.nullable,
                    "read_only": c.read_only,
                    "required_on_create": c.required_on_create,
                    "pushdown": pushdown.get(c.name, []),
                    "sortable": c.name in sort_columns,
                    "description": c.description,
                }
                for c in self.columns
            ],
        }


_TABLE_SHOWN = tuple(f for f in Table.__struct_fields__ if f != "_by_name")
_OPERATOR_ORDER = ["=", "!=", "<", "<=", ">", ">=", "IN", "LIKE", "IS NULL", "IS NOT NULL"]


class Product(msgspec.Struct, frozen=True):
    """A product's definition (``_product.json``): names, base URLs, auth, headers."""

    product: str
    title: str
    short_title: str
    connection_name: str
    element_keys: tuple[str, ...]
    api_version: str
    base_urls: Mapping[str, str]
    auth: Mapping[str, Any]
    headers: tuple[Mapping[str, Any], ...]
    error_format: str
    procedures: tuple[Procedure, ...]

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Product:
        return cls(
            product=d["product"],
            title=d["title"],
            short_title=d["short_title"],
            connection_name=d["connection_name"],
            element_keys=tuple(d["element_keys"]),
            api_version=d["api_version"],
            base_urls=_frozen(d["base_urls"]),
            auth=_frozen(d["auth"]),
            headers=tuple(_frozen(h) for h in d["headers"]),
            error_format=d["error_format"],
            procedures=tuple(Procedure.from_dict(p) for p in d["procedures"]),
        )


class TableSummary(msgspec.Struct, frozen=True):
    """What the index says of a table: enough to list it without parsing its file."""

    name: str
    product: str
    aliases: tuple[str, ...]
    description: str
    file: str


class Catalog:
    """The tables and products under one schemas folder (thread-safe, lazily loaded)."""

    def __init__(self, root: Traversable | None = None) -> None:
        self._root = root if root is not None else resources.files("sagesql.schemas")
        self._lock = threading.Lock()
        self._index: dict[str, Any] | None = None
        self._tables: dict[tuple[str, str], Table] = {}
        self._products: dict[str, Product] = {}

    def _read(self, rel: str) -> Any:
        return json.loads(self._root.joinpath(rel).read_text(encoding="utf-8"))

    @property
    def index(self) -> dict[str, Any]:
        if self._index is None:
            with self._lock:
                if self._index is None:
                    self._index = self._read("index.json")
        return self._index

    # -- products ---------------------------------------------------------------------

    def product_names(self) -> list[str]:
        return [p["product"] for p in self.index["products"]]

    def connection_names(self) -> list[str]:
        """The values of the Product connection property (SageAccounting...)."""
        return [p["connection_name"] for p in self.index["products"]]

    def resolve_product(self, name: str) -> str:
        """``sage_accounting`` from SageAccounting, sage_accounting, an integration
        platform's element key (sageone) or any case of these."""
        wanted = name.strip().lower().replace("-", "_")
        for p in self.index["products"]:
            if wanted in (p["product"], p["connection_name"].lower(), *p["element_keys"]):
                return str(p["product"])
        names = [p["connection_name"] for p in self.index["products"]]
        raise ConfigurationError(
            f"unknown product {name!r}",
            hint=f"use one of {', '.join(names)}"
            + (f" ({did_you_mean(name, names)})" if did_you_mean(name, names) else ""),
        )

    def product(self, name: str) -> Product:
        key = self.resolve_product(name)
        if key not in self._products:
            entry = next(p for p in self.index["products"] if p["product"] == key)
            self._products[key] = Product.from_dict(self._read(entry["file"]))
        return self._products[key]

    # -- tables -----------------------------------------------------------------------

    def tables(self, product: str | None = None) -> list[TableSummary]:
        """Every table (of one product), in product then name order, from the index only."""
        wanted = self.resolve_product(product) if product else None
        return [
            TableSummary(t["name"], t["product"], tuple(t["aliases"]), t["description"], t["file"])
            for t in self.index["tables"]
            if wanted is None or t["product"] == wanted
        ]

    def find(self, name: str, product: str | None = None) -> list[TableSummary]:
        """Index entries whose name or alias is ``name`` (any case)."""
        wanted = name.strip().lower()
        return [
            t
            for t in self.tables(product)
            if wanted == t.name or wanted in (a.lower() for a in t.aliases)
        ]

    def table(self, name: str, product: str | None = None) -> Table:
        """The table of that name or alias in that product (all products when None)."""
        found = self.find(name, product)
        if not found:
            scope = self.tables(product)
            candidates = {t.name for t in scope} | {a for t in scope for a in t.aliases}
            where = f" in {self.product(product).connection_name}" if product else ""
            raise UnknownTableError(
                f"unknown table {name!r}{where}",
                hint=did_you_mean(name, candidates) or "run 'sagesql tables' to list the tables",
            )
        if len(found) > 1:
            owners = ", ".join(self.product(t.product).connection_name for t in found)
            raise UnknownTableError(
                f"table {name!r} exists in several products ({owners})",
                hint="name the product (--product, or the Product connection property)",
            )
        entry = found[0]
        cache_key = (entry.product, entry.name)
        table = self._tables.get(cache_key)
        if table is None:
            table = Table.from_dict(self._read(entry.file))
            with self._lock:
                self._tables.setdefault(cache_key, table)
        return table

    def procedures(self, product: str) -> list[tuple[str | None, Procedure]]:
        """(table or None, procedure) for a product's procedures; parses its tables' files."""
        key = self.resolve_product(product)
        out: list[tuple[str | None, Procedure]] = [(None, p) for p in self.product(key).procedures]
        for summary in self.tables(key):
            out.extend((summary.name, p) for p in self.table(summary.name, key).procedures)
        return out


@cache
def default_catalog() -> Catalog:
    """The catalog of the schemas shipped with sagesql (one per process)."""
    return Catalog()
