"""The SQLAlchemy type of each catalog SQL type (what reflection and results say).

The DB-API already returns Python values (``datetime`` in UTC, ``Decimal``, ``bool``),
so none of these types converts results; only JSON is decoded from its text.
"""

from __future__ import annotations

from sqlalchemy import types as sqltypes

from sagesql.schemas.catalog import Column


def column_type(column: Column) -> sqltypes.TypeEngine:
    """The SQLAlchemy type of a catalog column."""
    kind = column.type
    if kind == "TEXT":
        return sqltypes.String(column.max_length)
    if kind == "INTEGER":
        return sqltypes.Integer()
    if kind == "DECIMAL":
        # Sage's amounts have no declared scale: the cursor's Decimal keeps the API's places.
        return sqltypes.Numeric(asdecimal=True)
    if kind == "BOOLEAN":
        return sqltypes.Boolean()
    if kind == "DATE":
        return sqltypes.Date()
    if kind == "DATETIME":
        return sqltypes.DateTime(timezone=True)
    if kind == "JSON":
        return sqltypes.JSON()
    return sqltypes.NullType()


# The generic types as they are: the SQLite dialect's own DATE/DATETIME/JSON types parse
# text, which sagesql's cursor has already turned into Python values.
COLSPECS: dict[type, type] = {}
