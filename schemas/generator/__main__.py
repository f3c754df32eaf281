"""Command line of the generator: write or check schemas/ (see the package docstring)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from schemas.generator import accounting, crm, sage200
from schemas.generator.common import DEFAULT_REFERENCE, SCHEMAS_DIR, dump

BUILDERS = {"sage_accounting": accounting.build, "sage_200": sage200.build, "sage_crm": crm.build}


def render(reference: Path) -> dict[Path, str]:
    """Every file the generator owns under schemas/, relative path -> text."""
    files: dict[Path, str] = {}
    index: dict[str, Any] = {"products": [], "tables": []}
    for product_name, build in BUILDERS.items():
        product, tables = build(reference)
        files[Path(product_name) / "_product.json"] = dump(product)
        index["products"].append(
            {
                "product": product_name,
                "title": product["title"],
                "connection_name": product["connection_name"],
                "element_keys": product["element_keys"],
                "file": f"{product_name}/_product.json",
            }
        )
        seen: set[str] = set()
        for table in sorted(tables, key=lambda t: t["name"]):
            names = [table["name"], *table["aliases"]]
            clash = seen.intersection(names)
            if clash:
                raise SystemExit(f"{product_name}: duplicate table name {sorted(clash)}")
            seen.update(names)
            rel = Path(product_name) / f"{table['name']}.json"
            files[rel] = dump(table)
            index["tables"].append(
                {
                    "name": table["name"],
                    "product": product_name,
                    "aliases": table["aliases"],
                    "description": table["description"],
                    "file": rel.as_posix(),
                }
            )
    files[Path("index.json")] = dump(index)
    return files


def owned_files() -> set[Path]:
    """Generated files now on disk (so that stale ones are noticed and removed)."""
    found = {p.relative_to(SCHEMAS_DIR) for p in SCHEMAS_DIR.glob("sage_*/*.json")}
    if (SCHEMAS_DIR / "index.json").exists():
        found.add(Path("index.json"))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m schemas.generator", description=__doc__)
    parser.add_argument("--reference", type=Path, default=DEFAULT_REFERENCE)
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args(argv)
    if not args.reference.is_dir():
        print(
            f"error: reference folder {args.reference} not found: pass --reference", file=sys.stderr
        )
        return 2
    files = render(args.reference)
    stale = owned_files() - set(files)
    if args.check:
        differ = [
            p
            for p, text in files.items()
            if not (SCHEMAS_DIR / p).exists()
            or (SCHEMAS_DIR / p).read_text(encoding="utf-8") != text
        ]
        for p in sorted(differ) + sorted(stale):
            print(f"out of date: schemas/{p}")
        return 1 if differ or stale else 0
    for p in stale:
        (SCHEMAS_DIR / p).unlink()
    for p, text in files.items():
        target = SCHEMAS_DIR / p
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            target.write_text(text, encoding="utf-8")
    print(f"wrote {len(files)} files ({len(stale)} stale removed) under schemas/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
