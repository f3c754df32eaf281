"""Sage CRM (REST, SData 2.0 style ``sagecrm2``): SData ``where=``, basic auth, own server."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from requests.auth import AuthBase

from sagesql.connector.auth import CRMBasicAuth
from sagesql.connector.dialects.base import Dialect
from sagesql.connector.dialects.sdata import SDataDialect
from sagesql.connector.products.base import SageProduct
from sagesql.connector.properties import Settings
from sagesql.connector.tokenstore import TokenStore
from sagesql.errors import ConfigurationError
from sagesql.schemas.catalog import Table

# Where a default install serves sagecrm2 under the CRM server's root.
SDATA_PATH = "/sdata/crmj/sagecrm2/-"


class CRM(SageProduct):
    id = "sage_crm"
    dialect_class: ClassVar[type[Dialect]] = SDataDialect

    # SData's $key is the key column; the CRM hub also says id for it.
    platform_fields: ClassVar[Mapping[str, str]] = {"key": "key", "$key": "key", "id": "key"}
    instance_keys: ClassVar[Mapping[str, str]] = {"username": "User", "password": "Password"}

    def instance_properties(self, configuration: Mapping[str, Any]) -> dict[str, Any]:
        """User and Password, and the server from ``subdomain`` (a host name, or a URL)."""
        out = super().instance_properties(configuration)
        server = str(configuration.get("subdomain") or "").strip().rstrip("/")
        if server:
            out["URL"] = server if "://" in server else f"https://{server}"
        return out

    def base_url(self, settings: Settings) -> str:
        # Each customer runs their own server: there is no public URL.
        if not settings.url:
            raise ConfigurationError("SageCRM needs URL", hint="set URL=https://your-crm-server")
        return settings.url if "/sdata/" in settings.url else settings.url + SDATA_PATH

    def dialect(self, table: Table, settings: Settings | None = None) -> Dialect:
        # CRMFilterOperators=extended: where= forms beyond those Sage documents (sdata.py).
        extended = settings is not None and settings.crm_filter_operators == "extended"
        return SDataDialect(table, self, extended=extended)

    def auth(
        self, settings: Settings, store: TokenStore | None, token_url: str, login: Callable[[], Any]
    ) -> AuthBase:
        return CRMBasicAuth(settings)


PRODUCT = CRM()
