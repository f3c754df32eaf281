"""REPLICATE and CACHE in ``sagesql query``, and ``query --replica`` answering from the copy."""

from __future__ import annotations

import json
import sqlite3

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
