"""SQLAlchemy 2 dialect: ``create_engine("sagesql://...")`` over sagesql's DB-API.

::

    from sqlalchemy import create_engine, inspect, select, text
    import pandas as pd

    engine = create_engine("sagesql://?Product=Sage200&InitiateOAuth=GETANDREFRESH&...")
    engine = create_engine("sagesql://acme")            # the profile [profiles.acme]
    inspect(engine).get_columns("customers")            # types from the catalog
    pd.read_sql(text("SELECT id, name, balance FROM customers"), engine)

Registered under the entry point ``sqlalchemy.dialects`` (``sagesql``), so installing
sagesql with SQLAlchemy is enough. It is a layer above the engine, beside the activities:
statements compile to the SQLite flavour of SQL that the engine runs, tables and columns
are reflected from the catalog (nothing is sent), and INSERT/UPDATE/DELETE are sagesql
writes. Tables are never created, altered or dropped (``to_sql`` into a new table fails).
"""

from __future__ import annotations

from sagesql.sqlalchemy_dialect.dialect import SageDialect

__all__ = ["SageDialect"]
