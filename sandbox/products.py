"""Which emulator serves which product, and where its API lives on the sandbox server."""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from sagesql.sandbox.app import ProductApp


@dataclass(frozen=True)
class ProductSite:
    product: str
    module: str  # sagesql.sandbox.<module> defines the app class
    app_class: str
    api_prefix: str  # base URL path of the API on the sandbox server

    def load(self) -> type[ProductApp]:
        module = importlib.import_module(f"sagesql.sandbox.{self.module}")
        return getattr(module, self.app_class)


SITES = {
    "sage_accounting": ProductSite("sage_accounting", "accounting", "AccountingApp", "/v3.1"),
    # Sage 200 Standard and Professional are both served, from the same data.
    "sage_200": ProductSite("sage_200", "sage200", "Sage200App", "/uk/sage200extra/accounts/v1"),
    "sage_crm": ProductSite("sage_crm", "crm", "CrmApp", "/sdata/crmj/sagecrm2/-"),
}
