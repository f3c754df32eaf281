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

    # The finance hub's names for the dates every Sage 200 record carries.
    platform_fields: ClassVar[Mapping[str, str]] = {
        "updated_at": "updated",
        "created_at": "created",
        "lastmodifieddate": "updated",
        "createddate": "created",
    }
    instance_keys: ClassVar[Mapping[str, str]] = {
        **SageProduct.instance_keys,
        "company.name": "Company",  # by name: scope_headers finds its id in /sites
    }

    def base_url(self, settings: Settings) -> str:
        # Standard and Professional have their own public roots (the Schema property).
        return settings.url or self.definition.base_urls[settings.schema]

    def scope_headers(self, settings: Settings, get_json: GetJSON) -> dict[str, str]:
        """X-Site and X-Company: the Site and Company given (Company by id or by the name
        /sites gives it, any case), else the first company of ``/sites``."""
        site, company = settings.site, settings.company
        if site and company and company.isdigit():
            return {"X-Site": site, "X-Company": company}
        rows = [row for row in get_json("/sites") or [] if isinstance(row, Mapping)]
        match = [
            row
            for row in rows
            if (not site or str(row.get("site_id")) == site)
            and (not company or _names_company(row, company))
        ]
        if not match:
            known = ", ".join(
                f"{r.get('company_name')} (id {r.get('company_id')})" for r in rows[:10]
            )
            raise ConfigurationError(
                "no Sage 200 site and company match Site/Company "
                f"(Site={site or '-'}, Company={company or '-'})",
                hint=f"set Company to one of: {known}" if known else "check the user's sites",
            )
        if len({str(r.get("company_id")) for r in match}) > 1 and company:
            raise ConfigurationError(
                f"Company={company!r} names {len(match)} Sage 200 companies on different sites",
                hint="set Site too, or give the company's id",
            )
        return {"X-Site": str(match[0]["site_id"]), "X-Company": str(match[0]["company_id"])}


def _names_company(row: Mapping[str, object], company: str) -> bool:
    """Whether Company (an id, or a name as the platforms' company.name gives it) is
    this /sites row's company."""
    if str(row.get("company_id")) == company:
        return True
    return str(row.get("company_name") or "").strip().casefold() == company.strip().casefold()


PRODUCT = Sage200()
