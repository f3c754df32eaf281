"""A client of one Sage product's API: settings -> base URL, token store, auth, transport.

Everything a statement needs to talk to Sage hangs off a :class:`SageClient` (the
DB-API connection of ``sagesql.connect()`` wraps one). The parts are objects handed in
or built from the settings and the product (tests swap them, they do not patch): the
catalog, the token store, the auth object and the transport.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from requests.auth import AuthBase

from sagesql.connector import logs, products, sources, token_endpoint
from sagesql.connector.auth import OAuthAuth, login_command
from sagesql.connector.login import Endpoints, connection_login, is_interactive
from sagesql.connector.products import SageProduct
from sagesql.connector.properties import Settings
from sagesql.connector.throttle import TokenBucket
from sagesql.connector.tokenstore import TokenStore, default_location, open_store
from sagesql.connector.transport import HTTPTransport
from sagesql.errors import AuthError, ConfigurationError, Error, InterfaceError
from sagesql.schemas.catalog import Catalog, default_catalog


def token_store_for(settings: Settings, product: SageProduct, url: str) -> TokenStore:
    location = settings.oauth_settings_location or str(
        default_location(
            sources.data_dir(),
            profile=settings.profile,
            product=product.id,
            url=url,
            client_id=settings.oauth_client_id,
        )
    )
    return open_store(location)


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


class _Offline(AuthBase):
    """An Offline=True client's auth: a request reaching it is a bug, refused loudly."""

    def __call__(self, request: Any) -> Any:
        raise InterfaceError(
            "the connection is Offline=True: nothing is sent to Sage",
            hint="connect without Offline=True to reach Sage",
        )


class SageClient:
    """An open client (thread-safe); close it, or use it as a context manager."""

    def __init__(
        self,
        settings: Settings,
        *,
        catalog: Catalog | None = None,
        store: TokenStore | None = None,
        auth: AuthBase | None = None,
        transport: HTTPTransport | None = None,
        interactive: Callable[[], bool] = is_interactive,
        clock: Callable[[], datetime] | None = None,
        limiter: TokenBucket | None = None,
    ) -> None:
        self.settings = settings
        # The request budget (RateLimit): the transport's own bucket unless one is shared
        # (the service's workers share one per Sage business in their database).
        self.limiter = limiter
        # Whether a person can sign in in a browser when no token is stored (login.py).
        self.interactive = interactive
        # "now" of SQL's date and time functions ('now', CURRENT_TIMESTAMP): one reading
        # per statement (engine/fold.py); the machine's UTC clock unless one is given.
        self.clock: Callable[[], datetime] = clock or _utc_now
        if settings.logfile:
            logs.configure(settings)
        self.catalog = catalog or default_catalog()
        self.product = products.get(settings.product)
        # Offline=True: the replica answers (engine/replica.py); no server, no credentials.
        self.base_url = "" if settings.offline else self.product.base_url(settings)
        self.oauth = self.product.uses_oauth and not settings.offline
        self.endpoints = Endpoints.of(settings, self.product.definition) if self.oauth else None
        self.store = store or (
            token_store_for(settings, self.product, self.base_url) if self.oauth else None
        )
        self.auth = auth or self._default_auth()
        self._transport = transport
        self._lock = threading.Lock()
        self._scope_headers: dict[str, str] | None = None
        self.closed = False

    def _default_auth(self) -> AuthBase:
        if self.settings.offline:
            return _Offline()
        endpoints = self.endpoints
        return self.product.auth(
            self.settings,
            self.store,
            token_url=endpoints.token_url if endpoints else "",
            login=lambda: (
                connection_login(self.settings, endpoints, interactive=self.interactive)
                if endpoints
                else None
            ),
        )

    @property
    def transport(self) -> HTTPTransport:
        """The HTTP transport, built on first use (so that listing tables needs no network)."""
        if self.closed:
            raise InterfaceError("the connection is closed", hint="open a new connection")
        with self._lock:
            if self._transport is None:
                self._transport = HTTPTransport(
                    self.settings,
                    self.product.definition,
                    base_url=self.base_url,
                    auth=self.auth,
                    extra_headers=self._gateway_headers(),
                    limiter=self.limiter,
                )
            transport = self._transport
        if self._scope_headers is None:
            self._scope_headers = self.product.scope_headers(self.settings, transport.get_json)
            transport.session.headers.update(self._scope_headers)
        return transport

    def _gateway_headers(self) -> dict[str, str]:
        # Sage's API gateway (Azure API Management) reads its subscription key here.
        key = self.settings.subscription_key
        return {"Ocp-Apim-Subscription-Key": key} if key else {}

    def login_status(self, *, check: bool = True) -> dict[str, object]:
        """Which tokens this connection uses and when they expire (never a token), and,
        unless ``check`` is False, whether Sage still accepts them: ``logged_in`` is True,
        False, or None when Sage could not be asked (``check`` then says why)."""
        if self.store is None:
            raise ConfigurationError(
                f"{self.product.connection_name} uses User and Password, not OAuth",
                hint="nothing to log in to: set User and Password",
            )
        tokens = self.store.load()
        logged_in: bool | None = tokens is not None and bool(tokens.access_token)
        if tokens is None:
            verdict = f"no tokens stored: run '{login_command(self.settings)}'"
        elif not check:
            verdict = "not checked (--no-check): the stored tokens may have been revoked"
        elif not isinstance(self.auth, OAuthAuth):
            logged_in, verdict = None, "could not check: the connection's auth is not OAuth"
        else:
            try:
                tokens = self.auth.check()
                verdict = "yes: Sage accepted the refresh token (the new pair is stored)"
            except AuthError as exc:
                logged_in, verdict = False, f"no: {exc}"
            except Error as exc:
                logged_in, verdict = None, f"could not check: {exc}"
        info: dict[str, object] = {
            "product": self.product.connection_name,
            "api": self.base_url,
            "initiate_oauth": self.settings.initiate_oauth,
            "token_store": self.store.location,
            "logged_in": logged_in,
            "checked": verdict,
        }
        if tokens is not None:
            left = tokens.expires_in()
            info.update(
                has_refresh_token=bool(tokens.refresh_token),
                scope=tokens.scope,
                expires_at=(
                    time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(tokens.expires_at))
                    if tokens.expires_at
                    else None
                ),
                expires_in_seconds=int(left) if left is not None else None,
            )
            if tokens.refresh_lost:
                info["refresh_lost"] = tokens.refresh_lost
        return info

    def logout(self) -> str:
        """Revoke the stored tokens at Sage and forget them; what happened, in words."""
        if self.store is None or self.endpoints is None:
            raise ConfigurationError(
                f"{self.product.connection_name} uses User and Password, not OAuth",
                hint="nothing to log out of",
            )
        tokens = self.store.load()
        revoked = False
        if tokens is not None and self.endpoints.revoke_url:
            token = tokens.refresh_token or tokens.access_token
            revoked = token_endpoint.revoke(self.settings, self.endpoints.revoke_url, token)
        with self.store.locked():
            self.store.clear()
        if tokens is None:
            return "logged out; no tokens were stored"
        if revoked:
            return "logged out; tokens revoked at Sage"
        return "logged out; could not revoke them at Sage (they expire on their own)"

    def close(self) -> None:
        if not self.closed and self._transport is not None:
            self._transport.close()
        self.closed = True

    def __enter__(self) -> SageClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_client(
    connection: str | None = None, *, profile: str | None = None, **properties: Any
) -> SageClient:
    """A client from a connection string, a profile, the environment and keywords."""
    return SageClient(sources.load_settings(connection, profile=profile, **properties))
