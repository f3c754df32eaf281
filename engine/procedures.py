"""Stored procedures: ``EXEC Name @P='v', ...`` (or ``EXECUTE Name P='v'``) run and answered.

Procedures are data (the table and product definitions): a procedure is either an HTTP
call (release, void, reissue...) whose path and body are filled from its parameters,
or a built-in auth step (GetOAuthAuthorizationURL, GetOAuthAccessToken,
RefreshOAuthAccessToken) done by the connector's login code. Every parameter is
checked before anything is sent. Token values a procedure returns are marked secret,
so the CLI masks them unless asked not to.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from sagesql.connector import logs
from sagesql.connector.auth import OAuthAuth
from sagesql.connector.login import (
    authorization_url,
    code_from,
    connection_login,
    exchange_code,
)
from sagesql.connector.seams import Client
from sagesql.connector.tokenstore import TokenSet
from sagesql.connector.transport import path_with
from sagesql.engine.conditions import NOT_A_LITERAL, literal_value
from sagesql.engine.result import Result, ResultColumn
from sagesql.engine.statement import Params, bind
from sagesql.engine.values import coerce
from sagesql.errors import ConfigurationError, ProgrammingError
from sagesql.schemas.catalog import Procedure, did_you_mean

EXEC_PATTERN = re.compile(r"^\s*EXEC(UTE)?\s", re.IGNORECASE)
SECRET_RESULTS = frozenset({"OAuthAccessToken", "OAuthRefreshToken"})


def is_exec(sql: str) -> bool:
    return bool(EXEC_PATTERN.match(sql or ""))


def parse_exec(sql: str, params: Params = None) -> tuple[str, dict[str, Any]]:
    """(procedure name, parameter name -> value) of an EXEC statement."""
    try:
        tree = sqlglot.parse_one(sql.strip().rstrip(";"), read="tsql")
    except (ParseError, TokenError) as exc:
        raise ProgrammingError(
            f"EXEC syntax error: {str(exc).splitlines()[0]}",
            hint="write EXEC Name @Param = 'value', @Other = 'value'",
        ) from None
    if not isinstance(tree, exp.Execute):
        raise ProgrammingError("not an EXEC statement", hint="write EXEC Name @Param = 'value'")
    tree = bind(tree, params)
    args: dict[str, Any] = {}
    for item in tree.expressions:
        if not isinstance(item, exp.EQ):
            raise ProgrammingError(
                f"bad EXEC argument {item.sql('tsql')!r}", hint="write @Param = 'value'"
            )
        name = item.this.name if isinstance(item.this, (exp.Parameter, exp.Column)) else None
        value = literal_value(item.expression)
        if not name or value is NOT_A_LITERAL:
            raise ProgrammingError(
                f"bad EXEC argument {item.sql('tsql')!r}",
                hint="give each parameter a literal value: @Param = 'value'",
            )
        args[name] = value
    return tree.this.name, args


def find(connection: Client, name: str) -> tuple[str | None, Procedure]:
    """The procedure of that name (any case) among the product's and its tables'."""
    found = connection.catalog.procedures(connection.product.id)
    for table, procedure in found:
        if procedure.name.lower() == name.lower():
            return table, procedure
    raise ProgrammingError(
        f"unknown procedure {name!r} for {connection.product.connection_name}",
        hint=did_you_mean(name, [p.name for _, p in found])
        or "run 'sagesql procedures' to list them",
    )


def check_arguments(procedure: Procedure, args: dict[str, Any], product: str) -> dict[str, Any]:
    """Arguments by the procedure's parameter names, typed; every problem in one error."""
    by_name = {p.name.lower(): p for p in procedure.parameters}
    problems: list[str] = []
    typed: dict[str, Any] = {}
    for given, value in args.items():
        param = by_name.get(given.lower())
        if param is None:
            hint = did_you_mean(given, [p.name for p in procedure.parameters])
            problems.append(f"unknown parameter @{given}" + (f" ({hint})" if hint else ""))
            continue
        try:
            typed[param.name] = coerce(param.type, value, product, column="@" + param.name)
        except Exception as exc:  # DataError: reported with the others
            problems.append(str(exc).split(". ")[0])
            continue
        if param.enum and str(typed[param.name]).upper() not in param.enum:
            problems.append(f"@{param.name} must be one of {', '.join(param.enum)}")
    for param in procedure.parameters:
        if param.name not in typed:
            if param.required:
                problems.append(f"@{param.name} is required")
            elif param.default is not None:
                typed[param.name] = param.default
    if problems:
        listed = ", ".join(f"@{p.name}" for p in procedure.parameters) or "none"
        raise ProgrammingError(
            f"EXEC {procedure.name}: " + "; ".join(problems), hint=f"its parameters are {listed}"
        )
    return typed


def run(connection: Client, sql: str, params: Params = None) -> Result:
    name, raw = parse_exec(sql, params)
    for key, value in raw.items():  # a token or code passed to an auth procedure
        if key.lower() in ("oauthrefreshtoken", "oauthaccesstoken", "verifier"):
            logs.register_secret(str(value))
    _, procedure = find(connection, name)
    args = check_arguments(procedure, raw, connection.product.id)
    request = procedure.request
    if "builtin" in request:
        answer = _builtin(connection, str(request["builtin"]), args)
    else:
        answer = _http(connection, procedure, args)
    columns = [ResultColumn(n, t, n in SECRET_RESULTS) for n, t, _ in procedure.result_columns]
    row = tuple(_pick(answer, c.name) for c in columns)

    def rows() -> Iterator[tuple[Any, ...]]:
        yield row

    return Result(columns, rows(), rowcount=1)


def _pick(answer: Any, name: str) -> Any:
    if not isinstance(answer, dict):
        return None
    for key, value in answer.items():
        if key.lower() == name.lower() or key.lower() == name.lower().lstrip("$"):
            return value if not isinstance(value, (dict, list)) else str(value)
    return None


def _fill(template: Any, args: dict[str, Any]) -> Any:
    """A body template with "{Param}" strings replaced; members of absent parameters dropped."""
    if isinstance(template, dict):
        out = {}
        for key, value in template.items():
            filled = _fill(value, args)
            if filled is not _ABSENT:
                out[key] = filled
        return out
    if isinstance(template, list):
        return [v for v in (_fill(i, args) for i in template) if v is not _ABSENT]
    if isinstance(template, str):
        whole = re.fullmatch(r"\{(\w+)\}", template)
        if whole:
            return args.get(whole.group(1), _ABSENT)
        return re.sub(r"\{(\w+)\}", lambda m: str(args.get(m.group(1), "")), template)
    return template


_ABSENT = object()


def _http(connection: Client, procedure: Procedure, args: dict[str, Any]) -> Any:
    request = procedure.request
    path = path_with(str(request["path"]), args)
    body = _fill(request.get("body"), args) if request.get("body") is not None else None
    query = _fill(request.get("query") or {}, args)
    params = {k: str(v) for k, v in query.items() if v is not None} or None
    answer = connection.transport.json_request(
        str(request["method"]), path, params=params, json=body
    )
    if answer is None:  # 204: the call succeeded and said nothing
        return {"success": True}
    if isinstance(answer, dict):
        answer.setdefault("success", True)
    return answer


def _builtin(connection: Client, builtin: str, args: dict[str, Any]) -> dict[str, Any]:
    if not connection.oauth or connection.endpoints is None:
        raise ConfigurationError(
            f"{connection.product.connection_name} does not use OAuth",
            hint="it authenticates with User and Password",
        )
    settings, endpoints = connection.settings, connection.endpoints
    callback = args.get("CallbackUrl") or settings.callback_url
    if builtin == "oauth_authorization_url":
        state = args.get("State") or secrets.token_urlsafe(16)
        # No PKCE here: the code may be exchanged by another process (AuthMode=WEB), which
        # could not know the verifier; the client secret authenticates the exchange.
        return {
            "URL": authorization_url(
                settings, endpoints, state=state, callback_url=callback, scope=args.get("Scope")
            )
        }
    if builtin == "oauth_access_token":
        if str(args.get("AuthMode", "APP")).upper() == "WEB":
            if not args.get("Verifier"):
                raise ProgrammingError(
                    "AuthMode=WEB needs @Verifier (the code from the redirect)",
                    hint="pass the code your redirect URI received",
                )
            code = code_from(str(args["Verifier"]), None)
            token = exchange_code(settings, endpoints, code, callback_url=callback)
        else:  # APP: the browser login, where a person can sign in
            interactive = connection.interactive
            token = connection_login(settings, endpoints, interactive=interactive)
    elif builtin == "oauth_refresh_token":
        token = _refresh(connection, str(args["OAuthRefreshToken"]))
    else:
        raise ProgrammingError(f"unknown built-in procedure {builtin}", hint="report this bug")
    tokens = TokenSet.from_response(token)
    if connection.store is not None:
        with connection.store.locked():
            connection.store.save(tokens)
    return {
        "OAuthAccessToken": tokens.access_token,
        "OAuthRefreshToken": tokens.refresh_token,
        "ExpiresIn": int(tokens.expires_in() or 0),
    }


def _refresh(connection: Client, refresh_token: str) -> dict[str, Any]:
    assert connection.store is not None and connection.endpoints is not None  # OAuth checked
    auth = OAuthAuth(
        connection.settings, connection.store, token_url=connection.endpoints.token_url
    )
    fresh = auth.refresh_grant(TokenSet(access_token="", refresh_token=refresh_token))
    return {
        "access_token": fresh.access_token,
        "refresh_token": fresh.refresh_token,
        "expires_in": fresh.expires_in() or 0,
        "token_type": fresh.token_type,
    }
