"""sagesql sync against the sandbox: the replica equals the API's rows, by key, after every run.

For each product: the initial copy; then creates, updates and deletes, several in one
second (the clock frozen, so they share the watermark's second, with no lookback to
hide a ``>`` that should be ``>=``); then an incremental run; and an idle run that
costs one request per table (two where deletions are polled). Line tables follow their
parent; new catalog columns are added to an existing replica; ``--status`` and the
exit code of a partial run are the CLI's.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
import requests
from replication_helpers import assert_same, client, sync
from test_poll_helpers import connection_string, frozen_at, request_log, utc

from sagesql.engine.pipeline import run
from sagesql.replication.shapes import shape_of
from sagesql.replication.targets import open_target

T0 = utc(2026, 1, 1, 12, 0, 0)
T1 = utc(2026, 1, 1, 12, 0, 10)
NO_LOOKBACK = {"lookback": timedelta(0)}

# product: (tables synced, tables compared with the API)
CASES: dict[str, tuple[list[str], list[str]]] = {
    "sage_accounting": (
        ["contacts", "sales_invoices"],
        ["contacts", "sales_invoices", "sales_invoice_lines"],
    ),
    "sage_200": (["customers", "suppliers"], ["customers", "suppliers"]),
    "sage_crm": (["company", "person"], ["company", "person"]),
}  # fmt: skip


def _sql(sbx: Any, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    with client(sbx, "writer") as c:
        result = run(c, sql, params)
        try:
            return list(result)
        finally:
            result.close()


def _keys(sbx: Any, table: str, key: str, n: int) -> list[Any]:
    return [r[0] for r in _sql(sbx, f'SELECT "{key}" FROM "{table}" ORDER BY "{key}" LIMIT {n}')]


def _changes(sbx: Any, round_: int) -> None:
    """Creates, updates and deletes, all within the frozen second."""
    p = sbx.product
    if p == "sage_accounting":
        _sql(sbx, f"INSERT INTO contacts (name, contact_types) VALUES ('New {round_}', "
             "'[\"CUSTOMER\"]'), ('Other %s', '[\"VENDOR\"]')" % round_)  # fmt: skip
        ids = _keys(sbx, "contacts", "id", 6)
        _sql(
            sbx,
            "UPDATE contacts SET reference = ? WHERE id IN (?, ?)",
            [f"R{round_}", ids[0], ids[1]],
        )
        _sql(sbx, "DELETE FROM contacts WHERE id = ?", [ids[2]])
        unpaid = _sql(sbx, "SELECT id FROM sales_invoices WHERE status_id = 'UNPAID' LIMIT 1")
        _sql(sbx, f"EXEC VoidSalesInvoice @Id = '{unpaid[0][0]}', @VoidReason = 'r{round_}'")
        draft = _sql(sbx, "SELECT id FROM sales_invoices WHERE status_id = 'DRAFT' LIMIT 1")
        _sql(sbx, "DELETE FROM sales_invoices WHERE id = ?", [draft[0][0]])
    elif p == "sage_200":
        _sql(sbx, "INSERT INTO customers (reference, name) VALUES (?, 'New'), (?, 'Other')",
             [f"NEW{round_}A", f"NEW{round_}B"])  # fmt: skip
        ids = _keys(sbx, "customers", "id", 6)
        _sql(
            sbx, "UPDATE customers SET name = ? WHERE id IN (?, ?)", [f"N{round_}", ids[0], ids[1]]
        )
        _sql(sbx, "DELETE FROM customers WHERE id = ?", [ids[2]])
        suppliers = _keys(sbx, "suppliers", "id", 3)
        _sql(sbx, "UPDATE suppliers SET name = ? WHERE id = ?", [f"S{round_}", suppliers[0]])
    else:
        _sql(sbx, "INSERT INTO company (comp_name) VALUES (?), (?)", [f"New {round_}", "Other"])
        ids = _keys(sbx, "company", "comp_companyid", 6)
        _sql(sbx, "UPDATE company SET comp_name = ? WHERE comp_companyid IN (?, ?)",
             [f"C{round_}", ids[0], ids[1]])  # fmt: skip
        _sql(sbx, "DELETE FROM company WHERE comp_companyid = ?", [ids[2]])
        people = _keys(sbx, "person", "pers_personid", 3)
        _sql(sbx, "DELETE FROM person WHERE pers_personid = ?", [people[0]])


def _api_requests(sbx: Any) -> int:
    """Requests for the tables: not the login, nor Sage 200's /sites (once a connection,
    to find the site and company when the connection does not name them)."""
    log = request_log(sbx)
    return len(
        [r for r in log if not r["path"].startswith("/oauth") and not r["path"].endswith("/sites")]
    )


@pytest.mark.parametrize("product", list(CASES))
def test_replica_equals_the_api_after_every_run(start_sandbox, tmp_path, product) -> None:
    sbx = start_sandbox(product, rows=40, rate_limit_per_minute=0)
    tables, compared = CASES[product]
    url = f"sqlite:///{tmp_path}/replica.sqlite"
    frozen_at(sbx, T0)
    outcomes = sync(sbx, url, tables, **NO_LOOKBACK)
    assert all(o.complete for o in outcomes), [o.summary() for o in outcomes]
    assert all(o.copied > 0 for o in outcomes)
    assert_same(sbx, url, compared)

    for round_ in (1, 2):
        # Changes in the very second the last run's watermark stands at.
        _changes(sbx, round_)
        outcomes = sync(sbx, url, tables, **NO_LOOKBACK)
        assert all(o.complete and not o.copied for o in outcomes), [o.summary() for o in outcomes]
        assert_same(sbx, url, compared)
        frozen_at(sbx, T1 + timedelta(seconds=round_))

    # Nothing changed: one request per table, two where deletions are polled.
    request_log(sbx, clear=True)
    outcomes = sync(sbx, url, tables)
    assert all(o.complete for o in outcomes)
    assert _api_requests(sbx) == 2 * len(tables), request_log(sbx)
    assert_same(sbx, url, compared)


def test_late_visible_rows_are_caught_by_the_lookback(start_sandbox, tmp_path) -> None:
    sbx = start_sandbox("sage_200", rows=20, rate_limit_per_minute=0)
    url = f"sqlite:///{tmp_path}/replica.sqlite"
    frozen_at(sbx, T0)
    sync(sbx, url, ["customers"])
    requests.post(sbx.url + "/_sandbox/lag", json={"seconds": 30}, timeout=10)
    _sql(
        sbx,
        "UPDATE customers SET name = 'late' WHERE id = ?",
        [_keys(sbx, "customers", "id", 1)[0]],
    )
    frozen_at(sbx, T0 + timedelta(seconds=5))
    sync(sbx, url, ["customers"])  # the change is not visible yet: the replica cannot have it
    frozen_at(sbx, T0 + timedelta(seconds=60))  # visible now, behind the watermark
    sync(sbx, url, ["customers"])
    assert_same(sbx, url, ["customers"])


def test_lines_follow_their_invoice(start_sandbox, tmp_path) -> None:
    sbx = start_sandbox("sage_accounting", rows=40, rate_limit_per_minute=0)
    url = f"sqlite:///{tmp_path}/replica.sqlite"
    sync(sbx, url, ["sales_invoices"])
    conn = sqlite3.connect(f"{tmp_path}/replica.sqlite")
    (lines,) = conn.execute("SELECT count(*) FROM sales_invoice_lines").fetchone()
    assert lines > 0
    victim = _sql(sbx, "SELECT id FROM sales_invoices WHERE status_id = 'DRAFT' LIMIT 1")[0][0]
    _sql(sbx, "DELETE FROM sales_invoices WHERE id = ?", [victim])
    sync(sbx, url, ["sales_invoices"])
    left = conn.execute(
        "SELECT count(*) FROM sales_invoice_lines WHERE sales_invoice_id = ?", [victim]
    ).fetchone()
    assert left == (0,)
    indexes = {r[1] for r in conn.execute("PRAGMA index_list(sales_invoice_lines)")}
    assert any("sales_invoice_id" in i for i in indexes), indexes
    assert_same(sbx, url, ["sales_invoices", "sales_invoice_lines"])


def test_new_catalog_columns_are_added_never_dropped(start_sandbox, tmp_path) -> None:
    sbx = start_sandbox("sage_200", rows=5, rate_limit_per_minute=0)
    url = f"sqlite:///{tmp_path}/replica.sqlite"
    sync(sbx, url, ["customers"])
    conn = sqlite3.connect(f"{tmp_path}/replica.sqlite")
    conn.execute('ALTER TABLE customers DROP COLUMN "website"')  # an older schema's replica
    conn.execute('ALTER TABLE customers ADD COLUMN "mine" TEXT')  # a column of the user's own
    conn.commit()
    outcomes = sync(sbx, url, ["customers"], full=True)
    assert "website" in outcomes[0].summary()
    columns = {r[1] for r in conn.execute("PRAGMA table_info(customers)")}
    assert {"website", "mine"} <= columns
    assert_same(sbx, url, ["customers"])


def test_target_tables_have_types_key_and_indexes(tmp_path) -> None:
    from sagesql.schemas.catalog import default_catalog

    target = open_target(f"sqlite:///{tmp_path}/t.sqlite")
    table = default_catalog().table("contacts", "sage_accounting")
    target.ensure(shape_of(table))
    conn = sqlite3.connect(f"{tmp_path}/t.sqlite")
    info = {r[1]: (r[2], r[5]) for r in conn.execute("PRAGMA table_info(contacts)")}
    assert info["id"] == ("TEXT", 1)
    assert info["credit_limit"][0] == "NUMERIC" and info["system"][0] == "INTEGER"
    indexes = [r[1] for r in conn.execute("PRAGMA index_list(contacts)")]
    assert any("updated_at" in i for i in indexes)
    target.close()


def test_cli_sync_status_and_since(start_sandbox, tmp_path) -> None:
    from typer.testing import CliRunner

    from sagesql.cli.main import app

    sbx = start_sandbox("sage_crm", rows=10, rate_limit_per_minute=0)
    url = f"sqlite:///{tmp_path}/replica.sqlite"
    env = {"SAGESQL_CONNECTION": connection_string(sbx, "cli")}
    runner = CliRunner()
    done = runner.invoke(app, ["sync", "--to", url, "company"], env=env)
    assert done.exit_code == 0, done.output
    assert "company: 10 copied" in done.output
    # A table started --since now copies no old rows.
    done = runner.invoke(
        app, ["sync", "--to", url, "person", "--since", "2099-01-01T00:00:00Z"], env=env
    )
    assert done.exit_code == 0, done.output
    status = runner.invoke(app, ["sync", "--status", "--to", url], env=env)
    assert status.exit_code == 0, status.output
    lines = [line.split("\t") for line in status.stdout.splitlines()]
    assert lines[0] == ["table", "rows", "last sync", "position", "lag", "error", "ids compared"]
    by_table = {line[0]: line for line in lines[1:]}
    assert by_table["company"][1] == "10" and by_table["company"][3].startswith("changes since")
    assert by_table["company"][6].endswith(" ago")  # the whole copy compared every id
    assert by_table["person"][1] == "0" and by_table["person"][6].endswith(" ago")
    missing = runner.invoke(app, ["sync", "--status", "--to", f"sqlite:///{tmp_path}/nope.sqlite"])
    assert type(missing.exception).__name__ == "ConfigurationError"  # exit 2 via cli.main.run


def test_a_bad_target_url_is_one_line(tmp_path) -> None:
    from sagesql.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="sqlite:///"):
        open_target("mysql://x/y")
    with pytest.raises(ConfigurationError, match="folder"):
        open_target(f"sqlite:///{tmp_path}/no/such/dir/r.sqlite")


def test_position_is_json_and_describes_itself() -> None:
    from sagesql.replication.state import SyncState

    state = SyncState("t", "t", "sage_200", cursor=json.dumps({"phase": "copy", "ck": 40}))
    assert state.describe_position() == "copy under way, after key 40"
    assert replace(state, cursor=None, watermark="2026-01-01T00:00:00Z").describe_position() == (
        "changes since 2026-01-01T00:00:00Z"
    )


def test_one_sync_at_a_time_per_replica(start_sandbox, tmp_path) -> None:
    from sagesql.errors import OperationalError
    from sagesql.replication.runs import replicate

    sbx = start_sandbox("sage_crm", rows=5, rate_limit_per_minute=0)
    url = f"sqlite:///{tmp_path}/replica.sqlite"
    holder = open_target(url)
    try:
        with (
            holder.lock(),
            client(sbx) as c,
            pytest.raises(OperationalError, match="another sync is writing"),
        ):
            replicate(c, url, ["company"])
    finally:
        holder.close()
    with client(sbx) as c:
        (outcome,) = replicate(c, url, ["company"])
    assert outcome.complete and outcome.rows == 5


def test_a_paged_copy_with_deletions_during_it_is_read_again(start_sandbox, tmp_path) -> None:
    """Accounting pages by offset: rows deleted from the first page while the second is
    read shift a row past the page boundary. The tombstones read after the copy show a
    deletion since it began, so the copy is read again (after a pause) and nothing is lost."""
    from test_poll_helpers import accounting_keys

    from sagesql.replication.sync import Replicated, Replicator, specs_for

    sbx = start_sandbox("sage_accounting", rows=450, rate_limit_per_minute=0)
    frozen_at(sbx, T0)
    keys = accounting_keys(sbx, "contacts")
    gone = keys[:10]
    url = f"sqlite:///{tmp_path}/replica.sqlite"
    answers = {"n": 0}

    def delete_mid_read(response: Any, *args: Any, **kwargs: Any) -> None:
        if response.status_code == 200 and "/contacts?" in response.url:
            answers["n"] += 1
            if answers["n"] == 1:
                for key in gone:
                    token = sbx.token()["access_token"]
                    requests.delete(
                        f"{sbx.base_url}/contacts/{key}",
                        headers={"Authorization": f"Bearer {token}"},
                        timeout=10,
                    )

    pauses: list[float] = []

    def pause(seconds: float) -> None:  # the server's clock moves on instead
        pauses.append(seconds)
        frozen_at(sbx, T1 + timedelta(seconds=10 * len(pauses)))

    with client(sbx) as c:
        c.transport.session.hooks["response"].append(delete_mid_read)
        specs = specs_for([Replicated("contacts")], c.catalog, "sage_accounting")
        target = open_target(url)
        try:
            (outcome,) = Replicator(c, target, specs, sleep=pause).run()
        finally:
            target.close()
    assert outcome.complete, outcome.summary()
    assert any("read again" in n for n in outcome.notes), outcome.notes
    assert pauses == [2.0]
    assert_same(sbx, url, ["contacts"])


def test_a_full_copy_removes_rows_sage_no_longer_has(start_sandbox, tmp_path) -> None:
    """Accounting reports deletions by tombstones only; a row the replica holds that no
    tombstone names (its tombstone expired, or the replica was edited) goes with --full."""
    sbx = start_sandbox("sage_accounting", rows=20, rate_limit_per_minute=0)
    url = f"sqlite:///{tmp_path}/replica.sqlite"
    sync(sbx, url, ["contacts"])
    conn = sqlite3.connect(f"{tmp_path}/replica.sqlite")
    conn.execute("INSERT INTO contacts (id, name) VALUES ('stray', 'not in Sage')")
    conn.commit()
    sync(sbx, url, ["contacts"])
    assert conn.execute("SELECT count(*) FROM contacts WHERE id = 'stray'").fetchone() == (1,)
    (outcome,) = sync(sbx, url, ["contacts"], full=True)
    assert outcome.deleted == 1 and outcome.copied == 20
    assert_same(sbx, url, ["contacts"])


@pytest.mark.parametrize(
    "product, table, key",
    [("sage_200", "customers", "id"), ("sage_crm", "company", "comp_companyid")],
)
def test_deletions_cost_one_count_until_the_ids_must_be_compared(
    start_sandbox, tmp_path, product, table, key
) -> None:
    """Sage 200 / CRM: an idle run is the window and one count, however many pages the ids
    fill; a count that differs compares the ids; a deletion the count cannot see (as many
    rows visible later than the lookback) is caught by the comparison every compare_every."""
    from sagesql.replication.sync import COMPARE_EVERY

    sbx = start_sandbox(product, rows=60, rate_limit_per_minute=0)
    url = f"sqlite:///{tmp_path}/replica.sqlite"
    small = {"props": {"Pagesize": "10"}}  # the ids in 6+ pages: what an idle run skips
    frozen_at(sbx, T0)
    assert sync(sbx, url, [table], **small)[0].complete
    frozen_at(sbx, T1)
    keys = _keys(sbx, table, key, 10)

    _sql(sbx, f"DELETE FROM {table} WHERE {key} = ?", [keys[3]])
    request_log(sbx, clear=True)
    (outcome,) = sync(sbx, url, [table], **small)
    assert outcome.deleted == 1 and _api_requests(sbx) > 6, outcome.summary()
    assert_same(sbx, url, [table])

    request_log(sbx, clear=True)
    (outcome,) = sync(sbx, url, [table], **small)
    assert outcome.complete and _api_requests(sbx) == 2, [r["query"] for r in request_log(sbx)]
    assert_same(sbx, url, [table])

    # The replica lacks a row (as if it became visible after the lookback) while another
    # is deleted: the counts agree, so this run cannot tell...
    with sqlite3.connect(f"{tmp_path}/replica.sqlite") as conn:
        conn.execute(f"DELETE FROM {table} WHERE {key} = ?", [keys[5]])
    conn.close()
    _sql(sbx, f"DELETE FROM {table} WHERE {key} = ?", [keys[6]])
    sync(sbx, url, [table], **small)
    with sqlite3.connect(f"{tmp_path}/replica.sqlite") as conn:
        held = {r[0] for r in conn.execute(f"SELECT {key} FROM {table} WHERE {key} IN (?, ?)",
                                           [keys[5], keys[6]])}  # fmt: skip
    conn.close()
    assert held == {keys[6]}
    # ... the comparison every compare_every does: the replica equals the API again.
    frozen_at(sbx, T1 + COMPARE_EVERY + timedelta(seconds=1))
    (outcome,) = sync(sbx, url, [table], **small)
    assert outcome.deleted == 1 and outcome.upserted == 1, outcome.summary()
    assert_same(sbx, url, [table])


def test_a_deletion_while_newest_first_pages_are_read_keeps_the_window(
    start_sandbox, tmp_path
) -> None:
    """Sage CRM cannot filter on dates (documented where=): its window is read newest
    first, page by page, until a row older than the window. A deletion among the pages
    already read shifts a row past the read; the comparison of ids finds the deletion and
    the watermark stays, so the next run reads the window again and misses nothing."""
    sbx = start_sandbox("sage_crm", rows=60, rate_limit_per_minute=0)
    url = f"sqlite:///{tmp_path}/replica.sqlite"
    small = {"props": {"Pagesize": "10"}, "lookback": timedelta(0)}
    frozen_at(sbx, T0)
    assert sync(sbx, url, ["company"], **small)[0].complete
    frozen_at(sbx, T1)
    keys = _keys(sbx, "company", "comp_companyid", 60)
    touched = keys[10:45]  # 35 rows changed in one second: four pages newest first
    holes = ", ".join("?" for _ in touched)
    _sql(sbx, f"UPDATE company SET comp_name = 'moved' WHERE comp_companyid IN ({holes})", touched)
    frozen_at(sbx, T1 + timedelta(seconds=10))  # after the changes: a watermark past them

    deleted: list[Any] = []

    def delete_after_the_first_page(table: str, phase: str, rows: int) -> None:
        if phase == "window" and not deleted:
            deleted.append(touched[-1])  # the newest key: on the page just read
            _sql(sbx, "DELETE FROM company WHERE comp_companyid = ?", [touched[-1]])

    (outcome,) = sync(sbx, url, ["company"], progress=delete_after_the_first_page, **small)
    assert deleted and outcome.complete, outcome.summary()
    assert "read again" in outcome.summary()
    (outcome,) = sync(sbx, url, ["company"], **small)
    assert outcome.complete, outcome.summary()
    assert_same(sbx, url, ["company"])


def test_a_replica_made_before_the_compared_column_gets_it(start_sandbox, tmp_path) -> None:
    sbx = start_sandbox("sage_200", rows=10, rate_limit_per_minute=0)
    url = f"sqlite:///{tmp_path}/replica.sqlite"
    assert sync(sbx, url, ["customers"])[0].complete
    with sqlite3.connect(tmp_path / "replica.sqlite") as conn:
        conn.execute("ALTER TABLE _sagesql_sync DROP COLUMN compared")
    conn.close()
    (outcome,) = sync(sbx, url, ["customers"])
    assert outcome.complete, outcome.summary()
    target = open_target(url)
    try:
        state = target.load("customers")
    finally:
        target.close()
    assert state is not None and state.compared is not None  # compared again, and noted
