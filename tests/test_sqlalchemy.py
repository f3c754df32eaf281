"""The SQLAlchemy dialect and pandas over it, against the three products' sandboxes.

Each query through SQLAlchemy Core is compared with the same question asked in SQL through
the DB-API, so the dialect is checked for what it compiles, not only that it runs.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterator
from decimal import Decimal
from importlib.metadata import entry_points
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import (
    MetaData,
    Table,
    create_engine,
    delete,
    func,
    insert,
    inspect,
    select,
    text,
    types,
    update,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import NoSuchTableError

import sagesql
from sagesql.errors import ConfigurationError, NotSupportedError
from sagesql.sqlalchemy_dialect.dialect import SageDialect
from sagesql.sqlalchemy_dialect.url import connect_arguments

# product -> (main table, its key, a text column, a joined table: (name, its key, the
# main table's column that refers to it))
PRODUCTS = {
    "sage_accounting": ("contacts", "id", "name", ("sales_invoices", "contact_id")),
    "sage_200": ("customers", "id", "name", ("currencies", "currency_id")),
    "sage_crm": ("company", "comp_companyid", "comp_name", ("person", "pers_companyid")),
}


def engine_for(sbx: Any, **extra: str) -> Engine:
    props = {**sbx.client_properties(), "RateLimit": "0", **extra}
    return create_engine("sagesql://", connect_args=props)


def sql_rows(sbx: Any, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    with sagesql.connect(**sbx.client_properties(), RateLimit="0") as conn:
        return conn.cursor().execute(sql, params).fetchall()


@pytest.fixture(params=list(PRODUCTS))
def product_sandbox(request: Any, start_sandbox: Callable[..., Any]) -> Iterator[Any]:
    sbx = start_sandbox(request.param, rows=12, rate_limit_per_minute=0)
    yield request.param, sbx


# -- finding the dialect -------------------------------------------------------------------


def test_the_dialect_is_registered_by_entry_point() -> None:
    found = {e.name: e.value for e in entry_points(group="sqlalchemy.dialects")}
    assert found["sagesql"] == "sagesql.sqlalchemy_dialect.dialect:SageDialect"
    engine = create_engine("sagesql://", connect_args={"Product": "SageCRM"})
    assert isinstance(engine.dialect, SageDialect) and engine.dialect.name == "sagesql"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sagesql://?Product=Sage200&Company=2", {"Product": "Sage200", "Company": "2"}),
        ("sagesql://acme", {"profile": "acme"}),
        ("sagesql://?Profile=acme&Site=x", {"profile": "acme", "Site": "x"}),
        ("sagesql://acme?profile=acme", {"profile": "acme"}),
        (
            "sagesql://admin:s%40cret@/?Product=SageCRM&URL=http%3A%2F%2Fh%2Fsdata",
            {"Product": "SageCRM", "URL": "http://h/sdata", "User": "admin", "Password": "s@cret"},
        ),
    ],
)
def test_a_url_names_properties_a_profile_and_a_user(url: str, expected: dict[str, str]) -> None:
    assert connect_arguments(make_url(url)) == expected


@pytest.mark.parametrize("url", ["sagesql://a?Profile=b", "sagesql://h:1", "sagesql:///db"])
def test_a_url_that_says_two_things_is_refused(url: str) -> None:
    with pytest.raises(ConfigurationError):
        connect_arguments(make_url(url))


def test_query_parameters_reach_sage_crm(start_sandbox: Callable[..., Any]) -> None:
    sbx = start_sandbox("sage_crm", rows=5)
    props = sbx.client_properties()
    url = (
        f"sagesql://{props['User']}:{props['Password']}@/?Product=SageCRM"
        f"&URL={props['URL']}&RateLimit=0"
    )
    engine = create_engine(url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM company")).scalar() == 5


def test_a_profile_name_is_a_connection(
    start_sandbox: Callable[..., Any], tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    sbx = start_sandbox("sage_200", rows=5)
    lines = "\n".join(f'{k} = "{v}"' for k, v in sbx.client_properties().items())
    (tmp_path / "profiles.toml").write_text(f"[profiles.books]\n{lines}\n", encoding="utf-8")
    monkeypatch.setenv("SAGESQL_CONFIG_DIR", str(tmp_path))
    for url in ("sagesql://books", "sagesql://?Profile=books&RateLimit=0"):
        with create_engine(url).connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM customers")).scalar() == 5


# -- reflection ----------------------------------------------------------------------------


def test_reflection_follows_the_catalog(product_sandbox: Any) -> None:
    product, sbx = product_sandbox
    table, key, _, (joined, _) = PRODUCTS[product]
    engine = engine_for(sbx)
    insp = inspect(engine)
    names = insp.get_table_names()
    assert table in names and joined in names
    assert insp.get_schema_names() == ["main"]
    assert insp.has_table(table) and not insp.has_table("no_such_table")
    assert insp.get_pk_constraint(table)["constrained_columns"] == [key]
    catalog = sagesql.connect(**sbx.client_properties()).client.catalog.table(table, product)
    columns = insp.get_columns(table)
    assert [c["name"] for c in columns] == [c.name for c in catalog.columns]
    expected = {
        "TEXT": types.String,
        "INTEGER": types.Integer,
        "DECIMAL": types.Numeric,
        "BOOLEAN": types.Boolean,
        "DATE": types.Date,
        "DATETIME": types.DateTime,
        "JSON": types.JSON,
    }
    for column, defined in zip(columns, catalog.columns, strict=True):
        assert isinstance(column["type"], expected[defined.type]), column
    datetimes = [c["type"] for c in columns if isinstance(c["type"], types.DateTime)]
    assert datetimes and all(t.timezone for t in datetimes)
    with pytest.raises(NoSuchTableError):
        insp.get_columns("no_such_table")
    reflected = Table(table, MetaData(), autoload_with=engine)
    assert [c.name for c in reflected.primary_key] == [key]


def test_accounting_views_are_the_tables_with_a_condition(
    start_sandbox: Callable[..., Any],
) -> None:
    insp = inspect(engine_for(start_sandbox("sage_accounting", rows=3)))
    assert insp.get_view_names() == ["customers", "suppliers"]
    assert "customers" not in insp.get_table_names()
    assert insp.has_table("customers") and insp.has_table("CONTACTS")
    assert "CUSTOMER" in insp.get_view_definition("customers")
    amounts = {c["name"]: c["type"] for c in insp.get_columns("customers")}
    assert isinstance(amounts["balance"], types.Numeric) and amounts["balance"].asdecimal


# -- Core queries --------------------------------------------------------------------------


def test_core_select_filters_orders_limits_and_offsets(product_sandbox: Any) -> None:
    product, sbx = product_sandbox
    name, key, label, _ = PRODUCTS[product]
    engine = engine_for(sbx)
    t = Table(name, MetaData(), autoload_with=engine)
    query = (
        select(t.c[key], t.c[label])
        .where(t.c[label].is_not(None), t.c[label] != "nobody")
        .order_by(t.c[label].desc(), t.c[key])
        .limit(4)
        .offset(2)
    )
    compiled = str(query.compile(engine))
    assert "LIMIT ? OFFSET ?" in compiled
    with engine.connect() as conn:
        got = [tuple(r) for r in conn.execute(query)]
    expected = sql_rows(
        sbx,
        f"SELECT {key}, {label} FROM {name} WHERE {label} IS NOT NULL AND {label} != 'nobody'"
        f" ORDER BY {label} DESC, {key} LIMIT 4 OFFSET 2",
    )
    assert got == expected and len(got) == 4
    # A plain LIMIT stays a plain LIMIT (the planner may send it to the API).
    assert "OFFSET" not in str(select(t.c[key]).limit(3).compile(engine))
    with engine.connect() as conn:
        assert len(conn.execute(select(t.c[key]).limit(3)).fetchall()) == 3
        assert conn.execute(select(func.count()).select_from(t)).scalar() == 12


def test_core_join_and_group(product_sandbox: Any) -> None:
    product, sbx = product_sandbox
    name, key, label, (joined, ref) = PRODUCTS[product]
    engine = engine_for(sbx)
    md = MetaData()
    left, right = Table(name, md, autoload_with=engine), Table(joined, md, autoload_with=engine)
    if product == "sage_200":  # customers.currency_id -> currencies.id
        on, expected_sql = (
            left.c.currency_id == right.c.id,
            "SELECT currencies.name, count(*) FROM customers JOIN currencies"
            " ON customers.currency_id = currencies.id GROUP BY currencies.name"
            " ORDER BY currencies.name",
        )
        query = select(right.c.name, func.count()).select_from(left.join(right, on))
        query = query.group_by(right.c.name).order_by(right.c.name)
    else:  # the joined table refers to the main one
        on = right.c[ref] == left.c[key]
        query = (
            select(left.c[label], func.count())
            .select_from(left.join(right, on))
            .group_by(left.c[label])
            .order_by(left.c[label])
        )
        expected_sql = (
            f"SELECT {name}.{label}, count(*) FROM {name} JOIN {joined}"
            f" ON {joined}.{ref} = {name}.{key} GROUP BY {name}.{label} ORDER BY {name}.{label}"
        )
    with engine.connect() as conn:
        got = [tuple(r) for r in conn.execute(query)]
    assert got and got == sql_rows(sbx, expected_sql)


def test_core_values_come_typed(start_sandbox: Callable[..., Any]) -> None:
    sbx = start_sandbox("sage_accounting", rows=5, rate_limit_per_minute=0)
    engine = engine_for(sbx)
    t = Table("contacts", MetaData(), autoload_with=engine)
    with engine.connect() as conn:
        row = conn.execute(
            select(t.c.balance, t.c.updated_at, t.c.contact_types, t.c.deleted_at).limit(1)
        ).one()
        bound = conn.execute(
            select(func.count()).where(t.c.updated_at >= datetime.datetime(2000, 1, 1))
        ).scalar()
    assert isinstance(row.balance, Decimal)
    assert row.updated_at.tzinfo is not None and row.updated_at.utcoffset().total_seconds() == 0
    assert isinstance(row.contact_types, list)  # JSON decoded
    assert row.deleted_at is None
    assert bound == 5


# -- writes --------------------------------------------------------------------------------


def test_core_insert_update_delete_are_sagesql_writes(write_sandbox: Callable[..., Any]) -> None:
    sbx = write_sandbox("sage_crm")
    engine = engine_for(sbx)
    t = Table("company", MetaData(), autoload_with=engine)
    with engine.begin() as conn:
        made = conn.execute(
            insert(t).values(comp_name="Dialect Ltd", comp_type="Customer", comp_website="d.test")
        )
        assert made.rowcount == 1
        key = conn.execute(select(t.c.comp_companyid).where(t.c.comp_name == "Dialect Ltd"))
        key = key.scalar_one()
        assert made.inserted_primary_key == (key,)  # Sage's key, read back with RETURNING
        changed = conn.execute(
            update(t).where(t.c.comp_companyid == key).values(comp_status="Inactive")
        )
        assert changed.rowcount == 1
        status = conn.execute(select(t.c.comp_status).where(t.c.comp_companyid == key)).scalar()
        assert status == "Inactive"
        assert conn.execute(delete(t).where(t.c.comp_companyid == key)).rowcount == 1
        assert conn.execute(select(t.c.comp_name).where(t.c.comp_companyid == key)).all() == []


def test_core_insert_many_and_returning_on_sage_200(write_sandbox: Callable[..., Any]) -> None:
    sbx = write_sandbox("sage_200")
    engine = engine_for(sbx)
    t = Table("customers", MetaData(), autoload_with=engine)
    with engine.begin() as conn:
        many = conn.execute(
            insert(t),
            [
                {"reference": "SQA001", "name": "Alchemy One", "credit_limit": Decimal("10.50")},
                {"reference": "SQA002", "name": "Alchemy Two", "credit_limit": Decimal("20")},
            ],
        )
        assert many.rowcount == 2
        back = conn.execute(
            insert(t)
            .values(reference="SQA003", name="Alchemy Three")
            .returning(t.c.id, t.c.reference)
        ).one()
        assert back.reference == "SQA003" and isinstance(back.id, int)
        limits = conn.execute(
            select(t.c.reference, t.c.credit_limit)
            .where(t.c.reference.like("SQA%"))
            .order_by(t.c.reference)
        ).all()
    assert [tuple(r) for r in limits][:2] == [
        ("SQA001", Decimal("10.50")),
        ("SQA002", Decimal("20")),
    ]


def test_a_failed_statement_raises_the_dbapi_error_wrapped(
    start_sandbox: Callable[..., Any],
) -> None:
    from sqlalchemy.exc import ProgrammingError

    engine = engine_for(start_sandbox("sage_crm", rows=2))
    with engine.connect() as conn, pytest.raises(ProgrammingError) as raised:
        conn.execute(text("SELECT nope FROM company"))
    assert isinstance(raised.value.orig, sagesql.UnknownColumnError)


# -- pandas --------------------------------------------------------------------------------


def test_pandas_read_sql_gives_typed_columns(product_sandbox: Any) -> None:
    product, sbx = product_sandbox
    engine = engine_for(sbx)
    name = PRODUCTS[product][0]
    catalog = sagesql.connect(**sbx.client_properties()).client.catalog.table(name, product)
    frame = pd.read_sql(text(f"SELECT * FROM {name}"), engine)
    assert len(frame) == 12
    for column in catalog.columns:
        dtype = frame[column.name].dtype
        values = frame[column.name].dropna()
        if column.type == "DATETIME" and len(values) == len(frame):
            assert isinstance(dtype, pd.DatetimeTZDtype) and str(dtype.tz) == "UTC", column
        elif column.type == "BOOLEAN" and len(values) == len(frame):
            assert dtype == "bool", column
        elif column.type == "DECIMAL" and len(values) == len(frame):
            assert dtype == "float64", column  # pandas' coerce_float=True
    exact = pd.read_sql(
        select(Table(name, MetaData(), autoload_with=engine)), engine, coerce_float=False
    )
    decimals = [c.name for c in catalog.columns if c.type == "DECIMAL"]
    if decimals:
        values = exact[decimals[0]].dropna()
        assert len(values) and all(isinstance(v, Decimal) for v in values)


def test_pandas_read_sql_with_parameters(start_sandbox: Callable[..., Any]) -> None:
    sbx = start_sandbox("sage_200", rows=8, rate_limit_per_minute=0)
    engine = engine_for(sbx)
    frame = pd.read_sql(
        text("SELECT reference, balance FROM customers WHERE balance >= :low ORDER BY reference"),
        engine,
        params={"low": 0},
        coerce_float=False,
    )
    expected = sql_rows(
        sbx, "SELECT reference, balance FROM customers WHERE balance >= 0 ORDER BY reference"
    )
    assert [tuple(r) for r in frame.itertuples(index=False)] == expected


def test_pandas_to_sql_refuses_to_create_a_table(start_sandbox: Callable[..., Any]) -> None:
    sbx = start_sandbox("sage_accounting", rows=3)
    engine = engine_for(sbx)
    frame = pd.DataFrame({"name": ["a"]})
    with pytest.raises(NotSupportedError, match="does not create, alter or drop tables"):
        frame.to_sql("new_table", engine, index=False)
    with pytest.raises(NotSupportedError, match="if_exists='append'"):
        frame.to_sql("contacts", engine, index=False, if_exists="replace")
    with pytest.raises(ValueError, match="already exists"):
        frame.to_sql("contacts", engine, index=False)


def test_a_row_sage_refuses_raises_after_the_others_were_written(
    write_sandbox: Callable[..., Any],
) -> None:
    from sqlalchemy.exc import IntegrityError

    sbx = write_sandbox("sage_accounting")
    engine = engine_for(sbx)
    t = Table("contacts", MetaData(), autoload_with=engine)
    rows = [
        {"name": "Twin A", "contact_types": ["CUSTOMER"], "reference": "TWIN1"},
        {"name": "Twin B", "contact_types": ["CUSTOMER"], "reference": "TWIN1"},
    ]
    with engine.connect() as conn:
        with pytest.raises(IntegrityError, match=r"1 of 2 rows were not written \(1 were\)"):
            conn.execute(insert(t), rows)
        with pytest.raises(IntegrityError, match=r"row 1 failed: .*reference"):
            conn.execute(insert(t).values(rows[1]))
        written = conn.execute(select(t.c.name).where(t.c.reference == "TWIN1")).scalars()
        assert list(written) == ["Twin A"]


def test_pandas_to_sql_appends_rows_as_sagesql_inserts(start_sandbox: Callable[..., Any]) -> None:
    sbx = start_sandbox("sage_crm", rows=3, rate_limit_per_minute=0)
    engine = engine_for(sbx)
    frame = pd.DataFrame({"comp_name": ["Panda One", "Panda Two"], "comp_type": ["Customer"] * 2})
    assert frame.to_sql("company", engine, if_exists="append", index=False) == 2
    back = pd.read_sql(
        text("SELECT comp_name FROM company WHERE comp_name LIKE 'Panda%' ORDER BY comp_name"),
        engine,
    )
    assert list(back["comp_name"]) == ["Panda One", "Panda Two"]
