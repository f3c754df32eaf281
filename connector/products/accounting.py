"""Sage Business Cloud Accounting (API v3.1): query-parameter filters, ``X-Business``."""

from __future__ import annotations

from typing import ClassVar

from sagesql.connector.dialects.accounting import AccountingDialect
from sagesql.connector.dialects.base import Dialect
from sagesql.connector.products.base import SageProduct


class Accounting(SageProduct):
    id = "sage_accounting"
    dialect_class: ClassVar[type[Dialect]] = AccountingDialect
    # X-Business comes from BusinessId (the definition's header); without it, Sage
    # answers for the user's lead business.


PRODUCT = Accounting()
