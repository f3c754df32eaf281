"""sagesql sync into a real PostgreSQL server: a database of its own per test run, dropped after.

The server is 127.0.0.1:5432 (user ``postgres``, trust auth) unless SAGESQL_TEST_PG names
another ``postgresql://`` URL of a role that may create databases. Without a server the
tests are skipped, except when ``CI=true``: there an unreachable server is a failure.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from replication_helpers import assert_same, sync
from test_poll_helpers import frozen_at, utc
from test_replication import CASES, _changes

from sagesql.schemas.catalog import default_catalog

ADMIN = os.environ.get("SAGESQL_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def _admin() -> Any:
    psycopg = pytest.importorskip("psycopg")
    try:
        return psycopg.connect(ADMIN, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is not reachable at {ADMIN}: {exc}")
        pytest.skip(f"PostgreSQL is not reachable at {ADMIN}")


@pytest.fixture(scope="module")
def pg_database() -> Iterator[str]:
    """The URL of a new database, dropped after the module's tests."""
    admin = _admin()
    name = f"sagesql_replica_{uuid.uuid4().hex[:12]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield ADMIN.rsplit("/", 1)[0] + "/" + name
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.mark.parametrize("product", list(CASES))
def test_postgres_replica_equals_the_api_after_every_run(
    start_sandbox, pg_database, product
) -> None:
    import psycopg

    sbx = start_sandbox(product, rows=40, rate_limit_per_minute=0)
    tables, compared = CASES[product]
    # One schema per product: the same table names do not meet.
    named = [f"{product}.{t}" for t in tables]
    frozen_at(sbx, utc(2026, 1, 1, 12, 0, 0))
    outcomes = sync(sbx, pg_database, tables, names=named, lookback=timedelta(0))
    assert all(o.complete for o in outcomes), [o.summary() for o in outcomes]
    assert_same(sbx, pg_database, compared, schema=product)
    for round_ in (1, 2):
        _changes(sbx, round_)
        outcomes = sync(sbx, pg_database, tables, names=named, lookback=timedelta(0))
        assert all(o.complete for o in outcomes), [o.summary() for o in outcomes]
        assert_same(sbx, pg_database, compared, schema=product)
    with psycopg.connect(pg_database) as conn:
        types = dict(
            conn.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = %s AND table_name = %s",
                [product, tables[0]],
            ).fetchall()
        )
        table = default_catalog().table(tables[0], product)
        assert types[table.updated_column] == "timestamp with time zone"
        indexes = [
            r[0]
            for r in conn.execute(
                "SELECT indexdef FROM pg_indexes WHERE schemaname = %s AND tablename = %s",
                [product, tables[0]],
            )
        ]
        assert any("UNIQUE" in i and table.key in i for i in indexes), indexes
        assert any(table.updated_column in i for i in indexes), indexes


def test_query_replica_on_postgres_answers_as_sage_does(start_sandbox, pg_database) -> None:
    from replication_helpers import client

    from sagesql.engine.pipeline import run
    from sagesql.replication.offline import answer

    sbx = start_sandbox("sage_crm", rows=15, rate_limit_per_minute=0)
    outcomes = sync(sbx, pg_database, ["company"])
    assert outcomes[0].complete
    sql = "SELECT count(*) AS n, max(comp_name) AS top FROM company WHERE comp_companyid <= ?"
    with client(sbx, "live") as c:
        live = list(run(c, sql, [9]))
    result = answer(pg_database, sql, [9])
    assert [c.name for c in result.columns] == ["n", "top"]
    assert list(result) == live


def _json(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


@pytest.mark.parametrize("product", ["sage_200", "sage_accounting"])
def test_the_same_sql_answers_the_same_from_postgres(start_sandbox, pg_database, product) -> None:
    """Typed columns (timestamptz, numeric, boolean) come back as online, and date
    literals in any ISO form mean the same instants; a schema-qualified replica reads too."""
    from replication_helpers import client
    from test_replication_sql import SAME_SQL, _same_sql

    from sagesql.engine.pipeline import run
    from sagesql.engine.replica import answer

    table, updated, key = SAME_SQL[product]
    sbx = start_sandbox(product, rows=30, rate_limit_per_minute=0)
    schema = f"same_{product}"
    outcomes = sync(sbx, pg_database, [table], names=[f"{schema}.{table}"])
    assert outcomes[0].complete, outcomes[0].summary()
    with client(sbx, "live") as c:
        stamps = sorted(str(r[0]) for r in run(c, f"SELECT {updated} FROM {table}"))
        middle = datetime.fromisoformat(stamps[len(stamps) // 2].replace("Z", "+00:00"))
        statements = _same_sql(table, updated, key, middle)
        online = [list(run(c, sql)) for sql in statements]

    def same(rows: list[tuple]) -> list[tuple]:
        # jsonb keeps its own key order: JSON text compared as the values it holds.
        return [tuple(_json(v) for v in r) for r in rows]

    for sql, expected in zip(statements, online, strict=True):
        # No product given: the replica's table named tells it (several products here).
        got = list(answer(pg_database, sql.replace(f" {table}", f" {schema}.{table}")))
        assert same(got) == same(expected), sql
