"""Sandbox answers checked against Sage's published definitions with jsonschema.

Independent of the sandbox and of the catalog: the Accounting Swagger's ``definitions``
and the Sage 200 OpenAPI ``components.schemas`` are the schemas, made strict (a record
may carry only the properties its definition lists). Each violation has a kind (the
JSON Schema keyword that failed, refined for the known defects below) and a place.

KNOWN_DEFECTS lists, in this one place, the differences between the definitions and what
Sage itself answers (the recorded samples); violations of those kinds are allowed.
"""

from __future__ import annotations

import copy
import json
import re
from collections import Counter
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

DEFINITIONS = Path(__file__).resolve().parent.parent / "schemas" / "definitions"
ACCOUNTING = DEFINITIONS / "sage-accounting-v3.1.openapi.json"
NUMERIC = re.compile(r"^-?\d+(\.\d+)?$")
ENUM_NAME = re.compile(r"^(?:[A-Z][a-z]+)+Type(?:[A-Z][a-z0-9]*)+$")  # BankAccountTypeCurrent

# kind -> why it is allowed (the definition's own defect, not the sandbox's).
KNOWN_DEFECTS: dict[str, str] = {
    "null": "the definitions declare no nullability, yet Sage answers null for absent "
    "values (the recorded samples: bank_accounts' journal_code, sales invoices' "
    "withholding fields...)",
    "enum-name-over-maxLength": "Sage 200 declares maxLength 20 on enum fields whose "
    "members are longer, its own default among them (customer.account_type: "
    "'TradingAccountTypeOpenItem', 26 characters)",
    "type-contradicts-format": "Sage 200 declares a type its own format contradicts, and "
    "answers by the format: customer_view.default_tax_rate is type integer, format "
    "'decimal 2dp'; pop_order_line.cancel_requisition_lines is type object, format "
    "'boolean'; purchase_transaction_enquiry_view.discount_days is type string, format 'int16'",
    "number-as-string": "Accounting declares money and quantities as numbers, yet Sage "
    'answers them as strings ("50.00"), as every recorded sample shows',
}


def _strict(node: Any) -> Any:
    """Every object schema with properties refuses others (additionalProperties false)."""
    if isinstance(node, dict):
        out = {k: _strict(v) for k, v in node.items()}
        if "properties" in out and "additionalProperties" not in out and "allOf" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(node, list):
        return [_strict(v) for v in node]
    return node


@cache
def accounting_root() -> dict[str, Any]:
    doc = json.loads(ACCOUNTING.read_text(encoding="utf-8"))
    return {"definitions": _strict(doc["definitions"])}


@cache
def sage200_root() -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    for path in sorted((DEFINITIONS / "sage200").glob("*.openapi3.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        for name, schema in doc.get("components", {}).get("schemas", {}).items():
            schemas.setdefault(name, schema)
    return {"components": {"schemas": _strict(schemas)}}


def _validator(product: str, definition: str) -> jsonschema.protocols.Validator:
    if product == "sage_accounting":
        root = copy.copy(accounting_root())
        root["$ref"] = f"#/definitions/{definition}"
        return jsonschema.Draft4Validator(root)
    root = copy.copy(sage200_root())
    root["$ref"] = f"#/components/schemas/{definition}"
    return jsonschema.Draft7Validator(root, format_checker=None)


@cache
def validator(product: str, definition: str) -> Any:
    return _validator(product, definition)


def kind_of(error: jsonschema.ValidationError) -> str:
    if error.validator == "type":
        if error.instance is None:
            return "null"
        expected = error.validator_value
        expected = expected if isinstance(expected, list) else [expected]
        if (
            isinstance(error.instance, str)
            and NUMERIC.match(error.instance)
            and {"number", "integer"} & set(expected)
        ):
            return "number-as-string"
        if _fits_format(error.instance, str(error.schema.get("format", ""))):
            return "type-contradicts-format"
        return "type"
    if (
        error.validator == "maxLength"
        and isinstance(error.instance, str)
        and ENUM_NAME.match(error.instance)
    ):
        return "enum-name-over-maxLength"
    if error.validator == "additionalProperties":
        return "unknown-property"
    return str(error.validator)


def _fits_format(value: Any, form: str) -> bool:
    """A value that is what the schema's format (not its type) says: boolean, decimal."""
    if form == "boolean":
        return isinstance(value, bool)
    if form.startswith("decimal"):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if form in ("int16", "int32", "int64"):
        return isinstance(value, int) and not isinstance(value, bool)
    return False


def violations(product: str, definition: str, record: Any, where: str) -> list[tuple[str, str]]:
    """(kind, place: message) of every way the record breaks its definition."""
    out = []
    for error in validator(product, definition).iter_errors(record):
        leaves = [error] if not error.context else list(_leaves(error))
        for leaf in leaves:
            place = where + "".join(f"[{p!r}]" for p in leaf.absolute_path)
            out.append((kind_of(leaf), f"{place}: {leaf.message[:160]}"))
    out += [("placeholder", f"{where}{place}: {text!r}") for place, text in _placeholders(record)]
    return out


def _placeholders(value: Any, where: str = "") -> Iterable[tuple[str, str]]:
    """Text that is its field's own name and a number: "Accounting Type 0"."""
    if isinstance(value, dict):
        for key, inner in value.items():
            shown = str(key).replace("_", " ").title()
            if isinstance(inner, str) and re.fullmatch(re.escape(shown) + r" \d+", inner):
                yield f"{where}.{key}", inner
            else:
                yield from _placeholders(inner, f"{where}.{key}")
    elif isinstance(value, list):
        for item in value:
            yield from _placeholders(item, where + "[]")


def _leaves(error: jsonschema.ValidationError) -> Iterable[jsonschema.ValidationError]:
    for sub in error.context or ():
        if sub.context:
            yield from _leaves(sub)
        else:
            yield sub


def tally(found: Iterable[tuple[str, str]]) -> Counter[str]:
    return Counter(kind for kind, _ in found)


def unexpected(found: Iterable[tuple[str, str]]) -> list[str]:
    """The violations that are not the definitions' known defects."""
    return [f"{kind}: {text}" for kind, text in found if kind not in KNOWN_DEFECTS]
