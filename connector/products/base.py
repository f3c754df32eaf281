"""What sagesql knows of one Sage product beyond its tables: the facts the layers ask for.

The data of a product (titles, base URLs, OAuth endpoints, scope headers, element keys,
procedures) is generated into ``schemas/<id>/_product.json`` and read through the
catalog; a :class:`SageProduct` adds what is code: how the base URL and the scope
headers are found, how requests authenticate, which dialect pushes filters, which
paginator pages, and the precision and text form of the API's date-times.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone
from functools import cached_property
from typing import Any, ClassVar

from requests.auth import AuthBase

from sagesql.connector import paging, properties
from sagesql.connector.auth import OAuthAuth
from sagesql.connector.dialects.base import Dialect
from sagesql.connector.properties import Settings
from sagesql.connector.tokenstore import TokenStore
from sagesql.schemas.catalog import Procedure, Product, Table, default_catalog

GetJSON = Callable[[str], Any]


class SageProduct:
    """One Sage product. Subclasses set ``id`` and override what differs from these defaults."""

    id: ClassVar[str]
    # The API's date-times are whole multiples of this (what SQLite stores, what filters say).
    time_quantum: ClassVar[timedelta] = timedelta(seconds=1)
    dialect_class: ClassVar[type[Dialect]] = Dialect
    # Integration platforms' resource names that are not tables: name -> (table, filter).
    platform_resources: ClassVar[Mapping[str, tuple[str, str]]] = {}
    # The platforms' own names for a table's fields (their hubs normalize them), lower
    # case -> a role of the table's definition: "updated", "created" or "key".
    platform_fields: ClassVar[Mapping[str, str]] = {}
    # An instance's configuration keys that are connection properties: key -> property.
    instance_keys: ClassVar[Mapping[str, str]] = {
        "oauth.api.key": "OAuthClientId",
        "oauth.api.secret": "OAuthClientSecret",
        "oauth.callback.url": "CallbackURL",
        "subscription.key": "SubscriptionKey",
        "apim.subscription.key": "SubscriptionKey",
    }

    def __repr__(self) -> str:
        return f"<SageProduct {self.id}>"

    # -- the data, from _product.json --------------------------------------------------

    @cached_property
    def definition(self) -> Product:
        return default_catalog().product(self.id)

    @property
    def connection_name(self) -> str:
        """The value of the Product connection property (Sage200)."""
        return self.definition.connection_name

    @property
    def title(self) -> str:
        return self.definition.title

    @property
    def short_title(self) -> str:
        """The name in messages ("Sage 200 cannot filter ...")."""
        return self.definition.short_title

    @property
    def element_key(self) -> str:
        """The integration platforms' element key sagesql writes (instances, events)."""
        return self.definition.element_keys[0]

    @property
    def element_keys(self) -> tuple[str, ...]:
        return self.definition.element_keys

    @property
    def auth_definition(self) -> Mapping[str, Any]:
        return self.definition.auth

    @property
    def uses_oauth(self) -> bool:
        return self.definition.auth.get("type") == "oauth2"

    @property
    def procedures(self) -> tuple[Procedure, ...]:
        return self.definition.procedures

    def instance_properties(self, configuration: Mapping[str, Any]) -> dict[str, Any]:
        """The connection properties an integration platform's instance configuration
        gives (``oauth.api.key`` is OAuthClientId...); empty values are no values."""
        out: dict[str, Any] = {}
        for key, name in self.instance_keys.items():
            value = configuration.get(key)
            if value not in (None, ""):
                out[name] = value
        return out

    # -- reaching the API ---------------------------------------------------------------

    def base_url(self, settings: Settings) -> str:
        """The API root: the URL property, else the product's public URL."""
        return settings.url or self.definition.base_urls["default"]

    def scope_headers(self, settings: Settings, get_json: GetJSON) -> dict[str, str]:
        """Headers naming the business or company every request is about: those of the
        definition whose connection property is set (X-Business from BusinessId)."""
        headers: dict[str, str] = {}
        for header in self.definition.headers:
            prop = properties.lookup(header["property"])
            value = getattr(settings, prop.attribute) if prop is not None else None
            if value:
                headers[header["name"]] = str(value)
        return headers

    def auth(
        self, settings: Settings, store: TokenStore | None, token_url: str, login: Callable[[], Any]
    ) -> AuthBase:
        """The requests auth of a connection: OAuth bearer tokens by default."""
        assert store is not None, "an OAuth product needs a token store"
        return OAuthAuth(settings, store, token_url=token_url, login=login)

    # -- reading tables -----------------------------------------------------------------

    def dialect(self, table: Table, settings: Settings | None = None) -> Dialect:
        """How the API applies a table's predicates, sort and projection (``settings``:
        the connection's, for a product whose dialect a property tunes)."""
        return self.dialect_class(table, self)

    def paginator(self, table: Table) -> paging.Paginator:
        return paging.for_table(table)

    # -- date-times ---------------------------------------------------------------------

    @property
    def keeps_milliseconds(self) -> bool:
        return self.time_quantum < timedelta(seconds=1)

    def datetime_text(self, value: datetime) -> str:
        """A date-time as the API writes it (and a DATETIME column returns it): UTC, ``Z``,
        its precision (SQLite stores engine.values.stored_datetime)."""
        value = value.astimezone(timezone.utc) if value.tzinfo else value
        if self.keeps_milliseconds:
            return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
        return value.strftime("%Y-%m-%dT%H:%M:%SZ")
