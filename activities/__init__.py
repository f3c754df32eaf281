"""Activities for integration tools: Query (a source), Create, Update, Delete, Execute (targets).

The operations of the SQL engine as objects, the way integration platforms use
connector activities::

    from sagesql.activities import Create, Query
    from sagesql.connector.client import open_client

    with open_client(profile="books") as conn:
        for record in Query(conn, table="contacts", fields=["id", "name"], limit=10):
            ...
        results = Create(conn, "contacts")([{"name": "Acme", "contact_types": ["CUSTOMER"]}])

Targets take records in and give one result per record out (index, status, key,
record, error); they continue past a failed record unless ``stop_on_first_error``.
Nothing is global: an activity holds its connection and options only, and several
may run on one connection from several threads. ``schema.input_schema`` and
``schema.output_schema`` describe each activity's records as JSON Schema.
"""

from __future__ import annotations

from sagesql.activities.execute import Execute
from sagesql.activities.query import Query
from sagesql.activities.results import ActivityError, ActivityResult
from sagesql.activities.schema import input_schema, output_schema
from sagesql.activities.targets import Create, Delete, Update

__all__ = [
    "ActivityError",
    "ActivityResult",
    "Create",
    "Delete",
    "Execute",
    "Query",
    "Update",
    "input_schema",
    "output_schema",
]
