"""Types at the edges: the DB-API gives Python types, the command line keeps ISO text.

Over the sandbox (real HTTP): DATE columns come out of a cursor as ``datetime.date``,
DATETIME as UTC-aware ``datetime.datetime``, DECIMAL as ``decimal.Decimal`` with the
places the API wrote ("6500.00"), BOOLEAN as ``bool``; ``description`` type codes equal
the PEP 249 type objects of those values; pandas reads them as datetime64 (UTC),
Decimal and bool columns. JSON output of the command line keeps the API's ISO text.
Placeholders of other paramstyles fail in one line naming the ones sagesql takes.
"""

from __future__ import annotations

import datetime
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

import sagesql
from sagesql.engine import dbapi, pipeline

UTC = datetime.timezone.utc


def _connect(sbx: Any, name: str) -> dbapi.Connection:
    props = {**sbx.connection_properties(), "OAuthSettingsLocation": f"memory://types-{name}"}
    return sagesql.connect(**props, RateLimit="0")


@pytest.fixture(scope="module")
def accounting() -> Iterator[Any]:
    from sagesql.sandbox.config import SandboxConfig
    from sagesql.sandbox.runner import Sandbox

    sbx = Sandbox(
        "sage_accounting", SandboxConfig(product="sage_accounting", rate_limit_per_minute=0)
    ).start()
    try:
        yield sbx
    finally:
        sbx.stop()


def _engine_rows(conn: dbapi.Connection, sql: str) -> list[tuple[Any, ...]]:
    """The same statement through the engine's Result (what the CLI formats)."""
    result = pipeline.run(conn.client, sql)
    try:
        return list(result)
    finally:
        result.close()


def test_cursor_values_have_python_types(accounting: Any) -> None:
    sql = (
        "SELECT id, name, credit_limit, balance, is_active, updated_at, created_at, deleted_at "
        "FROM contacts ORDER BY id"
    )
    with _connect(accounting, "values") as conn:
        cursor = conn.cursor()
        cursor.execute(sql)
        rows = cursor.fetchall()
        stored = _engine_rows(conn, sql)
        codes = [d[1] for d in cursor.description]
    assert rows and len(rows) == len(stored)
    assert codes[0] == dbapi.STRING and codes[1] == dbapi.STRING
    assert codes[2] == dbapi.NUMBER and codes[3] == dbapi.NUMBER and codes[4] == dbapi.NUMBER
    assert codes[5] == dbapi.DATETIME and codes[6] == dbapi.DATETIME
    for row, text in zip(rows, stored, strict=True):
        _, _, credit, balance, active, updated, created, deleted = row
        assert isinstance(credit, Decimal) and isinstance(balance, Decimal)
        # Accounting writes money with two places: 6500.00 stays 6500.00, not 6500.
        assert credit.as_tuple().exponent == -2 and balance.as_tuple().exponent == -2
        assert isinstance(active, bool)
        for value, iso in ((updated, text[5]), (created, text[6])):
            assert isinstance(value, datetime.datetime) and value.utcoffset() == datetime.timedelta(
                0
            )
            assert value == datetime.datetime.fromisoformat(iso.replace("Z", "+00:00"))
        assert deleted is None or isinstance(deleted, datetime.datetime)
        # The engine's Result (the CLI's rows) keeps the API's ISO text.
        assert isinstance(text[5], str) and text[5].endswith("Z")


def test_date_columns_are_dates_and_aggregates_keep_the_type(accounting: Any) -> None:
    with _connect(accounting, "dates") as conn:
        cursor = conn.cursor()
        cursor.execute(
            "SELECT date, due_date, total_amount, min(updated_at) OVER () AS first, "
            "date(updated_at) AS day FROM sales_invoices LIMIT 3"
        )
        codes = [d[1] for d in cursor.description]
        rows = cursor.fetchall()
        cursor.execute("SELECT max(date) AS last, max(updated_at) AS latest FROM sales_invoices")
        ((last, latest),) = cursor.fetchall()
        latest_code = cursor.description[1][1]
    assert codes[0] == dbapi.DATETIME and codes[1] == dbapi.DATETIME
    assert codes[4] is None  # computed: SQLite's text, as it is
    for day, due, total, _, text in rows:
        assert type(day) is datetime.date and type(due) is datetime.date
        assert isinstance(total, Decimal)
        assert isinstance(text, str)
    assert type(last) is datetime.date
    assert isinstance(latest, datetime.datetime) and latest.tzinfo is not None
    assert latest_code == dbapi.DATETIME


@pytest.mark.parametrize(
    ("product", "sql", "when"),
    [
        ("sage_200", "SELECT id, credit_limit, account_opened FROM customers", 2),
        ("sage_crm", "SELECT comp_companyid, comp_name, comp_createddate FROM company", 2),
    ],
)
def test_other_products_datetimes(start_sandbox: Any, product: str, sql: str, when: int) -> None:
    sbx = start_sandbox(product, rows=10, rate_limit_per_minute=0)
    with _connect(sbx, product) as conn:
        cursor = conn.cursor()
        cursor.execute(sql)
        rows = cursor.fetchall()
    assert rows
    for row in rows:
        assert isinstance(row[when], datetime.datetime) and row[
            when
        ].utcoffset() == datetime.timedelta(0)


PANDAS_WARNING = "pandas only supports SQLAlchemy"


def test_pandas_gets_datetime_decimal_and_bool_columns(accounting: Any) -> None:
    pandas = pytest.importorskip("pandas")
    sql = "SELECT id, credit_limit, is_active, updated_at FROM contacts"
    with _connect(accounting, "pandas") as conn:
        cursor = conn.cursor()
        cursor.execute(sql)
        names = [d[0] for d in cursor.description]
        frame = pandas.DataFrame.from_records(cursor.fetchall(), columns=names, coerce_float=False)
        # pandas warns that it tests only SQLAlchemy and sqlite3 connections, then uses
        # the DB-API: the same frame.
        with pytest.warns(UserWarning, match=PANDAS_WARNING):
            read = pandas.read_sql(sql, conn, coerce_float=False)
    for df in (frame, read):
        updated = df["updated_at"].dtype
        assert isinstance(updated, pandas.DatetimeTZDtype) and str(updated.tz) == "UTC"
        assert str(df["updated_at"].astype("datetime64[ns, UTC]").dtype) == "datetime64[ns, UTC]"
        assert all(isinstance(v, Decimal) for v in df["credit_limit"])
        assert df["is_active"].dtype == bool
    assert frame.equals(read)


def test_json_output_keeps_iso_text(accounting: Any) -> None:
    """The command line's JSON is the API's text: dates and times ISO, money as written."""
    props = {**accounting.connection_properties(), "OAuthSettingsLocation": "memory://cli"}
    text = ";".join(f"{k}={v}" for k, v in props.items())
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "sagesql.cli.main",
            "query",
            "-c",
            text,
            "--format",
            "json",
            "SELECT i.date, i.updated_at, i.total_amount, c.credit_limit FROM sales_invoices i "
            "JOIN contacts c ON c.id = i.contact_id ORDER BY i.id LIMIT 2",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert len(rows) == 2
    for row in rows:
        datetime.date.fromisoformat(row["date"])
        assert row["updated_at"].endswith("Z") and "T" in row["updated_at"]
    # Decimals are JSON numbers with the places the API wrote.
    assert len(re.findall(r'"credit_limit":-?\d+\.\d\d\b', done.stdout)) == 2


@pytest.mark.parametrize(
    ("sql", "params", "placeholder"),
    [
        ("SELECT name FROM contacts WHERE id = %s", ["x"], "%s"),
        ("SELECT name FROM contacts WHERE id = %(id)s", {"id": "x"}, "%(id)s"),
        ("SELECT name FROM contacts WHERE reference = %s AND id = %s", ["a", "b"], "%s"),
        ("SELECT name FROM contacts WHERE id = $1", ["x"], "$1"),
    ],
)
def test_other_paramstyles_fail_naming_the_supported_ones(
    accounting: Any, sql: str, params: Any, placeholder: str
) -> None:
    with _connect(accounting, "paramstyle") as conn:
        cursor = conn.cursor()
        with pytest.raises(dbapi.ProgrammingError) as caught:
            cursor.execute(sql, params)
    message = str(caught.value)
    assert len(message.splitlines()) == 1
    assert f"{placeholder} placeholders" in message
    assert "qmark" in message and "named" in message and "?" in message and ":name" in message
    for internal in ("sqlglot", "Mod", "Required keyword"):
        assert internal not in message
    assert dbapi.paramstyle == "qmark"
