"""Replication as a demanding user meets it: the CLI in real processes, real SQLite files,
a real PostgreSQL server, the sandbox over HTTP.

- the replica file holds customer data: created 0600;
- a replica table synced from one product is never overwritten by another's (the same
  name, ``customers``, exists in Sage Accounting and Sage 200);
- a replica that is a folder, not a database, or lacks the table asked for: one line
  naming the problem and the fix, no traceback;
- a PostgreSQL server that never answers: a bounded wait, not a hang;
- PostgreSQL answers as online: booleans compared with literals, LIKE, dates, computed
  decimals.
"""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from replication_helpers import client
from test_poll_helpers import connection_string

from sagesql.engine.pipeline import run

SAGESQL = shutil.which("sagesql") or str(Path(sys.executable).with_name("sagesql"))


def _cli(args: list[str], *, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
    environment = {
        "PATH": str(Path(SAGESQL).parent) + os.pathsep + os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/tmp"),
        **env,
    }
    return subprocess.run(
        [SAGESQL, *args], capture_output=True, text=True, timeout=timeout, env=environment
    )


def _one_line_error(done: subprocess.CompletedProcess) -> str:
    assert done.returncode not in (0, None), done.stdout
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    return lines[0]


def test_a_new_sqlite_replica_is_readable_by_its_owner_only(start_sandbox, tmp_path) -> None:
    sbx = start_sandbox("sage_crm", rows=5, rate_limit_per_minute=0)
    path = tmp_path / "copy.sqlite"
    done = _cli(
        ["sync", "--to", f"sqlite:///{path}", "company"],
        SAGESQL_CONNECTION=connection_string(sbx, "cli"),
    )
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    for extra in (path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if extra.exists():
            assert stat.S_IMODE(extra.stat().st_mode) == 0o600


def test_another_products_table_of_the_same_name_is_refused(start_sandbox, tmp_path) -> None:
    """Sage Accounting and Sage 200 both have ``customers``: a Sage 200 sync into a replica
    holding Accounting's customers must not merge them (it upserted Sage 200's rows into
    Accounting's table and deleted Accounting's as 'gone')."""
    accounting = start_sandbox("sage_accounting", rows=6, rate_limit_per_minute=0)
    sage200 = start_sandbox("sage_200", rows=6, rate_limit_per_minute=0)
    path = tmp_path / "copy.sqlite"
    url = f"sqlite:///{path}"
    done = _cli(
        ["sync", "--to", url, "customers"],
        SAGESQL_CONNECTION=connection_string(accounting, "acc"),
    )
    assert done.returncode == 0, done.stderr
    conn = sqlite3.connect(path)
    before = conn.execute("SELECT * FROM customers ORDER BY id").fetchall()
    conn.close()
    assert before
    done = _cli(
        ["sync", "--to", url, "customers"],
        SAGESQL_CONNECTION=connection_string(sage200, "s200"),
    )
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert "SageAccounting's customers" in done.stderr, done.stderr
    conn = sqlite3.connect(path)
    try:
        after = conn.execute("SELECT * FROM customers ORDER BY id").fetchall()
        (product,) = conn.execute(
            "SELECT product FROM _sagesql_sync WHERE name = 'customers'"
        ).fetchone()
    finally:
        conn.close()
    assert after == before
    assert product == "sage_accounting"


def test_a_replica_that_is_no_database_is_one_line(tmp_path) -> None:
    folder = tmp_path / "folder"
    folder.mkdir()
    line = _one_line_error(_cli(["query", "--replica", f"sqlite:///{folder}", "SELECT 1"]))
    assert "not a SQLite" in line or "folder" in line, line
    junk = tmp_path / "junk.sqlite"
    junk.write_text("not a database")
    line = _one_line_error(
        _cli(["query", "--replica", f"sqlite:///{junk}", "SELECT count(*) FROM contacts"])
    )
    assert "not a SQLite database" in line and "check the statement" not in line, line


def test_a_table_the_replica_lacks_names_the_sync_that_copies_it(start_sandbox, tmp_path) -> None:
    sbx = start_sandbox("sage_crm", rows=3, rate_limit_per_minute=0)
    url = f"sqlite:///{tmp_path}/copy.sqlite"
    done = _cli(["sync", "--to", url, "company"], SAGESQL_CONNECTION=connection_string(sbx, "c"))
    assert done.returncode == 0, done.stderr
    line = _one_line_error(_cli(["query", "--replica", url, "SELECT * FROM person"]))
    assert "person" in line and "sagesql sync" in line, line


def test_sync_names_an_unknown_table_without_speaking_of_a_poll_configuration(
    start_sandbox, tmp_path
) -> None:
    sbx = start_sandbox("sage_200", rows=3, rate_limit_per_minute=0)
    done = _cli(
        ["sync", "--to", f"sqlite:///{tmp_path}/copy.sqlite", "sales_orders"],
        SAGESQL_CONNECTION=connection_string(sbx, "s"),
    )
    line = _one_line_error(done)
    assert "sales_orders" in line and "sop_orders" in line, line
    assert "poll configuration" not in line, line


@pytest.fixture
def silent_server() -> Any:
    """A TCP port that accepts connections and never answers (a hung PostgreSQL)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for s in held:
        s.close()
    server.close()


def test_a_postgresql_server_that_never_answers_is_a_bounded_wait(silent_server) -> None:
    pytest.importorskip("psycopg")
    url = f"postgresql://someone:Hush3dPw@127.0.0.1:{silent_server}/replica"
    for args in (
        ["query", "--replica", url, "SELECT 1"],
        ["sync", "--status", "--to", url],
    ):
        began = time.monotonic()
        done = _cli(args, timeout=90)
        assert time.monotonic() - began < 40
        line = _one_line_error(done)
        assert "Hush3dPw" not in done.stderr + done.stdout
        assert "replica" in line, line


def _online(sbx: Any, sql: str) -> list[tuple[Any, ...]]:
    with client(sbx, "online") as c:
        result = run(c, sql)
        try:
            return list(result)
        finally:
            result.close()


# Statements whose answers from the replica differed from online (compared by repr: 120.00
# is not 120.0, 9325 not 9325.0). PostgreSQL: booleans compared with literals (stored 0/1
# in the statement, 'boolean = integer' there), LIKE (case sensitive there), DATE columns
# (date objects), computed decimals (Decimal, not float). Both: money's scale (120.0 for
# 120.00, the places the API wrote), a whole sum (9325.0: DECIMAL was REAL in SQLite).
SAME_SQL = [
    "SELECT id FROM sales_invoices WHERE editable = true ORDER BY id",
    "SELECT id FROM sales_invoices WHERE editable = 1 ORDER BY id",
    "SELECT id FROM sales_invoices WHERE editable = 'false' ORDER BY id",
    "SELECT id FROM sales_invoices WHERE editable IN (true) ORDER BY id",
    "SELECT name FROM contacts WHERE name LIKE '%ltd%' ORDER BY name",
    "SELECT name FROM contacts WHERE name NOT LIKE 'a%' ORDER BY name",
    "SELECT id, date, due_date FROM sales_invoices WHERE date >= '2025-01-01' ORDER BY date, id",
    "SELECT max(date), min(date) FROM sales_invoices",
    "SELECT sum(total_amount), avg(total_amount) FROM sales_invoices",
    "SELECT contact_id, sum(total_amount) FROM sales_invoices GROUP BY contact_id ORDER BY 1",
    "SELECT id, balance * 2 FROM contacts ORDER BY id",
    "SELECT id, total_amount FROM sales_invoices ORDER BY total_amount, id",
    "SELECT min(total_amount), max(net_amount) FROM sales_invoices",
    "SELECT s.id, s.total_amount, c.balance FROM sales_invoices s "
    "JOIN contacts c ON c.id = s.contact_id ORDER BY s.id",
    "SELECT sales_invoice_id, id, quantity, unit_price, net_amount FROM sales_invoice_lines "
    "ORDER BY sales_invoice_id, id",
    "SELECT sales_invoice_id, sum(net_amount) FROM sales_invoice_lines GROUP BY 1 ORDER BY 1",
]


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_the_replica_answers_as_online_to_the_repr(start_sandbox, tmp_path, kind) -> None:
    import uuid

    from sagesql.engine.replica import answer
    from sagesql.replication.runs import replicate

    admin = None
    if kind == "postgresql":
        from test_replication_postgres import _admin

        admin = _admin()
        name = f"sagesql_review_{uuid.uuid4().hex[:10]}"
        admin.execute(f'CREATE DATABASE "{name}"')
        url = "postgresql://postgres@127.0.0.1:5432/" + name
    else:
        url = f"sqlite:///{tmp_path}/copy.sqlite"
    try:
        sbx = start_sandbox("sage_accounting", rows=40, rate_limit_per_minute=0)
        with client(sbx) as c:
            assert all(o.complete for o in replicate(c, url, ["contacts", "sales_invoices"]))
        for sql in SAME_SQL:
            expected = _online(sbx, sql)
            got = list(answer(url, sql))
            assert [tuple(map(repr, r)) for r in got] == [tuple(map(repr, r)) for r in expected], (
                sql
            )
    finally:
        if admin is not None:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.close()


def test_a_replicated_select_that_changes_is_copied_again(start_sandbox, tmp_path) -> None:
    """REPLICATE big SELECT id, name ... then SELECT id, name, balance with a wider WHERE:
    the rows already copied got the new column empty, and rows meeting only the new WHERE
    were missing unless they had changed since (the run read the window only)."""
    sbx = start_sandbox("sage_200", rows=40, rate_limit_per_minute=0)
    url = f"sqlite:///{tmp_path}/copy.sqlite"
    env = {"SAGESQL_CONNECTION": connection_string(sbx, "cli")}
    narrow = "REPLICATE big SELECT id, name FROM customers WHERE balance > 2000"
    wide = "REPLICATE big SELECT id, name, balance FROM customers WHERE balance > 0"
    for statement in (narrow, wide):
        done = _cli(["query", "--replica", url, statement], **env)
        assert done.returncode == 0, done.stderr
    sql = "SELECT id, name, balance FROM customers WHERE balance > 0 ORDER BY id"
    expected = _online(sbx, sql)
    done = _cli(
        ["query", "--replica", url, "-f", "csv", "SELECT id, name, balance FROM big ORDER BY id"]
    )
    assert done.returncode == 0, done.stderr
    got = [line.split(",") for line in done.stdout.splitlines()[1:]]
    assert [(int(i), n, b) for i, n, b in got] == [(i, n, str(b)) for i, n, b in expected]


def test_sync_again_without_tables_keeps_the_replicas_own_tables(start_sandbox, tmp_path) -> None:
    """README: ``sagesql sync --to URL`` again reads only what changed; it copied every
    table of the product instead, and left REPLICATE's tables (other names) behind."""
    sbx = start_sandbox("sage_crm", rows=8, rate_limit_per_minute=0)
    url = f"sqlite:///{tmp_path}/copy.sqlite"
    env = {"SAGESQL_CONNECTION": connection_string(sbx, "cli")}
    done = _cli(["sync", "--to", url, "company"], **env)
    assert done.returncode == 0, done.stderr
    statement = "REPLICATE named SELECT pers_personid, pers_lastname FROM person"
    done = _cli(["query", "--replica", url, statement], **env)
    assert done.returncode == 0, done.stderr
    done = _cli(["sync", "--to", url], **env)
    assert done.returncode == 0, done.stderr
    synced = sorted(line.split(":")[0] for line in done.stderr.splitlines())
    assert synced == ["company", "named"], done.stderr
    assert "copied again" not in done.stderr
    conn = sqlite3.connect(tmp_path / "copy.sqlite")
    try:
        columns = [r[1] for r in conn.execute("PRAGMA table_info(named)")]
    finally:
        conn.close()
    assert "pers_firstname" not in columns and "pers_lastname" in columns


def test_a_password_in_the_urls_query_never_shows(start_sandbox, tmp_path) -> None:
    """libpq reads ``?password=`` as well as ``user:password@``: messages naming the
    replica (a table it lacks, --explain, a bad scheme) showed the first in full."""
    import uuid

    from test_replication_postgres import _admin

    admin = _admin()
    name = f"sagesql_review_{uuid.uuid4().hex[:10]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql://postgres@127.0.0.1:5432/{name}?password=Qu3rySecret"
    try:
        sbx = start_sandbox("sage_crm", rows=3, rate_limit_per_minute=0)
        env = {"SAGESQL_CONNECTION": connection_string(sbx, "cli")}
        done = _cli(["sync", "--to", url, "company"], **env)
        assert done.returncode == 0, done.stderr
        runs = [
            _cli(["query", "--replica", url, "SELECT * FROM person"]),
            _cli(["query", "--replica", url, "--explain", "SELECT * FROM company"]),
            _cli(["query", "--replica", "mysql" + url[10:], "SELECT 1"]),
            _cli(["sync", "--status", "--to", url]),
        ]
        for done in runs:
            assert "Qu3rySecret" not in done.stdout + done.stderr, done.stdout + done.stderr
        assert "password=***" in runs[0].stderr + runs[1].stdout
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def test_status_of_a_postgres_database_without_a_replica_only_reads() -> None:
    """``sync --status`` created ``_sagesql_sync`` in whatever database it was pointed at
    (and failed for a role that may only read)."""
    import uuid

    from test_replication_postgres import _admin

    admin = _admin()
    name = f"sagesql_review_{uuid.uuid4().hex[:10]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        done = _cli(["sync", "--status", "--to", f"postgresql://postgres@127.0.0.1:5432/{name}"])
        assert done.returncode == 0, done.stderr
        assert "no table has been synced" in done.stderr
        psycopg = pytest.importorskip("psycopg")
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{name}") as conn:
            (found,) = conn.execute("SELECT to_regclass('_sagesql_sync')").fetchone()
        assert found is None
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def test_postgres_orders_text_as_online_whatever_the_databases_collation(start_sandbox) -> None:
    """Online text is SQLite's (byte order: 'Banana' before 'apple'); a PostgreSQL
    database with a language's collation ordered and compared the replica's otherwise."""
    import uuid

    from test_replication_postgres import _admin

    from sagesql.engine.replica import answer
    from sagesql.replication.runs import replicate

    admin = _admin()
    name = f"sagesql_review_{uuid.uuid4().hex[:10]}"
    admin.execute(
        f'CREATE DATABASE "{name}" TEMPLATE template0 LOCALE_PROVIDER icu '
        "ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'"
    )
    url = f"postgresql://postgres@127.0.0.1:5432/{name}"
    try:
        sbx = start_sandbox("sage_crm", rows=5, rate_limit_per_minute=0)
        with client(sbx, "writer") as c:
            for company in ("apple co", "Banana Ltd", "a b", "ab", "_under"):
                list(run(c, "INSERT INTO company (comp_name) VALUES (?)", [company]))
        with client(sbx) as c:
            assert all(o.complete for o in replicate(c, url, ["company"]))
        for sql in (
            "SELECT comp_name FROM company ORDER BY comp_name, comp_companyid",
            "SELECT comp_name FROM company WHERE comp_name < 'a' ORDER BY comp_companyid",
            "SELECT max(comp_name), min(comp_name) FROM company",
        ):
            assert list(answer(url, sql)) == _online(sbx, sql), sql
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def test_deletions_reach_the_replica_where_the_api_cannot_list_ids(start_sandbox, tmp_path):
    """Accounting's sales_quotes has no deleted_since and cannot be read by key: a deleted
    quote stayed in the replica for ever ('deletions not detected')."""
    from replication_helpers import sync

    sbx = start_sandbox("sage_accounting", rows=8, rate_limit_per_minute=0)
    url = f"sqlite:///{tmp_path}/copy.sqlite"
    assert all(o.complete for o in sync(sbx, url, ["sales_quotes"]))
    (gone,) = _online(sbx, "SELECT id FROM sales_quotes ORDER BY id LIMIT 1")[0]
    with client(sbx, "writer") as c:
        list(run(c, "DELETE FROM sales_quotes WHERE id = ?", [gone]))
    (outcome,) = sync(sbx, url, ["sales_quotes"])
    assert outcome.complete, outcome.error
    conn = sqlite3.connect(tmp_path / "copy.sqlite")
    try:
        held = sorted(r[0] for r in conn.execute("SELECT id FROM sales_quotes"))
    finally:
        conn.close()
    assert held == sorted(r[0] for r in _online(sbx, "SELECT id FROM sales_quotes"))
    # Nothing changed: one count, no second copy.
    (outcome,) = sync(sbx, url, ["sales_quotes"])
    assert outcome.complete and "whole copy" not in outcome.summary(), outcome.summary()
