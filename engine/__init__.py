"""The SQL engine: statements parsed, bound, resolved, planned into API requests, and run.

A statement's path: ``statement`` (sqlglot parse, parameters) -> ``names`` (tables and
columns against the catalog) -> ``predicates`` (the WHERE clause as typed comparisons)
-> ``plan`` (per table: what the API applies, what is left to do locally) -> ``fetch``
(requests, records flattened into rows) -> ``local`` (SQLite evaluates the statement
over those rows) -> a cursor.
"""
