"""Commands that read the catalog: ``sagesql tables`` and ``sagesql describe``."""

from __future__ import annotations

from typing import Annotated

import typer

from sagesql.cli.output import ListFormat, print_json, print_table, print_text

ProductOption = Annotated[
    str | None,
    typer.Option(
        "--product",
        "-p",
        help="SageAccounting, Sage200 or SageCRM.",
        envvar="SAGESQL_PRODUCT",
        show_envvar=False,
    ),
]
FormatOption = Annotated[
    ListFormat, typer.Option("--format", "-f", help="table for people, json for tools.")
]

# describe's default, the same as the Product connection property's.
DEFAULT_PRODUCT = "SageAccounting"


def tables(product: ProductOption = None, format: FormatOption = ListFormat.table) -> None:
    """List the virtual tables with a one-line description."""
    from sagesql.schemas.catalog import default_catalog

    catalog = default_catalog()
    found = catalog.tables(product)
    if format is ListFormat.json:
        print_json(
            [
                {
                    "name": t.name,
                    "product": catalog.product(t.product).connection_name,
                    "aliases": list(t.aliases),
                    "description": t.description,
                }
                for t in found
            ]
        )
        return
    print_table(
        ["product", "table", "description"],
        (
            (
                catalog.product(t.product).connection_name,
                t.name + (f" ({', '.join(t.aliases)})" if t.aliases else ""),
                t.description,
            )
            for t in found
        ),
    )


def describe(
    table: Annotated[str, typer.Argument(help="Table name or alias.")],
    product: ProductOption = None,
    format: FormatOption = ListFormat.table,
) -> None:
    """Show a table's columns, key, updated-date column, pushdown and statements."""
    from sagesql.schemas.catalog import default_catalog

    catalog = default_catalog()
    t = catalog.table(table, product or DEFAULT_PRODUCT)
    pushdown = t.pushdown_by_column()
    sort_columns = set(t.pushdown.sort.columns) if t.pushdown.sort else set()
    product_name = catalog.product(t.product).connection_name
    if format is ListFormat.json:
        print_json(
            {
                "name": t.name,
                "product": product_name,
                "description": t.description,
                "aliases": list(t.aliases),
                "key": t.key,
                "updated_column": t.updated_column,
                "created_column": t.created_column,
                "deletions": t.deletions.parameter if t.deletions else None,
                "statements": list(t.statements),
                "operations": {k: f"{op.method} {op.path}" for k, op in t.operations.items()},
                "parent": t.parent.table if t.parent else None,
                "children": list(t.children),
                "procedures": [p.name for p in t.procedures],
                "columns": [
                    {
                        "name": c.name,
                        "type": c.type,
                        "nullable": c.nullable,
                        "read_only": c.read_only,
                        "required_on_create": c.required_on_create,
                        "pushdown": pushdown.get(c.name, []),
                        "sortable": c.name in sort_columns,
                        "description": c.description,
                    }
                    for c in t.columns
                ],
            }
        )
        return
    lines = [
        f"[bold]{t.name}[/bold] ({product_name}): {t.description}",
        f"key: {t.key or '-'}    updated: {t.updated_column or '-'}"
        f"    created: {t.created_column or '-'}"
        f"    deletions: {t.deletions.parameter if t.deletions else '-'}",
        f"statements: {', '.join(t.statements) or '-'}",
    ]
    for kind, op in t.operations.items():
        lines.append(f"  {kind}: {op.method} {op.path}")
    if t.parent:
        lines.append(f"rows from: {t.parent.table}.{'.'.join(t.parent.path)}")
    if t.children:
        lines.append(f"child tables: {', '.join(t.children)}")
    if t.aliases:
        lines.append(f"aliases: {', '.join(t.aliases)}")
    if t.procedures:
        lines.append(f"procedures: {', '.join(p.name for p in t.procedures)}")
    from rich.markup import escape

    print_text("\n".join(lines[:1] + [escape(line) for line in lines[1:]]))
    flags = {True: "yes", False: ""}
    print_table(
        ["column", "type", "pushdown", "sort", "read-only", "required", "description"],
        (
            (
                c.name,
                c.type,
                "; ".join(pushdown.get(c.name, [])),
                flags[c.name in sort_columns],
                flags[c.read_only],
                flags[c.required_on_create],
                c.description,
            )
            for c in t.columns
        ),
    )


def register(app: typer.Typer) -> None:
    app.command()(tables)
    app.command()(describe)
