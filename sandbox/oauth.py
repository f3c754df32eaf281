"""The sandbox's OAuth 2.0 server: authorization code (with PKCE), refresh with rotation, revoke.

It behaves as Sage's do where it matters to a client: the authorize endpoint approves
at once and redirects with ``code`` and ``state``; a code is single-use and lives 60
seconds; the redirect URI must match exactly; every refresh returns a new refresh
token and retires the old one, whose reuse is answered ``400 invalid_grant``; access
tokens expire after the configured lifetime, by the sandbox clock.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from werkzeug.wrappers import Request, Response

from sagesql.sandbox.clock import Clock

CODE_LIFETIME = 60
AUTHORIZE_PATH = "/oauth/authorize"
TOKEN_PATH = "/oauth/token"
REVOKE_PATH = "/oauth/revoke"


@dataclass
class Grant:
    """What a token stands for."""

    client_id: str
    scope: str
    family: str  # every token of one login shares it; revoking one revokes all
    expires_at: float


@dataclass
class _Code:
    client_id: str
    redirect_uri: str
    scope: str
    challenge: str | None
    method: str
    expires_at: float


class TokenProblem(Exception):
    """Why a bearer token was refused: missing, invalid or expired."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _json(data: dict[str, Any], status: int = 200) -> Response:
    import json

    return Response(
        json.dumps(data),
        status=status,
        mimetype="application/json",
        headers={"Cache-Control": "no-store"},
    )


def _oauth_error(error: str, description: str, status: int = 400) -> Response:
    return _json({"error": error, "error_description": description}, status)


class OAuthServer:
    """Issues and checks tokens for one product's sandbox."""

    def __init__(
        self,
        clock: Clock,
        clients: dict[str, str],
        *,
        access_lifetime: int,
        refresh_lifetime: int,
        default_scope: str = "full_access",
    ) -> None:
        self._clock = clock
        self.clients = clients
        self.access_lifetime = access_lifetime
        self.refresh_lifetime = refresh_lifetime
        self.default_scope = default_scope
        self._lock = threading.Lock()
        self._codes: dict[str, _Code] = {}
        self._access: dict[str, Grant] = {}
        self._refresh: dict[str, Grant] = {}
        self._retired: set[str] = set()
        self._revoked_families: set[str] = set()
        self.refresh_count = 0

    # -- for the product apps and the tests --------------------------------------------

    def validate(self, token: str | None) -> Grant:
        if not token:
            raise TokenProblem("missing")
        with self._lock:
            grant = self._access.get(token)
            if grant is None or grant.family in self._revoked_families:
                raise TokenProblem("invalid")
            if grant.expires_at <= self._clock.timestamp():
                raise TokenProblem("expired")
            return grant

    def issue(
        self, client_id: str = "sandbox-client", scope: str | None = None, family: str | None = None
    ) -> dict[str, Any]:
        """A fresh token pair, as the token endpoint would answer it."""
        now = self._clock.timestamp()
        family = family or secrets.token_hex(8)
        scope = scope or self.default_scope
        access = "sbx_at_" + secrets.token_urlsafe(24)
        refresh = "sbx_rt_" + secrets.token_urlsafe(24)
        with self._lock:
            self._access[access] = Grant(client_id, scope, family, now + self.access_lifetime)
            self._refresh[refresh] = Grant(client_id, scope, family, now + self.refresh_lifetime)
        return {
            "access_token": access,
            "token_type": "bearer",
            "expires_in": self.access_lifetime,
            "refresh_token": refresh,
            "refresh_token_expires_in": self.refresh_lifetime,
            "scope": scope,
        }

    def grant_code(
        self,
        client_id: str,
        redirect_uri: str,
        *,
        scope: str | None = None,
        code: str | None = None,
    ) -> str:
        """An authorization code as a consent would give it (single-use, 60 seconds)."""
        code = code or secrets.token_urlsafe(16)
        with self._lock:
            self._codes[code] = _Code(
                client_id,
                redirect_uri,
                scope or self.default_scope,
                None,
                "plain",
                self._clock.timestamp() + CODE_LIFETIME,
            )
        return code

    # -- HTTP ----------------------------------------------------------------------------

    def handle(self, request: Request) -> Response | None:
        """Answer the OAuth endpoints; None for any other path."""
        path = request.path.rstrip("/")
        if path == AUTHORIZE_PATH and request.method == "GET":
            return self._authorize(request)
        if path == TOKEN_PATH:
            return self._token(request) if request.method == "POST" else Response(status=405)
        if path == REVOKE_PATH:
            return self._revoke(request) if request.method == "POST" else Response(status=405)
        return None

    def _authorize(self, request: Request) -> Response:
        args = request.args
        client_id = args.get("client_id", "")
        redirect_uri = args.get("redirect_uri", "")
        if client_id not in self.clients:
            return Response("unknown client_id", status=400)
        if not redirect_uri.startswith(("http://", "https://")):
            return Response("redirect_uri must be an absolute http(s) URL", status=400)
        added: dict[str, str] = {}
        method = args.get("code_challenge_method", "plain")
        if args.get("response_type") != "code":
            added["error"] = "unsupported_response_type"
        elif args.get("code_challenge") and method not in ("S256", "plain"):
            added["error"] = "invalid_request"
            added["error_description"] = f"unsupported code_challenge_method {method!r}"
        else:
            code = secrets.token_urlsafe(16)
            with self._lock:
                self._codes[code] = _Code(
                    client_id,
                    redirect_uri,
                    args.get("scope") or self.default_scope,
                    args.get("code_challenge") or None,
                    method,
                    self._clock.timestamp() + CODE_LIFETIME,
                )
            added["code"] = code
        if "state" in args:
            added["state"] = args["state"]
        # The redirect URI's own query is kept byte for byte (blank values, repeated names).
        parts = urlsplit(redirect_uri)
        query = "&".join(filter(None, (parts.query, urlencode(added))))
        location = urlunsplit(parts._replace(query=query))
        return Response(status=302, headers={"Location": location})

    def _client(self, request: Request) -> str | None:
        """The authenticated client id (form fields or HTTP Basic), or None."""
        client_id = request.form.get("client_id")
        secret = request.form.get("client_secret")
        if request.authorization and request.authorization.type == "basic":
            client_id = request.authorization.username
            secret = request.authorization.password
        if client_id and secrets.compare_digest(self.clients.get(client_id, "\0"), secret or ""):
            return client_id
        return None

    def _token(self, request: Request) -> Response:
        client_id = self._client(request)
        if client_id is None:
            return _oauth_error("invalid_client", "client authentication failed", 401)
        grant_type = request.form.get("grant_type")
        if grant_type == "authorization_code":
            return self._exchange_code(request, client_id)
        if grant_type == "refresh_token":
            return self._refresh_token(request, client_id)
        return _oauth_error("unsupported_grant_type", f"grant_type {grant_type!r}")

    def _exchange_code(self, request: Request, client_id: str) -> Response:
        with self._lock:
            code = self._codes.pop(request.form.get("code", ""), None)  # single use
        if code is None or code.expires_at <= self._clock.timestamp():
            return _oauth_error("invalid_grant", "authorization code is invalid or expired")
        if code.client_id != client_id:
            return _oauth_error("invalid_grant", "code was issued to another client")
        if request.form.get("redirect_uri") != code.redirect_uri:
            return _oauth_error("invalid_grant", "redirect_uri does not match")
        if code.challenge is not None:
            verifier = request.form.get("code_verifier", "")
            if code.method == "S256":
                digest = hashlib.sha256(verifier.encode()).digest()
                expected = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
            else:
                expected = verifier
            if not verifier or not secrets.compare_digest(expected, code.challenge):
                return _oauth_error("invalid_grant", "PKCE code_verifier does not match")
        return _json(self.issue(client_id, code.scope))

    def _refresh_token(self, request: Request, client_id: str) -> Response:
        token = request.form.get("refresh_token", "")
        now = self._clock.timestamp()
        with self._lock:
            if token in self._retired:
                return _oauth_error("invalid_grant", "refresh token has already been used")
            grant = self._refresh.get(token)
            if grant is None or grant.family in self._revoked_families:
                return _oauth_error("invalid_grant", "refresh token is invalid or revoked")
            if grant.expires_at <= now:
                return _oauth_error("invalid_grant", "refresh token has expired")
            if grant.client_id != client_id:
                return _oauth_error("invalid_grant", "refresh token belongs to another client")
            del self._refresh[token]
            self._retired.add(token)  # rotation: the old refresh token is dead from now on
            self.refresh_count += 1
        return _json(self.issue(client_id, grant.scope, family=grant.family))

    def _revoke(self, request: Request) -> Response:
        if self._client(request) is None:
            return _oauth_error("invalid_client", "client authentication failed", 401)
        token = request.form.get("token", "")
        with self._lock:
            grant = self._refresh.get(token) or self._access.get(token)
            if grant is not None:
                self._revoked_families.add(grant.family)
        return Response(status=200)
