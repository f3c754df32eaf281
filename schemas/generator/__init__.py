"""Generator of the table definitions in schemas/ from Sage's published API definitions.

The published definitions are kept in ``schemas/definitions/`` (see SOURCES.md there).

Run from the repository root::

    python -m schemas.generator            # rewrite schemas/*
    python -m schemas.generator --check    # exit 1 if the committed files differ

Each product has a module with ``build(reference_dir) -> (product, tables)``:
``accounting`` (Swagger 2.0 of Accounting v3.1), ``sage200`` (the eleven OpenAPI 3
modules) and ``crm`` (hand-written from the documented fields: no machine-readable
definition exists). ``common`` holds what they share. The generator is a
development tool and is not installed with the package.
"""
