"""REPLICATE and CACHE in ``sagesql query``, and ``query --replica`` answering from the copy."""

from __future__ import annotations

import json
import os
import sqlite3
from datetime import datetime

import pytest
from replication_helpers import assert_same
from test_poll_helpers import connection_string
from typer.testing import CliRunner

from sagesql.cli.main import app
from sagesql.errors import ProgrammingError, UnknownColumnError
from sagesql.replication.statements import read
from sagesql.replication.sync import Replicated


def test_statements_read() -> None:
    assert read("REPLICATE contacts").table == Replicated("contacts", "contacts")
    assert read("replicate crm.accounts;").table == Replicated("accounts", "crm.accounts")
    statement = read(
        "REPLICATE big SELECT id, name FROM customers WHERE balance > 1000 AND name LIKE 'A%'"
    )
    assert statement.table == Replicated(
        "customers", "big", "balance > 1000 AND name LIKE 'A%'", ("id", "name")
    )
    assert not statement.full and read('CACHE "contacts"').full
    for bad in (
        "REPLICATE",
        "REPLICATE t SELECT * FROM a JOIN b ON a.id = b.id",
        "REPLICATE t SELECT count(*) FROM a",
        "REPLICATE t SELECT * FROM a ORDER BY id",
        "CACHE s.t",
        "REPLICATE t DELETE FROM a",
    ):
        with pytest.raises(ProgrammingError):
            read(bad)


def test_replicate_then_query_the_replica_with_the_same_sql(start_sandbox, tmp_path) -> None:
    sbx = start_sandbox("sage_200", rows=25, rate_limit_per_minute=0)
    url = f"sqlite:///{tmp_path}/copy.sqlite"
    env = {"SAGESQL_CONNECTION": connection_string(sbx, "sql")}
    runner = CliRunner()
    done = runner.invoke(
        app, ["query", "--replica", url, "-f", "json", "REPLICATE customers"], env=env
    )
    assert done.exit_code == 0, done.output
    (outcome,) = json.loads(done.stdout)
    assert outcome["table"] == "customers" and outcome["copied"] == 25
    assert outcome["status"] == "complete"
    assert_same(sbx, url, ["customers"])

    sql = "SELECT count(*) AS n, sum(balance > 0) AS owing FROM customers WHERE id <= ?"
    live = runner.invoke(app, ["query", "-f", "json", "--param", "1=10", sql], env=env)
    copy = runner.invoke(app, ["query", "--replica", url, "-f", "json", "--param", "1=10", sql])
    assert live.exit_code == copy.exit_code == 0, copy.output
    assert json.loads(copy.stdout) == json.loads(live.stdout)

    # A filtered projection into a table of its own; CACHE copies every row again.
    done = runner.invoke(
        app,
        ["query", "--replica", url, "-f", "json",
         "REPLICATE owing SELECT id, name FROM customers WHERE balance > 0"],
        env=env,
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    conn = sqlite3.connect(f"{tmp_path}/copy.sqlite")
    columns = [r[1] for r in conn.execute("PRAGMA table_info(owing)")]
    assert columns == ["id", "name", "date_time_updated"]
    (n,) = conn.execute("SELECT count(*) FROM owing").fetchone()
    (expected,) = conn.execute("SELECT count(*) FROM customers WHERE balance > 0").fetchone()
    assert n == expected
    # The replica's own table answers the same SQL, its columns typed as the source's.
    sql = "SELECT count(*) AS n, max(date_time_updated) AS last FROM owing WHERE id > 0"
    mine = runner.invoke(app, ["query", "--replica", url, "-f", "json", sql])
    assert mine.exit_code == 0, mine.output
    (row,) = json.loads(mine.stdout)
    assert row["n"] == expected and row["last"].endswith("Z")
    done = runner.invoke(app, ["query", "--replica", url, "-f", "json", "CACHE customers"], env=env)
    assert json.loads(done.stdout)[0]["copied"] == 25


def test_replica_statements_need_a_replica_and_queries_only(tmp_path) -> None:
    runner = CliRunner()
    done = runner.invoke(app, ["query", "REPLICATE contacts"])
    assert isinstance(done.exception, ProgrammingError)
    assert "--replica" in str(done.exception)
    url = f"sqlite:///{tmp_path}/none.sqlite"
    done = runner.invoke(app, ["query", "--replica", url, "SELECT 1"])
    assert "does not exist" in str(done.exception)
    sqlite3.connect(f"{tmp_path}/none.sqlite").close()
    done = runner.invoke(app, ["query", "--replica", url, "DELETE FROM contacts"])
    assert "only a query" in str(done.exception)


def test_unknown_columns_in_replicate_are_named() -> None:
    from sagesql.replication.sync import specs_for
    from sagesql.schemas.catalog import default_catalog

    with pytest.raises(UnknownColumnError, match="nmae"):
        specs_for([Replicated("customers", columns=("nmae",))], default_catalog(), "sage_200")


# The same SQL, online and from the replica: dates compared with literals in any ISO form,
# date-times ordered and returned, decimals and booleans, a join of a table with itself.
SAME_SQL = {
    "sage_accounting": ("contacts", "updated_at", "id"),
    "sage_200": ("customers", "date_time_updated", "id"),
    "sage_crm": ("company", "comp_updateddate", "comp_companyid"),
}


def _same_sql(table: str, updated: str, key: str, middle: datetime) -> list[str]:
    literals = [
        middle.strftime("%Y-%m-%dT%H:%M:%SZ"),
        middle.strftime("%Y-%m-%d %H:%M:%S"),
        middle.strftime("%Y-%m-%d"),
        middle.isoformat(),
    ]
    out = [
        f"SELECT max({updated}), min({updated}), count(*) FROM {table}",
        f"SELECT {key}, {updated} FROM {table} ORDER BY {updated} DESC, {key} LIMIT 5",
        f"SELECT * FROM {table} ORDER BY {key} LIMIT 3",
        f"SELECT count(*) FROM {table} a JOIN {table} b ON a.{key} = b.{key} "
        f"WHERE a.{updated} < '{literals[0]}'",
    ]
    for lit in literals:
        out += [
            f"SELECT count(*) FROM {table} WHERE {updated} >= '{lit}'",
            f"SELECT count(*) FROM {table} WHERE {updated} > '{lit}'",
            f"SELECT {key} FROM {table} WHERE {updated} BETWEEN '2000-01-01' AND '{lit}' "
            f"ORDER BY {key}",
        ]
    return out


@pytest.mark.parametrize("product", list(SAME_SQL))
def test_the_same_sql_answers_the_same_online_and_offline(start_sandbox, tmp_path, product):
    """Issue 19: ``query --replica`` (or Offline=True) answers the same SQL as Sage does,
    date comparisons included (the replica stores 'YYYY-MM-DD HH:MM:SS', a literal may be
    written '...T...Z': the engine's literal rewriting makes them the same instant)."""
    from replication_helpers import client

    from sagesql.engine.pipeline import run
    from sagesql.engine.replica import answer
    from sagesql.replication.runs import replicate

    table, updated, key = SAME_SQL[product]
    sbx = start_sandbox(product, rows=30, rate_limit_per_minute=0)
    url = f"sqlite:///{tmp_path}/copy.sqlite"
    with client(sbx) as c:
        assert all(o.complete for o in replicate(c, url, [table]))
        stamps = sorted(str(r[0]) for r in run(c, f"SELECT {updated} FROM {table}"))
        middle = datetime.fromisoformat(stamps[len(stamps) // 2].replace("Z", "+00:00"))
        statements = _same_sql(table, updated, key, middle)
        online = [list(run(c, sql)) for sql in statements]
    for sql, expected in zip(statements, online, strict=True):
        got = list(answer(url, sql))
        assert got == expected, sql
    # At least one comparison tells the forms apart (else the test could not fail).
    assert len({tuple(r) for rows in online[4:] for r in rows}) > 1


def test_offline_true_answers_from_the_replica_and_refuses_writes(start_sandbox, tmp_path):
    from replication_helpers import client

    import sagesql
    from sagesql.engine.pipeline import run
    from sagesql.replication.runs import replicate

    sbx = start_sandbox("sage_200", rows=20, rate_limit_per_minute=0)
    url = f"sqlite:///{tmp_path}/copy.sqlite"
    sql = (
        "SELECT id, name, date_time_updated, balance FROM customers "
        "WHERE date_time_updated >= ? ORDER BY date_time_updated, id"
    )
    with client(sbx) as c:
        assert all(o.complete for o in replicate(c, url, ["customers"]))
        online = sagesql.engine.dbapi.Connection(c)
        cursor = online.cursor().execute(sql, ["2025-01-01T00:00:00Z"])
        expected, description = cursor.fetchall(), cursor.description
        assert expected and list(run(c, "SELECT count(*) FROM customers")) == [(20,)]
    sbx.stop()  # nothing can be sent from here on: the replica answers alone
    with sagesql.connect(Product="Sage200", Offline="True", Replica=url) as conn:
        cursor = conn.cursor().execute(sql, ["2025-01-01T00:00:00Z"])
        assert cursor.fetchall() == expected
        assert cursor.description == description
        for write, message in (
            ("DELETE FROM customers WHERE id = 1", "only a query"),
            ("UPDATE customers SET name = 'x' WHERE id = 1", "only a query"),
            ("EXEC RefreshToken", "Offline"),
        ):
            with pytest.raises(sagesql.ProgrammingError, match=message):
                conn.cursor().execute(write)
    # SQLAlchemy's URL carries the same properties (the dialect connects through the DB-API).
    from urllib.parse import quote

    import sqlalchemy as sa

    engine = sa.create_engine(
        f"sagesql://?Product=Sage200&Offline=True&Replica={quote(url, safe='')}"
    )
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(sql, ("2025-01-01T00:00:00Z",)).fetchall()
        assert [tuple(r) for r in rows] == expected
    engine.dispose()
    # The default Product (SageAccounting) reads a Sage 200 copy as Sage 200's tables.
    with sagesql.connect(Offline=True, Replica=url) as conn:
        cursor = conn.cursor().execute(sql, ["2025-01-01T00:00:00Z"])
        assert cursor.fetchall() == expected
    with pytest.raises(sagesql.ConfigurationError, match="Offline=True needs Replica"):
        sagesql.connect(Product="Sage200", Offline=True)
    with pytest.raises(sagesql.ConfigurationError, match="Replica="):
        sagesql.connect(Product="Sage200", Offline=True, Replica="mysql://x/y")


def test_offline_true_on_the_command_line(start_sandbox, tmp_path):
    """A real ``sagesql`` process: Offline=True in the connection answers from the replica;
    a write fails in one line (no traceback), exit 1; the replica's password never shows."""
    import subprocess
    import sys

    sbx = start_sandbox("sage_crm", rows=15, rate_limit_per_minute=0)
    url = f"sqlite:///{tmp_path}/copy.sqlite"
    env = {**os.environ, "SAGESQL_CONNECTION": connection_string(sbx, "sql")}
    env.pop("SAGESQL_REPLICA", None)
    cli = [sys.executable, "-m", "sagesql.cli.main"]
    done = subprocess.run([*cli, "sync", "--to", url, "company"], env=env, capture_output=True)
    assert done.returncode == 0, done.stderr
    sql = "SELECT comp_companyid, comp_updateddate FROM company ORDER BY comp_updateddate LIMIT 4"
    live = subprocess.run([*cli, "query", "-f", "json", sql], env=env, capture_output=True)
    assert live.returncode == 0, live.stderr
    sbx.stop()
    offline = {"SAGESQL_CONNECTION": f"Product=SageCRM;Offline=True;Replica={url}"}
    env = {**env, **offline}
    copy = subprocess.run([*cli, "query", "-f", "json", sql], env=env, capture_output=True)
    assert copy.returncode == 0, copy.stderr
    assert json.loads(copy.stdout) == json.loads(live.stdout)
    write = subprocess.run(
        [*cli, "query", "DELETE FROM company WHERE comp_companyid = 1"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert write.returncode != 0
    assert write.stderr.count("\n") == 1 and "only a query" in write.stderr, write.stderr
    assert "Traceback" not in write.stderr
    refused = subprocess.run(
        [*cli, "sync", "--to", url, "company"], env=env, capture_output=True, text=True
    )
    assert refused.returncode != 0 and "sync reads Sage" in refused.stderr, refused.stderr
    secret = "postgresql://me:hunter2@127.0.0.1:1/none"
    env["SAGESQL_CONNECTION"] = f"Product=SageCRM;Offline=True;Replica={secret}"
    failed = subprocess.run([*cli, "query", "SELECT 1"], env=env, capture_output=True, text=True)
    assert failed.returncode != 0 and "hunter2" not in failed.stderr + failed.stdout
    assert "cannot be reached" in failed.stderr, failed.stderr


FILTERED = {
    "sage_accounting": ("contacts", "id", "reference"),
    "sage_200": ("customers", "id", "name"),
    "sage_crm": ("company", "comp_companyid", "comp_name"),
}


@pytest.mark.parametrize("product", list(FILTERED))
def test_a_replicated_select_keeps_only_the_rows_that_meet_it(start_sandbox, tmp_path, product):
    """REPLICATE t SELECT ... WHERE: a row updated so that it no longer meets the WHERE
    leaves the replica on the next run (Accounting included: its window reads the rows
    that stopped meeting it, flagged); a schema-qualified name reads back in SQLite too."""
    from replication_helpers import client
    from test_poll_helpers import frozen_at, utc

    from sagesql.engine.pipeline import run
    from sagesql.engine.replica import answer
    from sagesql.replication.runs import run_statement

    table, key, column = FILTERED[product]
    sbx = start_sandbox(product, rows=30, rate_limit_per_minute=0)
    url = f"sqlite:///{tmp_path}/copy.sqlite"
    frozen_at(sbx, utc(2026, 1, 1, 12, 0, 0))
    with client(sbx) as c:
        first = list(run(c, f"SELECT {key}, {column} FROM {table} ORDER BY {key} LIMIT 2"))
        where = f"{column} IN ('{first[0][1]}', '{first[1][1]}') OR {column} LIKE 'kept%'"
        statement = f"REPLICATE mine.sel SELECT * FROM {table} WHERE {where}"

        def api_keys() -> set:
            return {r[0] for r in run(c, f"SELECT {key} FROM {table} WHERE {where}")}

        def replica_keys() -> set:
            return {r[0] for r in answer(url, f"SELECT {key} FROM mine.sel")}

        assert run_statement(c, url, statement)[1]
        assert replica_keys() == api_keys() == {first[0][0], first[1][0]}
        frozen_at(sbx, utc(2026, 1, 1, 12, 0, 20))
        list(run(c, f"UPDATE {table} SET {column} = 'moved away' WHERE {key} = ?", [first[0][0]]))
        list(run(c, f"UPDATE {table} SET {column} = 'kept 1' WHERE {key} = ?", [first[-1][0]]))
        frozen_at(sbx, utc(2026, 1, 1, 12, 0, 40))
        result, complete = run_statement(c, url, statement)
        (outcome,) = list(result)
        assert complete and outcome[3] == 1, outcome  # the row that left, counted as deleted
        assert replica_keys() == api_keys() == {first[1][0]}


def test_poll_refuses_an_offline_connection(tmp_path) -> None:
    """Offline answers from a copy: a poller reading it would report no real change."""
    from test_poll_helpers import poll_config

    from sagesql.activities.polling.runner import open_session
    from sagesql.connector.properties import validate
    from sagesql.errors import ConfigurationError

    settings = validate({"Product": "Sage200", "Offline": "true", "Replica": "sqlite:///x.db"})
    with pytest.raises(ConfigurationError, match="poll reads Sage"):
        open_session(poll_config(tmp_path, ["customers"]), settings)


def test_explain_on_the_replica_shows_the_sql_it_runs(start_sandbox, tmp_path) -> None:
    from replication_helpers import sync

    sbx = start_sandbox("sage_200", rows=5, rate_limit_per_minute=0)
    url = f"sqlite:///{tmp_path}/copy.sqlite"
    assert sync(sbx, url, ["customers"])[0].complete
    sbx.stop()
    sql = "SELECT id FROM customers WHERE date_time_updated >= '2025-06-01T09:00:00Z'"
    runner = CliRunner()
    for args in (
        ["query", "--replica", url, "--explain", sql],
        ["query", "-c", f"Product=Sage200;Offline=True;Replica={url}", "--explain", sql],
    ):
        done = runner.invoke(app, args, env={"SAGESQL_CONNECTION": ""})
        assert done.exit_code == 0, done.output
        assert "nothing is sent to Sage" in done.stdout
        assert "'2025-06-01 09:00:00'" in done.stdout  # the literal in the stored form


def test_sagesql_replica_in_the_environment_names_the_replica(start_sandbox, tmp_path) -> None:
    """SAGESQL_REPLICA is --to, --replica and the Replica property at once (it was once
    read as an unknown connection property, failing every command that connects)."""
    sbx = start_sandbox("sage_crm", rows=12, rate_limit_per_minute=0)
    url = f"sqlite:///{tmp_path}/copy.sqlite"
    env = {"SAGESQL_CONNECTION": connection_string(sbx, "sql"), "SAGESQL_REPLICA": url}
    runner = CliRunner()
    done = runner.invoke(app, ["sync", "company"], env=env)
    assert done.exit_code == 0, done.output
    sbx.stop()
    done = runner.invoke(app, ["query", "-f", "json", "SELECT count(*) AS n FROM company"], env=env)
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout) == [{"n": 12}]
