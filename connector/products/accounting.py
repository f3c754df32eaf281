"""Sage Business Cloud Accounting (API v3.1): query-parameter filters, ``X-Business``."""

from __future__ import annotations

from typing import ClassVar

from sagesql.connector.dialects.accounting import AccountingDialect
from sagesql.connector.dialects.base import Dialect
from sagesql.connector.products.base import GetJSON, SageProduct
from sagesql.connector.properties import Settings


class Accounting(SageProduct):
    id = "sage_accounting"
    dialect_class: ClassVar[type[Dialect]] = AccountingDialect

    def scope_headers(self, settings: Settings, get_json: GetJSON) -> dict[str, str]:
        # Without BusinessId, Sage answers for the user's lead business.
        return {"X-Business": settings.business_id} if settings.business_id else {}


PRODUCT = Accounting()
