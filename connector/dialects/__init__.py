"""Product dialects: how a table's API applies predicates, sorts, projects and pages.

Each dialect turns the planner's conjuncts (connector.predicates) into the query of one
list request, following the table definition's ``pushdown`` section:

- ``accounting``: Sage Accounting's own query parameters (updated_or_created_since,
  from_date, search, contact_id...), ``sort=`` and ``attributes=``;
- ``odata``: Sage 200's ``$filter``, ``$orderby``, ``$select``;
- ``sdata``: Sage CRM's ``where=`` and ``orderBy``.

The rule they keep: the rows the API returns for the pushed filters are a superset of
the rows SQLite would keep for those conjuncts (the whole WHERE clause is re-checked
locally anyway); a conjunct is reported ``exact`` only when the API returns exactly
those rows, which is what lets LIMIT reach the API.
"""

from __future__ import annotations

from sagesql.connector.dialects.base import Dialect, Pushed, SortKey

__all__ = ["Dialect", "Pushed", "SortKey"]
