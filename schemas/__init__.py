"""The virtual tables as data: one JSON file per table, grouped by product.

``table.schema.json`` (with ``procedure.schema.json`` and ``product.schema.json``)
defines the format; ``index.json`` lists every table so that the catalog can
list tables without parsing every file. All of it is written by
``python -m schemas.generator`` from Sage's published definitions; do not edit
the JSON by hand.
"""
