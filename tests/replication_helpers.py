"""Helpers of the replication tests: a sync run in-process, truth and replica read by key.

No tests here; test_replication*.py import what they need.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from test_poll_helpers import connection_string

from sagesql.connector.client import SageClient
from sagesql.connector.sources import load_settings
from sagesql.engine.pipeline import run
from sagesql.replication.sync import Replicated, Replicator, TableOutcome, specs_for
from sagesql.replication.targets import open_target
from sagesql.schemas.catalog import default_catalog


def client(sbx: Any, name: str = "sync", **props: str) -> SageClient:
    text = ";".join([connection_string(sbx, name), *(f"{k}={v}" for k, v in props.items())])
    return SageClient(load_settings(text, use_environment=False))


def sync(sbx: Any, url: str, tables: list[str], **options: Any) -> list[TableOutcome]:
    props = options.pop("props", {})
    names = options.pop("names", None) or [None] * len(tables)
    spec_options = {k: options.pop(k) for k in ("lookback", "delay") if k in options}
    with client(sbx, **props) as c:
        specs = specs_for(
            [Replicated(t, n) for t, n in zip(tables, names, strict=True)],
            c.catalog,
            sbx.product,
            **spec_options,
        )
        target = open_target(url)
        try:
            return Replicator(c, target, specs, **options).run()
        finally:
            target.close()


def _normal(sql_type: str | None, value: Any) -> Any:
    """One spelling per value, whichever side it was read from."""
    if value is None:
        return None
    if sql_type == "DATETIME":
        if isinstance(value, datetime):
            return value.astimezone(timezone.utc).replace(tzinfo=None).isoformat(" ")
        text = str(value).replace("T", " ").removesuffix("Z")
        parsed = datetime.fromisoformat(text)
        if parsed.tzinfo is not None:
            parsed = parsed.astimezone(timezone.utc).replace(tzinfo=None)
        return parsed.isoformat(" ")
    if sql_type == "DATE":
        return str(value)[:10]
    if sql_type == "DECIMAL":
        return round(float(Decimal(str(value))), 6)
    if sql_type == "BOOLEAN":
        return bool(value)
    if sql_type == "INTEGER":
        return int(value)
    if sql_type == "JSON":
        return json.loads(value) if isinstance(value, str) else value
    return str(value)


def truth(sbx: Any, table: str) -> dict[str, dict[str, Any]]:
    """The API's rows now, by key (every column, normalised)."""
    t = default_catalog().table(table, sbx.product)
    types = {c.name: c.type for c in t.columns}
    with client(sbx, "truth") as c:
        result = run(c, f'SELECT * FROM "{t.name}"')
        names = [col.name for col in result.columns]
        rows = list(result)
    return _by_key(t, names, rows, types)


def _by_key(t: Any, names: list[str], rows: list[Any], types: dict[str, str]) -> dict:
    key_columns = [t.parent.key_column, t.key] if t.parent is not None else [t.key]
    out = {}
    for row in rows:
        record = {n: _normal(types.get(n), v) for n, v in zip(names, row, strict=True)}
        out["|".join(str(record[k]) for k in key_columns)] = record
    return out


def replica(
    url: str, table: str, product: str, schema: str | None = None
) -> dict[str, dict[str, Any]]:
    t = default_catalog().table(table, product)
    types = {c.name: c.type for c in t.columns}
    names = [c.name for c in t.columns]
    columns = ", ".join(f'"{n}"' for n in names)
    if url.startswith("sqlite:///"):
        conn = sqlite3.connect(url[len("sqlite:///") :])
        rows = conn.execute(f'SELECT {columns} FROM "{t.name}"').fetchall()
        conn.close()
    else:
        import psycopg

        with psycopg.connect(url) as conn:
            where = f'"{schema}"."{t.name}"' if schema else f'"{t.name}"'
            rows = conn.execute(f"SELECT {columns} FROM {where}").fetchall()
    return _by_key(t, names, rows, types)


def assert_same(sbx: Any, url: str, tables: list[str], schema: str | None = None) -> None:
    for table in tables:
        expected, got = truth(sbx, table), replica(url, table, sbx.product, schema)
        assert got.keys() == expected.keys(), (
            table,
            sorted(expected.keys() - got.keys())[:5],
            sorted(got.keys() - expected.keys())[:5],
        )
        diff = [k for k in expected if expected[k] != got[k]]
        if diff:
            k = diff[0]
            changed = {
                c: (expected[k][c], got[k][c]) for c in expected[k] if expected[k][c] != got[k][c]
            }
            raise AssertionError(f"{table}: {len(diff)} rows differ, e.g. {k}: {changed}")
