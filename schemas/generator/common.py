"""What the product generators share: type mapping, column building, output."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

SCHEMAS_DIR = Path(__file__).resolve().parent.parent
REPO_ROOT = SCHEMAS_DIR.parent
DEFAULT_REFERENCE = SCHEMAS_DIR / "definitions"  # Sage's published definitions (SOURCES.md)

PRODUCTS = ("sage_accounting", "sage_200", "sage_crm")

COMPARISON = ["=", "!=", "<", "<=", ">", ">="]


def sql_type(prop: dict[str, Any]) -> str:
    """The SQL type of a JSON Schema property of a published definition."""
    kind = prop.get("type")
    fmt = str(prop.get("format", ""))
    if kind == "string":
        if fmt == "date-time":
            return "DATETIME"
        if fmt == "date":
            return "DATE"
        return "TEXT"
    if kind == "integer":
        return "INTEGER"
    if kind == "number":
        return "DECIMAL"
    if kind == "boolean":
        return "BOOLEAN"
    return "JSON"


def snake(name: str) -> str:
    """A SQL identifier for an API field or resource name ($path -> path)."""
    name = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name.lstrip("$"))
    name = re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_").lower()
    if not name or not name[0].isalpha():
        name = "f_" + name
    return name


def clean_description(text: str | None) -> str:
    """One line of plain text from a definition's description (HTML and newlines out)."""
    if not text:
        return ""
    text = re.sub(r"<[^>]+>", " ", text)
    for entity, char in (("&quot;", '"'), ("&lt;", "<"), ("&gt;", ">"), ("&amp;", "&")):
        text = text.replace(entity, char)
    return re.sub(r"\s+", " ", text).strip()


def column(
    name: str,
    type_: str,
    path: list[str],
    *,
    description: str = "",
    nullable: bool = True,
    read_only: bool = False,
    required_on_create: bool = False,
    write_path: list[str] | None = None,
    max_length: int | None = None,
    enum: Iterable[str] | None = None,
) -> dict[str, Any]:
    """A column definition in the key order of table.schema.json."""
    col: dict[str, Any] = {
        "name": name,
        "type": type_,
        "path": path,
        "nullable": nullable,
        "read_only": read_only,
        "required_on_create": required_on_create,
    }
    if write_path is not None and write_path != path:
        col["write_path"] = write_path
    if max_length:
        col["max_length"] = max_length
    if enum:
        col["enum"] = list(enum)
    col["description"] = clean_description(description)
    return col


def dump(data: Any) -> str:
    """The committed text of a definition: stable, readable, diff-friendly."""
    return json.dumps(data, indent=1, ensure_ascii=False) + "\n"


def _parameter(name: str, type_: str, description: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": type_, "required": False, **extra, "description": description}


def oauth_procedures() -> list[dict[str, Any]]:
    """The three OAuth 2.0 helper procedures of an OAuth product (run by the connector)."""
    token_columns = [
        {"name": "OAuthAccessToken", "type": "TEXT", "description": "The access token."},
        {"name": "OAuthRefreshToken", "type": "TEXT", "description": "The refresh token."},
        {"name": "ExpiresIn", "type": "INTEGER", "description": "Access token lifetime, seconds."},
    ]
    callback = _parameter(
        "CallbackUrl", "TEXT", "Redirect URI registered for the application (default: CallbackURL)."
    )
    scope = _parameter("Scope", "TEXT", "Space-separated scopes (default: the product's scope).")
    state = _parameter("State", "TEXT", "Opaque value returned unchanged to the redirect URI.")
    return [
        {
            "name": "GetOAuthAuthorizationURL",
            "description": "Returns the URL where the user signs in and grants access (web flow).",
            "parameters": [callback, scope, state],
            "result_columns": [
                {"name": "URL", "type": "TEXT", "description": "The authorization URL to open."}
            ],
            "request": {"builtin": "oauth_authorization_url"},
        },
        {
            "name": "GetOAuthAccessToken",
            "description": "Exchanges an authorization code for tokens (APP: runs the browser).",
            "parameters": [
                _parameter(
                    "AuthMode",
                    "TEXT",
                    "APP: the connector opens the browser and listens on CallbackUrl; WEB: the "
                    "caller passes the Verifier it received on its own redirect URI.",
                    default="APP",
                    enum=["APP", "WEB"],
                ),
                scope,
                callback,
                state,
                _parameter("Verifier", "TEXT", "The authorization code (WEB mode)."),
            ],
            "result_columns": token_columns,
            "request": {"builtin": "oauth_access_token"},
        },
        {
            "name": "RefreshOAuthAccessToken",
            "description": "Exchanges a refresh token for a new access token (and refresh token).",
            "parameters": [
                {
                    "name": "OAuthRefreshToken",
                    "type": "TEXT",
                    "required": True,
                    "description": "The refresh token from the last token response.",
                }
            ],
            "result_columns": token_columns,
            "request": {"builtin": "oauth_refresh_token"},
        },
    ]
