"""A client of one Sage product's API: settings -> base URL, token store, auth, transport.

Everything a statement needs to talk to Sage hangs off a :class:`SageClient` (the
DB-API connection of ``sagesql.connect()`` wraps one). The parts are objects handed in
or built from the settings and the product (tests swap them, they do not patch): the
catalog, the token store, the auth object and the transport.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from requests.auth import AuthBase

from sagesql.connector import logs, products, sources
from sagesql.connector.login import Endpoints, connection_login, is_interactive
from sagesql.connector.products import SageProduct
from sagesql.connector.properties import Settings
from sagesql.connector.tokenstore import TokenStore, default_location, open_store
from sagesql.connector.transport import HTTPTransport
from sagesql.errors import InterfaceError
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
    ) -> None:
        self.settings = settings
        # Whether a person can sign in in a browser when no token is stored (login.py).
        self.interactive = interactive
        # "now" of SQL's date and time functions ('now', CURRENT_TIMESTAMP): one reading
        # per statement (engine/fold.py); the machine's UTC clock unless one is given.
        self.clock: Callable[[], datetime] = clock or _utc_now
        if settings.logfile:
            logs.configure(settings)
        self.catalog = catalog or default_catalog()
        self.product = products.get(settings.product)
        self.base_url = self.product.base_url(settings)
        self.oauth = self.product.uses_oauth
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
                    self.settings, self.product.definition, base_url=self.base_url, auth=self.auth
                )
            transport = self._transport
        if self._scope_headers is None:
            self._scope_headers = self.product.scope_headers(self.settings, transport.get_json)
            transport.session.headers.update(self._scope_headers)
        return transport

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
