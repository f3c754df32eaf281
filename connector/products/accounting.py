"""Sage Business Cloud Accounting (API v3.1): query-parameter filters, ``X-Business``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from sagesql.connector.dialects.accounting import AccountingDialect
from sagesql.connector.dialects.base import Dialect
from sagesql.connector.products.base import SageProduct


class Accounting(SageProduct):
    id = "sage_accounting"
    dialect_class: ClassVar[type[Dialect]] = AccountingDialect
    # X-Business comes from BusinessId (the definition's header); without it, Sage
    # answers for the user's lead business.

    # The finance hub's normalized names (its instances poll lastModifiedDate).
    platform_fields: ClassVar[Mapping[str, str]] = {
        "lastmodifieddate": "updated",
        "createddate": "created",
    }
    # An instance's "country" picked a regional API before v3.1; v3.1 serves every
    # country at one URL (the business's country is the business's), so it maps to no
    # property, nor do "signature.secret" (a v2 request-signing secret) and the rest.


PRODUCT = Accounting()
