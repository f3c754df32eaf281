"""Sage 200 (UK Standard and Professional) tables, built from the eleven OpenAPI 3 modules.

The definitions (``sage200/sage200-extra-v1-<module>.openapi3.json``, SOURCES.md) give
paths, verbs and record schemas but no query parameters, headers or auth; those come
from SAGE-APIS.md section 2. One table is made per top-level list resource (a GET path
without ``{``), named by its path segment. Top-level paths that only accept POST and
post a transaction (invoices, credit notes, receipts, payments, transfers, allocations)
become insert-only tables; the other POST-only paths are helpers (``*_new`` defaults,
``*_duplicate``, enquiries, searches, stocktake and traceable-item actions) and are left
out. The ``lines`` array of an order or quote becomes a child table.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from schemas.generator.common import (
    COMPARISON,
    clean_description,
    column,
    oauth_procedures,
    snake,
    sql_type,
)

PRODUCT = "sage_200"
FILE_PATTERN = "sage200-extra-v1-*.openapi3.json"
FILE_PREFIX = "sage200-extra-v1-"
FILE_SUFFIX = ".openapi3.json"

# $top: default 500, at most 5000; $skip needs $orderby; $count=true gives the total.
PAGING = {
    "style": "top_skip",
    "max_page_size": 5000,
    "default_page_size": 500,
    "total": "count_request",
}
# One object per request (GET /licence, GET /current_user) or no read at all.
NO_PAGING = {"style": "none", "max_page_size": 1, "default_page_size": 1, "total": "none"}

TEXT_OPERATORS = [*COMPARISON, "IN", "LIKE"]
ORDERED_OPERATORS = [*COMPARISON, "IN"]
FILTER_OPERATORS = {
    "TEXT": TEXT_OPERATORS,
    "INTEGER": ORDERED_OPERATORS,
    "DECIMAL": ORDERED_OPERATORS,
    "DATE": ORDERED_OPERATORS,
    "DATETIME": ORDERED_OPERATORS,
    "BOOLEAN": ["=", "!="],
}

# POST-only top-level paths that post something but do not answer with a URN.
EXTRA_POSTINGS = frozenset({"bank_transfer", "sales_allocations", "stock_transfers"})

# Where the result of an insert-only table can be read back, by name prefix.
READ_BACK = [
    ("sales_", "sales_posted_transactions"),
    ("purchase_", "purchase_posted_transactions"),
    ("bank_", "bank_posted_transactions"),
    ("stock_", "product_transaction_views"),
]

# Array properties that hold a document's lines.
LINE_ARRAYS = frozenset({"lines"})

INTEGER_FORMATS = frozenset({"int16", "int32", "int64"})

SENTENCE_END = re.compile(r"(?<=[a-z0-9)]\.)\s+(?=[A-Z])")


class Module:
    """One OpenAPI 3 module: its name, paths and component schemas."""

    def __init__(self, path: Path) -> None:
        self.name = path.name[len(FILE_PREFIX) : -len(FILE_SUFFIX)]
        data = json.loads(path.read_text(encoding="utf-8"))
        self.paths: dict[str, dict[str, Any]] = data["paths"]
        self.schemas: dict[str, dict[str, Any]] = data["components"]["schemas"]

    def resolve(self, schema: dict[str, Any] | None) -> dict[str, Any]:
        """A schema with its $ref followed and its allOf parts merged (siblings kept)."""
        if not schema:
            return {}
        result: dict[str, Any] = {}
        if "$ref" in schema:
            result.update(self.resolve(self.schemas[ref_name(schema["$ref"])]))
        for part in schema.get("allOf", []):
            merged = self.resolve(part)
            props = {**result.get("properties", {}), **merged.get("properties", {})}
            required = [*result.get("required", []), *merged.get("required", [])]
            result.update(merged)
            result["properties"] = props
            result["required"] = required
        for key, value in schema.items():
            if key not in {"$ref", "allOf"}:
                result[key] = value
        return result

    def properties(self, schema: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
        """The resolved properties of a schema (empty when it has none)."""
        props = self.resolve(schema).get("properties") or {}
        return {name: self.resolve(prop) for name, prop in props.items()}


def ref_name(ref: str) -> str:
    """The component name a $ref points at."""
    return ref.rsplit("/", 1)[-1]


def schema_name(schema: dict[str, Any] | None) -> str | None:
    """The component name of a schema or of its array items."""
    if not schema:
        return None
    if schema.get("type") == "array":
        schema = schema.get("items") or {}
    ref = schema.get("$ref")
    return ref_name(ref) if ref else None


def body_schema(op: dict[str, Any]) -> dict[str, Any] | None:
    """The request body schema of an operation."""
    content = (op.get("requestBody") or {}).get("content") or {}
    for media in content.values():
        return media.get("schema")
    return None


def response_schema(op: dict[str, Any]) -> dict[str, Any] | None:
    """The schema of an operation's 200 response."""
    content = (op.get("responses", {}).get("200") or {}).get("content") or {}
    for media in content.values():
        return media.get("schema")
    return None


def first_sentence(text: str | None) -> str:
    """The first sentence of a description, cleaned to one line."""
    cleaned = clean_description(text)
    return SENTENCE_END.split(cleaned, maxsplit=1)[0] if cleaned else ""


def column_type(prop: dict[str, Any]) -> str:
    """The SQL type of a property, trusting a numeric or boolean format over a stray type."""
    kind = prop.get("type")
    fmt = str(prop.get("format", ""))
    if fmt in INTEGER_FORMATS and kind in {"integer", "number", "string"}:
        return "INTEGER"
    if fmt.startswith("decimal") and kind in {"integer", "number"}:
        return "DECIMAL"
    if fmt == "boolean" and kind in {"object", "boolean"}:
        return "BOOLEAN"
    return sql_type(prop)


def max_length(prop: dict[str, Any]) -> int | None:
    """maxLength, or a bare number written as a string's format (format "20")."""
    if prop.get("maxLength"):
        return int(prop["maxLength"])
    fmt = str(prop.get("format", ""))
    if prop.get("type") == "string" and fmt.isdigit() and int(fmt) > 0:
        return int(fmt)
    return None


def is_flattenable(prop: dict[str, Any]) -> bool:
    """An object with fields of its own (empty expandable links stay JSON)."""
    return prop.get("type", "object") == "object" and bool(prop.get("properties"))


class Writable:
    """Which record paths the POST and PUT bodies accept, and which POST requires."""

    def __init__(
        self,
        module: Module,
        bodies: list[dict[str, Any] | None],
        create_body: dict[str, Any] | None,
    ) -> None:
        self.module = module
        self.bodies = [b for b in bodies if b]
        self.create_body = create_body

    def _field(self, schema: dict[str, Any], path: list[str]) -> dict[str, Any] | None:
        props = self.module.properties(schema)
        prop = props.get(path[0])
        if prop is None or len(path) == 1:
            return prop
        if prop.get("readOnly"):
            return None
        return self._field(prop, path[1:])

    def accepts(self, path: list[str]) -> bool:
        """Whether a body accepts a value at this path."""
        for body in self.bodies:
            prop = self._field(body, path)
            if prop is not None and not prop.get("readOnly"):
                return True
        return False

    def required(self, path: list[str]) -> bool:
        """Whether the POST body requires this path (each level required)."""
        schema = self.module.resolve(self.create_body) if self.create_body else None
        for step in path:
            if not schema or step not in schema.get("required", []):
                return False
            schema = self.module.properties(schema).get(step)
        return True


def build_columns(
    module: Module, record: dict[str, Any], writable: Writable, first: str | None = None
) -> list[dict[str, Any]]:
    """The columns of a record: scalars, objects flattened one level, the rest as JSON."""
    columns: list[dict[str, Any]] = []

    def add(path: list[str], prop: dict[str, Any], parent_read_only: bool = False) -> None:
        type_ = column_type(prop)
        required = writable.required(path)
        # A few fields are readOnly yet required by POST (cost_centres.code): write-once.
        read_only = not required and (
            parent_read_only or bool(prop.get("readOnly")) or not writable.accepts(path)
        )
        columns.append(
            column(
                "_".join(snake(step) for step in path),
                type_,
                path,
                description=prop.get("description", ""),
                nullable=path != ["id"],
                read_only=read_only,
                required_on_create=required,
                max_length=max_length(prop) if type_ == "TEXT" else None,
                enum=[str(v) for v in prop["enum"]] if prop.get("enum") else None,
            )
        )

    for name, prop in module.properties(record).items():
        if is_flattenable(prop) and column_type(prop) == "JSON":
            for field, inner in module.properties(prop).items():
                add([name, field], inner, bool(prop.get("readOnly")))
        else:
            add([name], prop)

    names = [c["name"] for c in columns]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"duplicate column names {duplicates}")
    if first and first in names:
        columns.insert(0, columns.pop(names.index(first)))
    return columns


def pushdown(columns: list[dict[str, Any]], readable: bool) -> dict[str, Any]:
    """OData $filter, $orderby and $select over the scalar columns of a list table."""
    if not readable:
        return {"parameters": [], "expression": None, "sort": None, "projection": None}
    scalars = [c for c in columns if c["type"] in FILTER_OPERATORS]
    return {
        "parameters": [],
        "expression": {
            "syntax": "odata",
            "parameter": "$filter",
            "logical": ["AND", "OR", "NOT"],
            "columns": {c["name"]: list(FILTER_OPERATORS[c["type"]]) for c in scalars},
        },
        "sort": {
            "parameter": "$orderby",
            "syntax": "odata",
            "columns": [c["name"] for c in scalars],
            "multiple": True,
        },
        "projection": {"parameter": "$select", "always": [], "all": None},
    }


def table(
    name: str,
    module: Module,
    description: str,
    operations: dict[str, Any],
    columns: list[dict[str, Any]],
    paging: dict[str, Any],
    readable: bool,
) -> dict[str, Any]:
    """A table definition in the key order of table.schema.json."""
    names = {c["name"] for c in columns}
    return {
        "name": name,
        "product": PRODUCT,
        "description": description,
        "aliases": [],
        "resource": name,
        "module": module.name,
        "operations": operations,
        "key": "id" if "id" in names else None,
        "updated_column": "date_time_updated" if "date_time_updated" in names else None,
        "created_column": "date_time_created" if "date_time_created" in names else None,
        "deletions": None,
        "paging": dict(paging),
        "fixed_parameters": {},
        "columns": columns,
        "pushdown": pushdown(columns, readable),
        "children": [],
        "parent": None,
        "procedures": [],
    }


def operation(
    method: str, path: str, *, body: str | None = None, record: str | None = None
) -> dict[str, Any]:
    """An operation; body_schema only on writes."""
    op: dict[str, Any] = {"method": method, "path": path, "envelope": None}
    if method in {"POST", "PUT"}:
        op["body_schema"] = body
    op["record_schema"] = record
    return op


def list_table(
    module: Module, path: str, resources: set[str]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The table of a top-level GET resource, and its child tables (unless a resource has
    the child's name)."""
    name = path.strip("/")
    item = module.paths[path]
    one_path = f"{path}/{{Id}}"
    one = module.paths.get(one_path, {})
    list_response = response_schema(item["get"]) or {}
    record_name = schema_name(list_response)
    singleton = list_response.get("type") != "array"
    record = module.resolve(list_response if singleton else list_response.get("items"))

    operations: dict[str, Any] = {"list": operation("GET", path, record=record_name)}
    key_path = f"{path}/{{key}}"
    if "get" in one:
        got = schema_name(response_schema(one["get"]))
        operations["get"] = operation("GET", key_path, record=got)
    create = update = None
    if "post" in item:
        create = body_schema(item["post"])
        operations["create"] = operation(
            "POST",
            path,
            body=schema_name(create),
            record=schema_name(response_schema(item["post"])),
        )
    if "put" in one:
        update = body_schema(one["put"])
        operations["update"] = operation(
            "PUT",
            key_path,
            body=schema_name(update),
            record=schema_name(response_schema(one["put"])),
        )
    if "delete" in one:
        operations["delete"] = operation("DELETE", key_path)

    writable = Writable(module, [create, update], create)
    columns = build_columns(module, record, writable)
    get = item["get"]
    description = (
        first_sentence(get.get("description"))
        or first_sentence(get.get("summary"))
        or clean_description(item.get("x-sage-pathtitle"))
        or name
    )
    parent = table(
        name,
        module,
        description,
        operations,
        columns,
        NO_PAGING if singleton else PAGING,
        readable=not singleton,
    )
    if singleton:
        parent["key"] = None

    children = []
    for prop_name, prop in module.properties(record).items():
        if prop_name not in LINE_ARRAYS or prop.get("type") != "array":
            continue
        line_schema = prop.get("items") or {}
        if not module.properties(line_schema):
            continue
        child = child_table(module, parent, prop_name, line_schema, [create, update])
        if child["name"] not in resources:
            children.append(child)
    parent["children"] = [c["name"] for c in children]
    return parent, children


def singular(name: str) -> str:
    """sop_orders -> sop_order, pop_order_return_views -> pop_order_return_view."""
    return name[:-1] if name.endswith("s") else name


def child_table(
    module: Module,
    parent: dict[str, Any],
    array: str,
    line_schema: dict[str, Any],
    parent_bodies: list[dict[str, Any] | None],
) -> dict[str, Any]:
    """A child table over the line array of a parent's records (written through the parent)."""
    stem = singular(parent["name"])
    name = f"{stem}_{array}"
    key_column = f"{stem}_id"
    line_bodies = [module.properties(b).get(array, {}).get("items") for b in parent_bodies if b]
    create_lines = (
        module.properties(parent_bodies[0]).get(array, {}).get("items")
        if parent_bodies[0]
        else None
    )
    writable = Writable(module, line_bodies, create_lines)
    columns = build_columns(module, module.resolve(line_schema), writable, first=key_column)
    if columns[0]["name"] != key_column:
        columns.insert(
            0,
            column(
                key_column,
                "INTEGER",
                [key_column],
                read_only=True,
                description=f"Id of the {parent['name']} record.",
            ),
        )
    what = first_sentence(module.resolve(line_schema).get("description")) or f"Lines of {stem}."
    description = (
        f"{what} Rows of the {array} array embedded in {parent['name']} records; "
        f"written through {parent['name']}."
    )
    child = table(name, module, description, {}, columns, parent["paging"], readable=False)
    child["resource"] = parent["resource"]
    child["parent"] = {"table": parent["name"], "path": [array], "key_column": key_column}
    return child


def read_back(name: str) -> str:
    """Where the posted result of an insert-only table can be read."""
    for prefix, target in READ_BACK:
        if name.startswith(prefix):
            return target
    return "the posted transactions"


def insert_only_table(module: Module, path: str) -> dict[str, Any]:
    """A POST-only transaction collection: create is its only operation."""
    name = path.strip("/")
    item = module.paths[path]
    post = item["post"]
    body = body_schema(post)
    operations = {
        "create": operation(
            "POST", path, body=schema_name(body), record=schema_name(response_schema(post))
        )
    }
    columns = build_columns(module, module.resolve(body), Writable(module, [body], body))
    summary = first_sentence(post.get("description")) or first_sentence(post.get("summary")) or name
    description = (
        f"{summary} Insert-only: invoices, receipts and payments are POST-only; "
        f"read them back as posted transactions ({read_back(name)})."
    )
    result = table(name, module, description, operations, columns, NO_PAGING, readable=False)
    result["key"] = None
    return result


def is_posting(module: Module, path: str) -> bool:
    """A POST-only top-level path that posts a transaction (answers with a URN or is listed)."""
    item = module.paths[path]
    if "{" in path or "get" in item or "post" not in item:
        return False
    name = path.strip("/")
    return schema_name(response_schema(item["post"])) == "urn" or name in EXTRA_POSTINGS


def product_definition() -> dict[str, Any]:
    """The Sage 200 product: base URLs, Sage ID OAuth, site and company headers."""
    return {
        "product": PRODUCT,
        "title": "Sage 200 (UK Standard and Professional)",
        "short_title": "Sage 200",
        "connection_name": "Sage200",
        "element_keys": ["sage200"],
        "api_version": "v1",
        "base_urls": {
            "StandardUK": "https://api.columbus.sage.com/uk/sage200/accounts/v1",
            "ProfessionalUK": "https://api.columbus.sage.com/uk/sage200extra/accounts/v1",
        },
        "auth": {
            "type": "oauth2",
            "authorization_url": "https://id.sage.com/authorize",
            "token_url": "https://id.sage.com/oauth/token",
            "revoke_url": "https://id.sage.com/oauth/revoke",
            "scopes": ["openid", "profile", "email", "offline_access"],
            "default_scope": "openid profile email offline_access",
            "pkce": True,
            "access_token_lifetime": None,
            "refresh_token_rotates": True,
            "extra_authorize_parameters": {"audience": "s200ukipd/sage200"},
        },
        "headers": [
            {"name": "X-Site", "property": "Site", "required": True, "discovery": "/sites"},
            {"name": "X-Company", "property": "Company", "required": True, "discovery": "/sites"},
        ],
        "error_format": "sage200",
        "procedures": oauth_procedures(),
    }


def build(reference: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The Sage 200 product and its tables, sorted by name.

    A resource published by two modules (customer_price_bands: price-book and sales,
    identical) is taken from the first module in file-name order.
    """
    files = sorted((reference / "sage200").glob(FILE_PATTERN))
    if len(files) != 11:
        raise ValueError(f"expected 11 Sage 200 modules, found {len(files)}")
    modules = [Module(file) for file in files]
    resources = {path.strip("/") for module in modules for path in module.paths if "{" not in path}
    tables: dict[str, dict[str, Any]] = {}
    done: set[str] = set()
    made: list[dict[str, Any]] = []
    for module in modules:
        for path, item in module.paths.items():
            name = path.strip("/")
            if "{" in path or name in done:
                continue
            if "get" in item:
                done.add(name)
                parent, children = list_table(module, path, resources)
                made.extend([parent, *children])
            elif is_posting(module, path):
                done.add(name)
                made.append(insert_only_table(module, path))
    for one in made:
        if one["name"] in tables:
            raise ValueError(f"table name clash: {one['name']}")
        tables[one["name"]] = one
    return product_definition(), [tables[name] for name in sorted(tables)]
