"""Test connection: the check integration users know as the Test button.

::

    result = check_connection(sagesql.connect(profile="books"))
    result.ok, result.identity   # True, {"business": "Acme Ltd", ...}

It reaches the API and signs in (the first request does both: Sage 200 first finds
its site and company in ``/sites``), then names what the connection reaches, by
reading the product's own tables through the engine: the business (Accounting), the
site, company and user (Sage 200), the user (CRM). A failure is kept, not raised:
``step`` says where it stopped (reach the API, sign in, read the company) and
``error`` the one-line reason, so a caller can show both and exit with its code.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sagesql.activities.clients import Connectable, client_of
from sagesql.connector.seams import Client
from sagesql.engine import pipeline
from sagesql.errors import AuthError, Error, OperationalError


@dataclass
class CheckResult:
    product: str
    api: str
    identity: dict[str, str] = field(default_factory=dict)
    step: str = ""  # where a failure stopped the check
    error: Error | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


def _rows(client: Client, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    result = pipeline.run(client, sql, params)
    try:
        return list(result.rows)
    finally:
        result.close()


def _accounting(client: Client, out: dict[str, str]) -> None:
    found = _rows(client, "SELECT id, name FROM businesses")
    wanted = client.settings.business_id
    alone = found if len(found) == 1 else []
    chosen = [r for r in found if r[0] == wanted] if wanted else alone
    if chosen:
        out["business"] = f"{chosen[0][1]} ({chosen[0][0]})"
    else:
        # Without BusinessId Sage answers for the login's lead business, which the list
        # does not mark.
        out["business"] = f"the lead business of {len(found)} (set BusinessId to choose one)"


def _sage200(client: Client, out: dict[str, str]) -> None:
    scope = client.product.scope_headers(client.settings, client.transport.get_json)
    site, company = scope.get("X-Site"), scope.get("X-Company")
    for row in _rows(client, "SELECT site_id, site_name, company_id, company_name FROM sites"):
        if str(row[0]) == site and str(row[2]) == company:
            out["site"] = f"{row[1]} ({site})"
            out["company"] = f"{row[3]} ({company})"
    users = _rows(client, "SELECT logon_name, friendly_name FROM current_user")
    if users:
        out["user"] = f"{users[0][1] or users[0][0]} ({users[0][0]})"


def _crm(client: Client, out: dict[str, str]) -> None:
    logon = client.settings.user or ""
    found = _rows(
        client,
        "SELECT user_firstname, user_lastname FROM users WHERE user_logon = ?",
        [logon],
    )
    name = " ".join(p for p in found[0] if p) if found else ""
    out["user"] = f"{name} ({logon})" if name else logon


# What names the connection, per product: the tables each API answers about itself.
IDENTIFY: dict[str, Callable[[Client, dict[str, str]], None]] = {
    "sage_accounting": _accounting,
    "sage_200": _sage200,
    "sage_crm": _crm,
}


def _step_of(exc: Error) -> str:
    if isinstance(exc, AuthError):
        return "sign in"
    if isinstance(exc, OperationalError):
        return "reach the API"
    return "read who the connection is"


def check_connection(connection: Connectable) -> CheckResult:
    """Reach, sign in, name the business/company/user; every failure kept in the result."""
    client = client_of(connection)
    result = CheckResult(client.product.connection_name, client.product.base_url(client.settings))
    started = time.monotonic()
    identify = IDENTIFY.get(client.product.id)
    try:
        client.transport  # noqa: B018 - Sage 200 finds its site and company here
        if identify is not None:
            identify(client, result.identity)
        else:  # a product without a table about itself: its first table answers
            first = client.catalog.tables(client.product.id)[0].name
            _rows(client, f"SELECT * FROM {first} LIMIT 1")
    except Error as exc:
        result.error, result.step = exc, _step_of(exc)
    result.seconds = time.monotonic() - started
    return result
