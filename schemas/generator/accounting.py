"""Sage Business Cloud Accounting v3.1 tables, read from Sage's published Swagger 2.0 definition.

One table per list endpoint of ``sage-accounting-v3.1.openapi.json`` (named by its path
segment), ``businesses`` from ``sage-accounting-v3.1-user-businesses.openapi.json``, the
views ``customers`` and ``suppliers`` over contacts, and one child table per embedded line
array (``sales_invoice_lines`` from ``sales_invoices.invoice_lines``...).

Columns come from the response record definition. A link to another record (an object
with ``id`` and ``displayed_as``, written as ``<name>_id``) becomes ``<name>_id`` and
``<name>_displayed_as``; other embedded objects are flattened one level
(``main_address_city``); arrays and deeper objects are JSON columns. Whether a column can
be written comes from the create and update body schemas, which list what they accept.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

from schemas.generator.common import clean_description, column, oauth_procedures, snake, sql_type

PRODUCT = "sage_accounting"
DEFINITION = "sage-accounting-v3.1.openapi.json"
BUSINESSES_DEFINITION = "sage-accounting-v3.1-user-businesses.openapi.json"

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 200

# Required fields of create bodies documented by Sage (SAGE-APIS.md), added to the
# definition's own `required` lists: resource -> body keys.
DOCUMENTED_REQUIRED: dict[str, list[str]] = {
    "contacts": ["name", "contact_type_ids"],
    "sales_invoices": ["contact_id", "date", "invoice_lines"],
    "contact_payments": [
        "transaction_type_id",
        "contact_id",
        "bank_account_id",
        "date",
        "total_amount",
    ],
    "journals": ["date", "reference", "journal_lines"],
}

# Resources whose DELETE voids the document and takes a void reason (SAGE-APIS.md).
VOIDABLE = ("sales_invoices", "sales_credit_notes")

# Views over contacts: table -> (contact type, description).
CONTACT_VIEWS: dict[str, tuple[str, str]] = {
    "customers": ("CUSTOMER", "Customers: the contacts of type CUSTOMER"),
    "suppliers": ("VENDOR", "Suppliers: the contacts of type VENDOR"),
}

# Records without an id whose single-record path is keyed by their currency code.
CURRENCY_KEYED = ("business_exchange_rates", "exchange_rates", "live_exchange_rates")

# Arrays of objects that hold a record's line items and get a child table.
LINE_ARRAYS = ("allocated_artefacts",)

# What the `search` parameter matches, by a phrase of its description -> columns.
SEARCH_FIELDS: list[tuple[str, list[str]]] = [
    ("contact name, company name or reference", ["name", "reference"]),
    ("reference or contact name", ["reference", "contact_name"]),
    ("item code or description", ["item_code", "description"]),
    ("by the details", ["details"]),
]

# List parameters that switch what is shown rather than filter (never pushed down), and
# filters whose semantics are not a plain equality on the column of the same name.
IGNORED_PARAMETERS = {
    "page",
    "items_per_page",
    "attributes",
    "nested_attributes",
    "context_date",
    "date",
    "usage",
    "search",
    "sort",
    "deleted_since",
    "attachment_context_id",  # only valid together with attachment_context_type_id
}

RANGE_OPERATORS = [(">=", True), (">", False)]
END_OPERATORS = [("<=", True), ("<", False)]

LIST_PATH = re.compile(r"^/([a-z_]+)$")
ACTION_PATH = re.compile(r"^/([a-z_]+)/\{[^}]+\}/([a-z_]+)$")
PATH_PARAMETER = re.compile(r"\{[^}]+\}")


def singular(name: str) -> str:
    """The singular of a plural resource name (sales_invoices -> sales_invoice)."""
    if name.endswith("ies"):
        return name[:-3] + "y"
    if name.endswith(("sses", "uses")):
        return name[:-2]
    if name.endswith("s"):
        return name[:-1]
    return name


def camel(name: str) -> str:
    """CamelCase of a snake_case name (sales_invoice -> SalesInvoice)."""
    return "".join(part.capitalize() for part in name.split("_"))


class Definition:
    """One Swagger 2.0 document: paths and definitions, with $ref resolution."""

    def __init__(self, path: Path) -> None:
        doc = json.loads(path.read_text(encoding="utf-8"))
        self.paths: dict[str, dict[str, Any]] = doc["paths"]
        self.definitions: dict[str, dict[str, Any]] = doc.get("definitions", {})

    @staticmethod
    def ref_name(schema: dict[str, Any]) -> str | None:
        ref = schema.get("$ref")
        return ref.rsplit("/", 1)[-1] if isinstance(ref, str) else None

    def properties(self, name: str) -> dict[str, Any]:
        return dict(self.definitions.get(name, {}).get("properties", {}))

    def body(self, operation: dict[str, Any] | None) -> tuple[str | None, str | None, Body]:
        """(body schema name, envelope key, accepted fields) of a write operation."""
        if not operation:
            return None, None, Body()
        for param in operation.get("parameters", []):
            if param.get("in") == "body":
                name = self.ref_name(param.get("schema", {}))
                props = self.properties(name) if name else {}
                if len(props) == 1:
                    envelope, inner = next(iter(props.items()))
                    return name, envelope, Body.of(inner)
                return name, None, Body.of(self.definitions.get(name or "", {}))
        return None, None, Body()

    @staticmethod
    def response(operation: dict[str, Any]) -> dict[str, Any] | None:
        for code in ("200", "201"):
            schema = operation.get("responses", {}).get(code, {}).get("schema")
            if schema:
                return dict(schema)
        return None


class Body:
    """The fields a create or update body accepts at one level, and which are required."""

    def __init__(
        self, props: dict[str, Any] | None = None, required: list[str] | None = None
    ) -> None:
        self.props: dict[str, Any] = props or {}
        self.required: set[str] = set(required or [])

    @classmethod
    def of(cls, schema: dict[str, Any]) -> Body:
        return cls(dict(schema.get("properties", {})), list(schema.get("required", [])))

    def merged(self, other: Body) -> Body:
        """This body's fields plus the other's (create then update); required from this one."""
        props = dict(self.props)
        for key, value in other.props.items():
            props.setdefault(key, value)
        return Body(props, sorted(self.required))

    def __contains__(self, key: str) -> bool:
        return key in self.props

    def sub(self, key: str) -> Body:
        """The body of an object field (or of the items of an array field)."""
        schema = self.props.get(key, {})
        if schema.get("type") == "array":
            schema = schema.get("items", {})
        return Body.of(schema) if isinstance(schema, dict) else Body()


def _link_columns(
    name: str, prop: dict[str, Any], path: list[str], write_prefix: list[str], body: Body
) -> list[dict[str, Any]]:
    key = path[-1] + "_id"
    description = prop.get("description", "")
    writable = key in body
    return [
        column(
            name + "_id",
            "TEXT",
            [*path, "id"],
            description=f"{description} (id)".strip(),
            read_only=not writable,
            required_on_create=writable and key in body.required,
            write_path=[*write_prefix, key] if writable else None,
        ),
        column(
            name + "_displayed_as",
            "TEXT",
            [*path, "displayed_as"],
            description=f"{description} (display text)".strip(),
            read_only=True,
        ),
    ]


def _property_columns(
    spec: Definition,
    key: str,
    prop: dict[str, Any],
    body: Body,
    prefix: list[str],
    flatten: bool,
) -> list[dict[str, Any]]:
    """The columns of one property of a record (prefix: path of the enclosing object)."""
    path = [*prefix, key]
    name = "_".join(snake(part) for part in path)
    description = prop.get("description", "")
    target = spec.ref_name(prop)
    if target is not None:
        target_props = spec.properties(target)
        link = "id" in target_props and "displayed_as" in target_props
        accepted_object = key in body and body.props[key].get("type") == "object"
        if link and (key + "_id" in body or not accepted_object):
            return _link_columns(name, prop, path, prefix, body)
        if flatten and target_props:
            sub_body = body.sub(key)
            cols: list[dict[str, Any]] = []
            for sub_key, sub_prop in target_props.items():
                if sub_key not in ("links", "$path"):
                    cols += _property_columns(spec, sub_key, sub_prop, sub_body, path, False)
            return cols
        return [
            column(
                name,
                "JSON",
                path,
                description=description,
                read_only=key not in body,
                required_on_create=key in body.required,
            )
        ]
    if prop.get("type") == "array":
        ids_key = singular(key) + "_ids"
        write_key = key if key in body else ids_key if ids_key in body else None
        return [
            column(
                name,
                "JSON",
                path,
                description=description,
                read_only=write_key is None,
                required_on_create=write_key is not None and write_key in body.required,
                write_path=[*prefix, write_key] if write_key else None,
            )
        ]
    type_ = sql_type(prop)
    enum = prop.get("enum")
    return [
        column(
            name,
            type_,
            path,
            description=description,
            nullable=path != ["id"],
            read_only=key not in body,
            required_on_create=key in body.required,
            max_length=prop.get("maxLength") if type_ == "TEXT" else None,
            enum=[str(v) for v in enum] if enum and type_ == "TEXT" else None,
        )
    ]


def record_columns(spec: Definition, record: str, body: Body) -> list[dict[str, Any]]:
    """The columns of a record definition: id, displayed_as, path first, then in order."""
    props = spec.properties(record)
    head = [k for k in ("id", "displayed_as", "$path") if k in props]
    keys = head + [k for k in props if k not in head and k != "links"]
    cols: list[dict[str, Any]] = []
    seen: set[str] = set()
    for key in keys:
        for col in _property_columns(spec, key, props[key], body, [], True):
            if col["name"] in seen:
                raise ValueError(f"{record}: duplicate column {col['name']}")
            seen.add(col["name"])
            cols.append(col)
    return cols


def _filter(
    col: str, operator: str, parameter: str, exact: bool, value_format: str
) -> dict[str, Any]:
    return {
        "column": col,
        "operator": operator,
        "parameter": parameter,
        "exact": exact,
        "value_format": value_format,
    }


def pushdown_parameters(
    parameters: list[dict[str, Any]], columns: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """Predicates the list endpoint's query parameters apply, on columns that exist."""
    filters: list[dict[str, Any]] = []
    for param in parameters:
        if param.get("in") != "query":
            continue
        name = param["name"]
        text = param.get("description", "") or ""
        if name == "updated_or_created_since" and "updated_at" in columns:
            filters += [
                _filter("updated_at", op, name, ex, "datetime") for op, ex in RANGE_OPERATORS
            ]
        elif name in ("from_date", "to_date") and "date" in columns and "dates" in text:
            ops = RANGE_OPERATORS if name == "from_date" else END_OPERATORS
            # Declared date-time (sent as the day's midnight UTC) or date, on a date column.
            kind = "day_datetime" if param.get("format") == "date-time" else "date"
            filters += [_filter("date", op, name, ex, kind) for op, ex in ops]
        elif name in ("updated_from_date", "updated_to_date") and "updated_at" in columns:
            ops = RANGE_OPERATORS if name == "updated_from_date" else END_OPERATORS
            filters += [_filter("updated_at", op, name, ex, "datetime") for op, ex in ops]
        elif name == "search":
            for phrase, fields in SEARCH_FIELDS:
                if phrase in text:
                    filters += [
                        _filter(f, "LIKE", name, False, "like_contains")
                        for f in fields
                        if columns.get(f, {}).get("type") == "TEXT"
                    ]
                    break
        elif name == "email" and "email" in columns:
            # matches the email of any contact person of the contact, not only this column
            filters.append(_filter("email", "=", name, False, "text"))
        elif name in IGNORED_PARAMETERS or name.startswith("show_") or name not in columns:
            continue
        elif param.get("type") == "boolean" and columns[name]["type"] == "BOOLEAN":
            filters.append(_filter(name, "=", name, True, "boolean"))
        elif param.get("type") == "string" and columns[name]["type"] == "TEXT":
            filters.append(_filter(name, "=", name, True, "text"))
    return filters


def sort_pushdown(
    parameters: list[dict[str, Any]], columns: dict[str, dict[str, Any]]
) -> dict[str, Any] | None:
    for param in parameters:
        if param.get("name") == "sort" and param.get("in") == "query":
            text = param.get("description", "") or ""
            match = re.search(r"Available attributes are:\s*([a-z_, ]+)", text)
            fields = [f.strip() for f in match.group(1).split(",")] if match else []
            return {
                "parameter": "sort",
                "syntax": "accounting",
                "columns": [f for f in fields if f in columns],
                "multiple": False,
            }
    return None


def _paging(parameters: list[dict[str, Any]], singleton: bool) -> dict[str, Any]:
    if singleton:
        return {"style": "none", "max_page_size": 1, "default_page_size": 1, "total": "none"}
    size = next((p for p in parameters if p.get("name") == "items_per_page"), {})
    return {
        "style": "page_number",
        "max_page_size": int(size.get("maximum", MAX_PAGE_SIZE)),
        "default_page_size": int(size.get("default", DEFAULT_PAGE_SIZE)),
        "total": "envelope",
    }


def _operation(
    method: str,
    path: str,
    *,
    envelope: str | None = None,
    body_schema: str | None = None,
    record_schema: str | None = None,
) -> dict[str, Any]:
    op: dict[str, Any] = {"method": method, "path": PATH_PARAMETER.sub("{key}", path)}
    if body_schema is not None:
        op["envelope"] = envelope
        op["body_schema"] = body_schema
    if record_schema is not None:
        op["record_schema"] = record_schema
    return op


def _key(resource: str, columns: dict[str, dict[str, Any]], singleton: bool) -> str | None:
    if singleton:
        return None
    if "id" in columns:
        return "id"
    if resource in CURRENCY_KEYED and "currency_id" in columns:
        return "currency_id"
    return None


def _description(operation: dict[str, Any], item: dict[str, Any]) -> str:
    for text in (
        operation.get("summary"),
        item.get("x-sage-pathtitle"),
        operation.get("description"),
    ):
        line = clean_description(text)
        if line:
            return line
    return "Sage Accounting records"


def _action_procedures(spec: Definition, resource: str) -> list[dict[str, Any]]:
    """Release/reissue actions (POST /{resource}/{key}/<action>) and voids."""
    thing = camel(singular(resource))
    procedures: list[dict[str, Any]] = []
    for path, item in spec.paths.items():
        match = ACTION_PATH.match(path)
        if not match or match.group(1) != resource or "post" not in item:
            continue
        action = match.group(2)
        post = item["post"]
        description = clean_description(post.get("summary")) or f"{camel(action)} a {thing}"
        procedures.append(
            {
                "name": camel(action) + thing,
                "description": description,
                "parameters": [
                    {
                        "name": "Id",
                        "type": "TEXT",
                        "required": True,
                        "description": f"The id of the {singular(resource).replace('_', ' ')}.",
                    }
                ],
                "result_columns": [
                    {"name": "id", "type": "TEXT", "description": "Id of the returned record."},
                    {
                        "name": "displayed_as",
                        "type": "TEXT",
                        "description": "Display text of the returned record.",
                    },
                ],
                "request": {"method": "POST", "path": f"/{resource}/{{Id}}/{action}"},
            }
        )
    key_item = spec.paths.get(f"/{resource}/{{key}}", {})
    if resource in VOIDABLE and "delete" in key_item:
        label = singular(resource).replace("_", " ")
        procedures.append(
            {
                "name": "Void" + thing,
                "description": (
                    f"Voids a {label} (DELETE with the void_reason query parameter; "
                    "a draft is deleted)."
                ),
                "parameters": [
                    {
                        "name": "Id",
                        "type": "TEXT",
                        "required": True,
                        "description": f"The id of the {label}.",
                    },
                    {
                        "name": "VoidReason",
                        "type": "TEXT",
                        "required": True,
                        "description": "Why the document is voided (kept on the record).",
                    },
                ],
                "result_columns": [
                    {"name": "success", "type": "BOOLEAN", "description": "True when voided."}
                ],
                "request": {
                    "method": "DELETE",
                    "path": f"/{resource}/{{Id}}",
                    # Sage's definition: void_reason is a query parameter, there is no body.
                    "query": {"void_reason": "{VoidReason}"},
                },
            }
        )
    return procedures


def resource_table(spec: Definition, resource: str) -> dict[str, Any]:
    """The table of one list endpoint (GET /<resource>) and the operations beside it."""
    list_path = f"/{resource}"
    item = spec.paths[list_path]
    key_path = next(
        (p for p in spec.paths if re.fullmatch(re.escape(list_path) + r"/\{[^}]+\}", p)), None
    )
    key_item = spec.paths.get(key_path, {}) if key_path else {}
    get = item["get"]
    response = spec.response(get) or {}
    singleton = response.get("type") != "array"
    record = spec.ref_name(response.get("items", {}) if not singleton else response) or ""
    parameters: list[dict[str, Any]] = list(get.get("parameters", []))

    operations: dict[str, Any] = {"list": _operation("GET", list_path, record_schema=record)}
    if "get" in key_item and key_path:
        get_record = spec.ref_name(spec.response(key_item["get"]) or {})
        operations["get"] = _operation("GET", key_path, record_schema=get_record)
    create_name, create_env, create_body = spec.body(item.get("post"))
    if create_name:
        created = spec.ref_name(spec.response(item["post"]) or {})
        operations["create"] = _operation(
            "POST", list_path, envelope=create_env, body_schema=create_name, record_schema=created
        )
    update_item, update_path = (item, list_path) if singleton else (key_item, key_path)
    update_name, update_env, update_body = spec.body(update_item.get("put"))
    if update_name and update_path:
        updated = spec.ref_name(spec.response(update_item["put"]) or {})
        operations["update"] = _operation(
            "PUT", update_path, envelope=update_env, body_schema=update_name, record_schema=updated
        )
    if "delete" in key_item and key_path:
        operations["delete"] = _operation("DELETE", key_path)

    create_body.required.update(DOCUMENTED_REQUIRED.get(resource, []))
    body = create_body.merged(update_body)
    columns = record_columns(spec, record, body)
    by_name = {c["name"]: c for c in columns}
    param_names = {p.get("name") for p in parameters}

    return {
        "name": snake(resource),
        "product": PRODUCT,
        "description": _description(get, item),
        "aliases": [],
        "resource": resource,
        "module": (get.get("tags") or [resource])[0],
        "operations": operations,
        "key": _key(resource, by_name, singleton),
        "updated_column": "updated_at" if "updated_at" in by_name else None,
        "created_column": "created_at" if "created_at" in by_name else None,
        "deletions": (
            {"parameter": "deleted_since", "inclusive": False, "column": "deleted_at"}
            if "deleted_since" in param_names
            else None
        ),
        "paging": _paging(parameters, singleton),
        "fixed_parameters": {},
        "columns": columns,
        "pushdown": {
            "parameters": pushdown_parameters(parameters, by_name),
            "expression": None,
            "sort": sort_pushdown(parameters, by_name),
            "projection": (
                {"parameter": "attributes", "always": ["id", "displayed_as", "$path"], "all": "all"}
                if "attributes" in param_names
                else None
            ),
        },
        "children": [],
        "parent": None,
        "procedures": _action_procedures(spec, resource),
    }


def child_tables(spec: Definition, parent: dict[str, Any]) -> list[dict[str, Any]]:
    """Tables of the line arrays embedded in the parent's records (parent.children is set)."""
    record = parent["operations"]["list"].get("record_schema") or ""
    props = spec.properties(record)
    create = parent["operations"].get("create", {}).get("body_schema")
    update = parent["operations"].get("update", {}).get("body_schema")
    envelope_bodies = []
    for schema in (create, update):
        inner = spec.properties(schema) if schema else {}
        envelope_bodies.append(Body.of(next(iter(inner.values()))) if len(inner) == 1 else Body())
    body = envelope_bodies[0].merged(envelope_bodies[1])
    parent_name = singular(parent["name"])
    children: list[dict[str, Any]] = []
    for key, prop in props.items():
        items = prop.get("items", {}) if prop.get("type") == "array" else {}
        line = spec.ref_name(items)
        if not line or not (key.endswith("_lines") or key in LINE_ARRAYS):
            continue
        name = f"{parent_name}_lines" if key.endswith("_lines") else f"{parent_name}_{key}"
        key_column = f"{parent_name}_id"
        line_body = body.sub(key)
        columns = [
            column(
                key_column,
                "TEXT",
                ["$parent", "id"],
                description=f"Id of the {parent_name.replace('_', ' ')} the line belongs to.",
                nullable=False,
                read_only=True,
            ),
            *record_columns(spec, line, line_body),
        ]
        if len({c["name"] for c in columns}) != len(columns):
            raise ValueError(f"{name}: duplicate column")
        children.append(
            {
                "name": name,
                "product": PRODUCT,
                "description": (
                    f"{key.replace('_', ' ').capitalize()} of {parent['name'].replace('_', ' ')}:"
                    f" one row per entry of {parent['name']}.{key}."
                ),
                "aliases": [],
                "resource": parent["resource"],
                "module": parent["module"],
                "operations": {},
                "key": "id" if any(c["name"] == "id" for c in columns) else None,
                "updated_column": None,
                "created_column": None,
                "deletions": None,
                "paging": dict(parent["paging"]),
                "fixed_parameters": {},
                "columns": columns,
                "pushdown": {
                    "parameters": [],
                    "expression": None,
                    "sort": None,
                    "projection": None,
                },
                "children": [],
                "parent": {"table": parent["name"], "path": [key], "key_column": key_column},
                "procedures": [],
            }
        )
        parent["children"].append(name)
    return children


def businesses_table(spec: Definition) -> dict[str, Any]:
    """/businesses from the user-businesses definition (no page parameters published)."""
    table = resource_table(spec, "businesses")
    table["paging"] = _paging([], False)
    return table


# The main contact person's fields a contact is written with (postContacts takes them in
# main_contact_person): the contact's own email, and telephone and mobile beside it.
CONTACT_PERSON_FIELDS = ("email", "telephone", "mobile")


def contact_person_columns(spec: Definition, contacts: dict[str, Any]) -> None:
    """``email``/``telephone``/``mobile`` on contacts, written through main_contact_person."""
    person = Body.of(spec.definitions["postContacts"]).sub("contact").sub("main_contact_person")
    columns = contacts["columns"]
    names = {c["name"]: c for c in columns}
    for field_name in CONTACT_PERSON_FIELDS:
        if field_name not in person:
            continue
        write_path = ["main_contact_person", field_name]
        existing = names.get(field_name)
        if existing is not None:
            # Contact.email is read-only in the record: it is the main contact person's.
            existing["read_only"] = False
            existing["write_path"] = write_path
            continue
        nested = names.get(f"main_contact_person_{field_name}")
        col = column(
            field_name,
            "TEXT",
            write_path,
            description=f"The main contact person's {field_name} (main_contact_person_"
            f"{field_name}); written through main_contact_person",
            max_length=nested.get("max_length") if nested else None,
        )
        columns.insert(columns.index(existing or names["name"]) + 1, col)
        names[field_name] = col


def contact_views(contacts: dict[str, Any]) -> list[dict[str, Any]]:
    views = []
    for name, (contact_type, description) in CONTACT_VIEWS.items():
        view = copy.deepcopy(contacts)
        view["name"] = name
        view["description"] = (
            f"{description} (the contacts table with contact_type_id={contact_type})."
        )
        view["fixed_parameters"] = {"contact_type_id": contact_type}
        # The view's own condition: a contact created through it is of its type (given
        # when contact_types is not), and one of another type is refused.
        view["fixed_values"] = {"contact_types": contact_type}
        views.append(view)
    return views


def product() -> dict[str, Any]:
    return {
        "product": PRODUCT,
        "title": "Sage Business Cloud Accounting",
        "short_title": "Sage Accounting",
        "connection_name": "SageAccounting",
        # The integration platforms' element keys (the first is the one sagesql writes).
        "element_keys": ["sageaccounting", "sageone", "sagebusinesscloudaccounting"],
        "api_version": "3.1",
        "base_urls": {"default": "https://api.accounting.sage.com/v3.1"},
        "auth": {
            "type": "oauth2",
            "authorization_url": "https://www.sageone.com/oauth2/auth/central?filter=apiv3.1",
            "token_url": "https://oauth.accounting.sage.com/token",
            "revoke_url": "https://oauth.accounting.sage.com/revoke",
            "scopes": ["full_access", "readonly"],
            "default_scope": "full_access",
            "pkce": True,
            "access_token_lifetime": 300,
            "refresh_token_rotates": True,
        },
        "headers": [
            {
                "name": "X-Business",
                "property": "BusinessId",
                "required": False,
                "discovery": "/businesses",
            }
        ],
        "error_format": "accounting_array",
        "procedures": oauth_procedures(),
    }


def build(reference: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The product definition and every table of Sage Accounting v3.1."""
    spec = Definition(reference / DEFINITION)
    tables: list[dict[str, Any]] = []
    for path, item in spec.paths.items():
        match = LIST_PATH.match(path)
        if not match or "get" not in item:
            continue
        table = resource_table(spec, match.group(1))
        tables.append(table)
        tables += child_tables(spec, table)
        if table["name"] == "contacts":
            contact_person_columns(spec, table)
            tables += contact_views(table)
    tables.append(businesses_table(Definition(reference / BUSINESSES_DEFINITION)))
    return product(), tables
