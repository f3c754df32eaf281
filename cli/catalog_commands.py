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
    info = t.to_description(catalog.product(t.product).connection_name)
    if format is ListFormat.json:
        print_json(info)
        return
    lines = [
        f"[bold]{info['name']}[/bold] ({info['product']}): {info['description']}",
        f"key: {info['key'] or '-'}    updated: {info['updated_column'] or '-'}"
        f"    created: {info['created_column'] or '-'}"
        f"    deletions: {info['deletions'] or '-'}",
        f"statements: {', '.join(info['statements']) or '-'}",
    ]
    lines += [f"  {kind}: {call}" for kind, call in info["operations"].items()]
    if t.parent:
        lines.append(f"rows from: {t.parent.table}.{'.'.join(t.parent.path)}")
    if info["children"]:
        lines.append(f"child tables: {', '.join(info['children'])}")
    if info["aliases"]:
        lines.append(f"aliases: {', '.join(info['aliases'])}")
    if info["procedures"]:
        lines.append(f"procedures: {', '.join(info['procedures'])}")
    from rich.markup import escape

    print_text("\n".join(lines[:1] + [escape(line) for line in lines[1:]]))
    flags = {True: "yes", False: ""}
    print_table(
        ["column", "type", "pushdown", "sort", "read-only", "required", "description"],
        (
            (
                c["name"],
                c["type"],
                "; ".join(c["pushdown"]),
                flags[c["sortable"]],
                flags[c["read_only"]],
                flags[c["required_on_create"]],
                c["description"],
            )
            for c in info["columns"]
        ),
    )


def register(app: typer.Typer) -> None:
    app.command()(tables)
    app.command()(describe)
