"""A running sandbox for one product: its app on a loopback port, and how to reach it.

``Sandbox`` is what ``sagesql sandbox serve``, ``sagesql query --sandbox`` and the
tests share: it resolves the product name, builds the product's app over its store
(in memory, or a SQLite file kept between runs), binds a free loopback port (or the
one asked for) and says how to connect::

    with Sandbox("SageAccounting") as sbx:
        sbx.base_url                # http://127.0.0.1:PORT/v3.1
        sbx.connection_string()     # Product=SageAccounting;URL=...;OAuthAccessToken=...

A store file remembers the product, seed and rows it was made with (``_meta``
``sandbox.*``); opening it for another product, or with another seed or rows, is
refused, because the lazily seeded tables would no longer agree with each other.
"""

from __future__ import annotations

import errno
import sqlite3
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import Any

from sagesql.errors import ConfigurationError, NotSupportedError
from sagesql.sandbox.app import ProductApp
from sagesql.sandbox.config import SandboxConfig
from sagesql.sandbox.oauth import AUTHORIZE_PATH, REVOKE_PATH, TOKEN_PATH
from sagesql.sandbox.products import SITES, ProductSite
from sagesql.sandbox.server import RunningServer
from sagesql.schemas.catalog import default_catalog

# Names of the store's meta entries that tie a file to the data it holds.
META_PRODUCT, META_SEED, META_ROWS = "sandbox.product", "sandbox.seed", "sandbox.rows"


def resolve_product(name: str) -> str:
    """``sage_200`` from Sage200, sage_200 or any case of either; ConfigurationError if unknown."""
    if name in SITES:
        return name
    return default_catalog().resolve_product(name)


def connection_name(product: str) -> str:
    """The Product connection property's value for a product (SageAccounting...)."""
    return default_catalog().product(product).connection_name


def load_app_class(site: ProductSite) -> type[ProductApp]:
    """The product's app class; NotSupportedError when its emulator is not installed."""
    module = f"sagesql.sandbox.{site.module}"
    try:
        return site.load()
    except ModuleNotFoundError as exc:
        if exc.name != module:  # a dependency of the emulator is missing: a real bug
            raise
        name = connection_name(site.product)
        raise NotSupportedError(
            f"the sandbox has no emulator for {name} yet ({module} is missing)",
            hint="serve another product with --product",
        ) from None


def stored_settings(path: str | Path) -> dict[str, str]:
    """The product, seed and rows a sandbox store file was made with ({} if none or no file)."""
    path = Path(path)
    if not path.is_file():
        return {}
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            rows = conn.execute(
                "SELECT name, value FROM _meta WHERE name IN (?, ?, ?)",
                (META_PRODUCT, META_SEED, META_ROWS),
            ).fetchall()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise ConfigurationError(
            f"--db {path} is not a sandbox database ({exc})",
            hint="name a new file, or one made by 'sagesql sandbox serve --db'",
        ) from None
    return {name.removeprefix("sandbox."): value for name, value in rows}


def _check_store(app: ProductApp, config: SandboxConfig) -> None:
    """Refuse a store file made for another product, seed or size; label a new one."""
    store = app.store
    wanted = {
        META_PRODUCT: config.product,
        META_SEED: str(config.seed),
        META_ROWS: str(config.rows),
    }
    found = {name: store.meta(name) for name in wanted}
    clashes = [
        f"{name.removeprefix('sandbox.')} {found[name]} (not {value})"
        for name, value in wanted.items()
        if found[name] is not None and found[name] != value
    ]
    if clashes:
        raise ConfigurationError(
            f"--db {config.db} was made with {', '.join(clashes)}",
            hint="leave out --seed and --rows to use the file's, or name another --db file",
        )
    for name, value in wanted.items():
        if found[name] is None:
            store.set_meta(name, value)


class Sandbox:
    """Start with ``with Sandbox("sage_accounting") as sbx:``; ``sbx.base_url`` is the API."""

    def __init__(
        self,
        product: str = "sage_accounting",
        config: SandboxConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        quiet: bool = True,
    ) -> None:
        product = resolve_product(product)
        self.product = product
        self.site = SITES[product]
        self.config = replace(config, product=product) if config else SandboxConfig(product)
        app_class = load_app_class(self.site)
        if self.config.db is not None:
            db = Path(self.config.db)
            if db.is_dir():
                raise ConfigurationError(f"--db {db} is a directory", hint="name a file")
            db.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.app = app_class(self.config)
        except sqlite3.Error as exc:
            raise ConfigurationError(
                f"cannot open --db {self.config.db}: {exc}", hint="name a writable file"
            ) from None
        try:
            if self.config.db is not None:
                _check_store(self.app, self.config)
            self.server = RunningServer(self.app, host, port, quiet=quiet)
        except OSError as exc:
            self.app.store.close()
            if exc.errno == errno.EADDRINUSE:
                raise ConfigurationError(
                    f"port {port} on {host} is already in use",
                    hint="choose another --port, or 0 for a free one",
                ) from None
            raise ConfigurationError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
        except BaseException:
            self.app.store.close()
            raise
        self._stopped = False

    # -- where it is ---------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The server root (OAuth endpoints live under /oauth, admin under /_sandbox)."""
        return self.server.url

    @property
    def base_url(self) -> str:
        """The API's base URL, as the URL connection property takes it."""
        return self.server.url + self.site.api_prefix

    @property
    def uses_oauth(self) -> bool:
        return bool(self.app.uses_oauth)

    @property
    def authorization_url(self) -> str | None:
        return self.server.url + AUTHORIZE_PATH if self.uses_oauth else None

    @property
    def token_url(self) -> str | None:
        return self.server.url + TOKEN_PATH if self.uses_oauth else None

    @property
    def revoke_url(self) -> str | None:
        return self.server.url + REVOKE_PATH if self.uses_oauth else None

    @property
    def title(self) -> str:
        """The product's name for people (Sage Accounting...)."""
        return default_catalog().product(self.product).title

    # -- how to connect ------------------------------------------------------------------

    def token(self, **kwargs: Any) -> dict[str, Any]:
        """A fresh OAuth token pair for the default sandbox client."""
        return self.app.oauth.issue(**kwargs)

    def connection_properties(self, token: dict[str, Any] | None = None) -> dict[str, str]:
        """Connection properties (issue 4's names) that reach this sandbox.

        OAuth products get a token pair of their own login (``token``, or a fresh one
        from :meth:`token`) with ``InitiateOAuth=REFRESH``, so the connection refreshes
        it through the sandbox's token endpoint. Sage 200's Site and Company are left
        out: the connection resolves them from ``/sites``.
        """
        props = {"Product": connection_name(self.product), "URL": self.base_url}
        if self.uses_oauth:
            client_id, secret = next(iter(self.config.clients.items()))
            pair = token or self.token(client_id=client_id)
            props.update(
                InitiateOAuth="REFRESH",
                OAuthClientId=client_id,
                OAuthClientSecret=secret,
                OAuthAccessToken=str(pair["access_token"]),
                OAuthRefreshToken=str(pair["refresh_token"]),
                OAuthTokenURL=str(self.token_url),
                OAuthAuthorizationURL=str(self.authorization_url),
            )
        else:
            user, password = next(iter(self.config.crm_users.items()))
            props.update(User=user, Password=password)
        return props

    def connection_string(self, properties: dict[str, str] | None = None) -> str:
        """``Name=Value;...`` of :meth:`connection_properties` (or of ``properties``)."""
        props = self.connection_properties() if properties is None else properties
        return format_connection_string(props)

    # -- life ----------------------------------------------------------------------------

    def start(self) -> Sandbox:
        self.server.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the store; safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        self.server.stop()
        self.app.store.close()

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def format_connection_string(properties: dict[str, str]) -> str:
    """``Name=Value;...``; a value holding ``;``, quotes or edge spaces is double-quoted."""
    parts = []
    for name, value in properties.items():
        text = str(value)
        if any(c in text for c in ";\"'") or text != text.strip():
            text = '"' + text.replace('"', '""') + '"'
        parts.append(f"{name}={text}")
    return ";".join(parts)
