"""The base of each product's emulator: admin endpoints, faults, rate limit, auth, errors.

A product subclasses :class:`ProductApp` and provides ``authenticate`` (who is
calling, or raise :class:`ApiError`), ``rate_key`` (what the limit counts by),
``error`` (its error body) and ``route`` (the API itself). The pipeline of a
request is::

    /_sandbox/*  admin (clock, faults, lag, request log, token, code) -- never faulted
                 or limited
    fault draw   latency; maybe a 5xx, a 429, a dropped connection or a cut body
    OAuth        /oauth/authorize, /oauth/token, /oauth/revoke (OAuth products)
    auth         401 for a missing, invalid or expired credential
    rate limit   429 with Retry-After past the limit per key
    route        the product's API
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from werkzeug.http import http_date
from werkzeug.wrappers import Request, Response

from sagesql.errors import ConfigurationError
from sagesql.sandbox import faults as fault_kinds
from sagesql.sandbox.clock import Clock, iso, parse_time, sortable
from sagesql.sandbox.config import Faults, SandboxConfig
from sagesql.sandbox.faults import FaultInjector, drop_connection, truncated
from sagesql.sandbox.oauth import OAuthServer, TokenProblem
from sagesql.sandbox.ratelimit import RateLimiter
from sagesql.sandbox.store import Store

ADMIN_PREFIX = "/_sandbox"


class ApiError(Exception):
    """An error answer in the product's own format (see ``ProductApp.error``)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        source: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.source = source
        self.headers = headers or {}


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return Response(body, status=status, mimetype="application/json", headers=headers)


class ProductApp:
    """One product's API over HTTP (a WSGI application)."""

    product = ""
    uses_oauth = True

    def __init__(
        self,
        config: SandboxConfig | None = None,
        *,
        clock: Clock | None = None,
        store: Store | None = None,
    ) -> None:
        self.config = config or SandboxConfig(product=self.product)
        self.clock = clock or Clock()
        self.store = store or Store(self.product, self.config.db)
        self.faults = FaultInjector(self.config.faults)
        self.limiter = RateLimiter(self.config.rate_limit_per_minute, self.clock)
        self.oauth = OAuthServer(
            self.clock,
            self.config.clients,
            access_lifetime=self.config.access_token_lifetime,
            refresh_lifetime=self.config.refresh_token_lifetime,
            default_scope=self.default_scope,
        )
        self.requests: deque[dict[str, Any]] = deque(maxlen=10_000)
        self._log_lock = threading.Lock()

    default_scope = "full_access"

    # -- what a product provides ---------------------------------------------------------

    def authenticate(self, request: Request) -> Any:
        """The caller (a Grant for OAuth products); raise ApiError(401) when refused."""
        header = request.headers.get("Authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else None
        try:
            return self.oauth.validate(token)
        except TokenProblem as problem:
            raise ApiError(
                401,
                "AuthorizationFailure",
                {
                    "missing": "Authorization header missing",
                    "invalid": "Invalid access token",
                    "expired": "Access token expired",
                }[problem.reason],
            ) from None

    def rate_key(self, request: Request, principal: Any) -> str:
        return "default"

    def error(self, err: ApiError) -> Response:
        return json_response(
            [
                {
                    "$severity": "error",
                    "$dataCode": err.code,
                    "$message": err.message,
                    "$source": err.source or "",
                }
            ],
            err.status,
            err.headers,
        )

    def route(self, request: Request, principal: Any) -> Response:
        raise ApiError(404, "RecordNotFound", "no such resource")

    # -- visibility lag ------------------------------------------------------------------

    def visible_before(self) -> str | None:
        """Store time text: records updated at or after it are not yet visible to lists."""
        if not self.config.visibility_lag:
            return None
        return sortable(self.clock.now() - timedelta(seconds=self.config.visibility_lag))

    # -- WSGI ----------------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        if request.path.startswith(ADMIN_PREFIX):
            response = self.admin(request)
            self._stamp(response)
            return response(environ, start_response)
        kind, status = self.faults.draw()
        if kind == fault_kinds.DROP:
            self._log(request, None, kind)
            drop_connection(environ)
            start_response("500 Dropped", [("Content-Length", "0")])
            return []
        if kind == fault_kinds.ERROR:
            response = self.error(
                ApiError(
                    status,
                    "ServiceUnavailable" if status == 503 else "InternalServerError",
                    "injected fault",
                )
            )
        elif kind == fault_kinds.THROTTLE:
            response = self.error(
                ApiError(
                    429, "TooManyRequests", "rate limit exceeded", headers={"Retry-After": "1"}
                )
            )
        else:
            response = self.dispatch(request)
        # Every answer (OAuth, faults, errors) carries the sandbox's Date, never the real one.
        self._stamp(response)
        self._log(request, response.status_code, kind)
        if kind == fault_kinds.TRUNCATE:
            response.headers["Content-Length"] = str(len(response.get_data()))
            iterable = response(environ, start_response)
            return truncated(iterable, environ)
        return response(environ, start_response)

    def dispatch(self, request: Request) -> Response:
        if self.uses_oauth:
            answered = self.oauth.handle(request)
            if answered is not None:
                return answered
        try:
            principal = self.authenticate(request)
            wait = self.limiter.hit(self.rate_key(request, principal))
            if wait is not None:
                raise ApiError(
                    429,
                    "TooManyRequests",
                    "rate limit exceeded",
                    headers={"Retry-After": str(wait)},
                )
            response = self.route(request, principal)
        except ApiError as err:
            response = self.error(err)
        self._stamp(response)
        return response

    def _stamp(self, response: Response) -> None:
        """Set the one Date header from the sandbox clock (expiry and polling tests read it)."""
        response.headers["Date"] = http_date(self.clock.now())

    def _log(self, request: Request, status: int | None, fault: str = fault_kinds.PASS) -> None:
        """Remember the request; ``status`` is None for a dropped connection."""
        entry = {
            "method": request.method,
            "path": request.path,
            "query": request.query_string.decode("latin-1"),
            "status": status,
            "fault": None if fault == fault_kinds.PASS else fault,
            "time": iso(self.clock.now(), "milliseconds"),
            "body": _json_body(request),
            # Sage's gateway reads it (ignored since 2025 by Sage 200): whether it came.
            "subscription_key": "Ocp-Apim-Subscription-Key" in request.headers,
        }
        with self._log_lock:
            self.requests.append(entry)

    # -- admin ---------------------------------------------------------------------------

    def admin(self, request: Request) -> Response:
        """Control endpoints for tests and demos: clock, faults, lag, request log, tokens."""
        what = request.path[len(ADMIN_PREFIX) :].strip("/")
        body = request.get_json(silent=True) or {}
        try:
            return self._admin(request, what, body)
        except (ValueError, TypeError, ConfigurationError) as exc:
            # A bad control request is the caller's mistake: say so, do not answer 500.
            return json_response({"error": str(exc)}, 400)

    def _admin(self, request: Request, what: str, body: dict[str, Any]) -> Response:
        if what == "clock":
            if request.method == "POST":
                if "set" in body:
                    instant = parse_time(body["set"]) if body["set"] else None
                    self.clock.set(instant, frozen=bool(body.get("frozen")))
                elif "frozen" in body:
                    # Freeze (or release) time where it is now.
                    self.clock.set(self.clock.now(), frozen=bool(body["frozen"]))
                if "advance" in body:
                    self.clock.advance(float(body["advance"]))
            return json_response(self.clock.state())
        if what == "faults":
            if request.method == "POST":
                self.faults.reconfigure(Faults.parse(_fault_spec(body)))
            return json_response(vars(self.faults.faults))
        if what == "lag":
            if request.method == "POST":
                self.config.visibility_lag = float(body.get("seconds", 0))
            return json_response({"seconds": self.config.visibility_lag})
        if what == "requests":
            with self._log_lock:
                if request.method == "DELETE":
                    self.requests.clear()
                return json_response(list(self.requests))
        if what == "code" and request.method == "POST":
            # The code a user's consent gives a platform (its instance's providerData.code),
            # without the browser: {"code"?, "client_id"?, "redirect_uri", "scope"?}.
            if not str(body.get("redirect_uri", "")).startswith(("http://", "https://")):
                return json_response({"error": "redirect_uri must be an http(s) URL"}, 400)
            code = self.oauth.grant_code(
                str(body.get("client_id", "sandbox-client")),
                str(body["redirect_uri"]),
                scope=body.get("scope"),
                code=body.get("code"),
            )
            return json_response({"code": code})
        if what == "token" and request.method == "POST":
            return json_response(
                self.oauth.issue(body.get("client_id", "sandbox-client"), body.get("scope"))
            )
        return json_response({"error": f"unknown admin endpoint {what!r}"}, 404)


def _json_body(request: Request) -> Any:
    """The JSON body a request carried (kept in the request log, so tests can check what
    was sent); None when there was none or it was not JSON."""
    if request.mimetype != "application/json":
        return None
    try:
        data = request.get_data(cache=True)
        return json.loads(data) if data.strip() else None
    except (ValueError, OSError):
        return None


def _fault_spec(body: dict[str, Any]) -> str:
    """The --faults text of an admin request: ``{"spec": "..."}`` or the fields themselves."""
    if "spec" in body:
        return str(body["spec"] or "")
    parts = []
    for name, value in body.items():
        if isinstance(value, list | tuple):
            value = "/".join(str(v) for v in value)
        parts.append(f"{name}={value}")
    return ",".join(parts)
