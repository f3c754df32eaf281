"""A connection to one Sage product: settings -> base URL, token store, auth, transport.

Everything a statement needs to talk to Sage hangs off a :class:`Connection`. The
parts are objects handed in or built from the settings (tests swap them, they do not
patch): the catalog, the token store, the auth object and the transport.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from sagesql.connector import sources
from sagesql.connector.auth import CRMBasicAuth, OAuthAuth
from sagesql.connector.login import Endpoints, run_login
from sagesql.connector.properties import Settings
from sagesql.connector.tokenstore import TokenStore, default_location, open_store
from sagesql.errors import ConfigurationError, InterfaceError
from sagesql.schemas.catalog import Catalog, Product, default_catalog

CRM_SDATA_PATH = "/sdata/crmj/sagecrm2/-"


def base_url(settings: Settings, product: Product) -> str:
    """The API root: the URL property, or the product's public URL (by Schema for Sage 200)."""
    if product.product == "sage_crm":
        if not settings.url:
            raise ConfigurationError("SageCRM needs URL", hint="set URL=https://your-crm-server")
        # A server root gets the default install's sdata path.
        return settings.url if "/sdata/" in settings.url else settings.url + CRM_SDATA_PATH
    if settings.url:
        return settings.url
    if product.product == "sage_200":
        return product.base_urls[settings.schema]
    return product.base_urls["default"]


def token_store_for(settings: Settings, product: Product, url: str) -> TokenStore:
    location = settings.oauth_settings_location or str(
        default_location(
            sources.data_dir(),
            profile=settings.profile,
            product=product.product,
            url=url,
            client_id=settings.oauth_client_id,
        )
    )
    return open_store(location)


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


class Connection:
    """An open connection (thread-safe); close it, or use it as a context manager."""

    def __init__(
        self,
        settings: Settings,
        *,
        catalog: Catalog | None = None,
        store: TokenStore | None = None,
        auth: Any = None,
        transport: Any = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.settings = settings
        # "now" of SQL's date and time functions ('now', CURRENT_TIMESTAMP): one reading
        # per statement (engine/fold.py); the machine's UTC clock unless one is given.
        self.clock: Callable[[], datetime] = clock or _utc_now
        if settings.logfile:
            from sagesql.connector import logs

            logs.configure(settings)
        self.catalog = catalog or default_catalog()
        self.product = self.catalog.product(settings.product)
        self.base_url = base_url(settings, self.product)
        self.oauth = self.product.auth.get("type") == "oauth2"
        self.endpoints = Endpoints.of(settings, self.product) if self.oauth else None
        self.store = store or (
            token_store_for(settings, self.product, self.base_url) if self.oauth else None
        )
        self.auth = auth or self._default_auth()
        self._transport = transport
        self._lock = threading.Lock()
        self._scope_headers: dict[str, str] | None = None
        self.closed = False

    def _default_auth(self) -> Any:
        if not self.oauth:
            return CRMBasicAuth(self.settings)
        assert self.endpoints is not None and self.store is not None
        endpoints = self.endpoints
        return OAuthAuth(
            self.settings,
            self.store,
            token_url=endpoints.token_url,
            login=lambda: run_login(self.settings, endpoints),
        )

    @property
    def transport(self) -> Any:
        """The HTTP transport, built on first use (so that listing tables needs no network)."""
        if self.closed:
            raise InterfaceError("the connection is closed", hint="open a new connection")
        with self._lock:
            if self._transport is None:
                from sagesql.connector.transport import Transport

                self._transport = Transport(
                    self.settings, self.product, base_url=self.base_url, auth=self.auth
                )
            transport = self._transport
        if self._scope_headers is None:
            self._scope_headers = self._resolve_scope_headers(transport)
            transport.session.headers.update(self._scope_headers)
        return transport

    def _resolve_scope_headers(self, transport: Any) -> dict[str, str]:
        """Accounting X-Business; Sage 200 X-Site and X-Company (from /sites when not given)."""
        s = self.settings
        if self.product.product == "sage_accounting":
            return {"X-Business": s.business_id} if s.business_id else {}
        if self.product.product != "sage_200":
            return {}
        site, company = s.site, s.company
        if not (site and company):
            sites = transport.get_json("/sites")
            match = [
                row
                for row in sites or []
                if (not site or str(row.get("site_id")) == site)
                and (not company or str(row.get("company_id")) == company)
            ]
            if not match:
                raise ConfigurationError(
                    "no Sage 200 site and company match Site/Company "
                    f"(Site={site or '-'}, Company={company or '-'})",
                    hint="run 'sagesql query \"SELECT * FROM sites\"' and set Site and Company",
                )
            site, company = str(match[0]["site_id"]), str(match[0]["company_id"])
        return {"X-Site": site, "X-Company": company}

    def close(self) -> None:
        if not self.closed and self._transport is not None:
            self._transport.close()
        self.closed = True

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect(
    connection: str | None = None, *, profile: str | None = None, **properties: Any
) -> Connection:
    """A connection from a connection string, a profile, the environment and keywords."""
    return Connection(sources.load_settings(connection, profile=profile, **properties))
