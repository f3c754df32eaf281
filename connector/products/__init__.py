"""The Sage products: one module each, found by any of their names.

Each module here defines one :class:`~sagesql.connector.products.base.SageProduct`
subclass as ``PRODUCT``; :func:`get` finds it by the product's id (``sage_200``), its
connection name (``Sage200``) or an integration platform's element key (``sageone``), in
any case. Adding a product is one module here and one ``schemas/<id>/`` folder
(ARCHITECTURE.md has the recipe); nothing else lists the products.

>>> get("sageone").id, get("Sage200").short_title
('sage_accounting', 'Sage 200')
"""

from __future__ import annotations

import importlib
import pkgutil
import threading

from sagesql.connector.dialects.base import Dialect
from sagesql.connector.paging import Paginator
from sagesql.connector.products.base import SageProduct
from sagesql.connector.properties import Settings
from sagesql.schemas.catalog import Table, default_catalog

__all__ = ["SageProduct", "all_products", "dialect_for", "for_table", "get", "paginator_for"]

_registry: dict[str, SageProduct] = {}
_lock = threading.Lock()


def _load() -> dict[str, SageProduct]:
    if not _registry:
        with _lock:
            if not _registry:
                found: dict[str, SageProduct] = {}
                for info in pkgutil.iter_modules(__path__):
                    if info.name != "base":
                        module = importlib.import_module(f"{__name__}.{info.name}")
                        product: SageProduct = module.PRODUCT
                        found[product.id] = product
                _registry.update(found)
    return _registry


def get(name: str) -> SageProduct:
    """The product of any of its names (unknown names: ConfigurationError with the choices)."""
    registry = _load()
    found = registry.get(name)  # the id itself: the common case, without a catalog lookup
    return found if found is not None else registry[default_catalog().resolve_product(name)]


def all_products() -> list[SageProduct]:
    """Every product, in the catalog's order."""
    registry = _load()
    return [registry[p] for p in default_catalog().product_names() if p in registry]


def for_table(table: Table) -> SageProduct:
    """The product a table belongs to."""
    return _load()[table.product]


def dialect_for(table: Table, settings: Settings | None = None) -> Dialect:
    """How the API of a table's product applies its predicates, sort and projection."""
    return for_table(table).dialect(table, settings)


def paginator_for(table: Table) -> Paginator:
    """How the API of a table's product pages its list."""
    return for_table(table).paginator(table)
