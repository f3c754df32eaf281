"""Sage 200 UK (Standard and Professional): OData filters, millisecond times, site and company.

Also the integration platforms' resource names that are not Sage 200 tables
(``invoices``, ``payments``...): a table and a filter each.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import ClassVar

from sagesql.connector.dialects.base import Dialect
from sagesql.connector.dialects.odata import ODataDialect
from sagesql.connector.products.base import GetJSON, SageProduct
from sagesql.connector.properties import Settings
from sagesql.errors import ConfigurationError


class Sage200(SageProduct):
    id = "sage_200"
    time_quantum = timedelta(milliseconds=1)
    dialect_class: ClassVar[type[Dialect]] = ODataDialect

    # The platforms' resource names that are not tables: (table, filter).
    platform_resources: ClassVar[Mapping[str, tuple[str, str]]] = {
        "invoices": (
            "sales_posted_transactions",
            "trader_transaction_type = 'TradingAccountEntryTypeInvoice'",
        ),
        "credit_notes": (
            "sales_posted_transactions",
            "trader_transaction_type = 'TradingAccountEntryTypeCreditNote'",
        ),
        "payments": (
            "sales_posted_transactions",
            "trader_transaction_type = 'TradingAccountEntryTypePurchasePaymentSalesReceipt'",
        ),
    }

    def base_url(self, settings: Settings) -> str:
        # Standard and Professional have their own public roots (the Schema property).
        return settings.url or self.definition.base_urls[settings.schema]

    def scope_headers(self, settings: Settings, get_json: GetJSON) -> dict[str, str]:
        """X-Site and X-Company: from Site/Company, else the first match in ``/sites``."""
        site, company = settings.site, settings.company
        if not (site and company):
            match = [
                row
                for row in get_json("/sites") or []
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


PRODUCT = Sage200()
