"""DB-API executemany against the sandbox: one multi-row INSERT, and failures that say what stays.

``INSERT ... VALUES (?, ...)`` with many parameter sets goes out as one multi-row INSERT
(rows in parallel, each sent once, in input order); any other statement runs set by set.
Sage has no transactions, so a refused row or set raises an error naming what was
written and what was not.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

import sagesql
from sagesql.errors import DataError, OperationalError, ProgrammingError

CUSTOMER = json.dumps([{"id": "CUSTOMER"}])
INSERT = "INSERT INTO contacts (name, contact_types, reference) VALUES (?, ?, ?)"


@pytest.fixture
def conn(start_sandbox) -> Any:
    sbx = start_sandbox("sage_accounting", rows=5, rate_limit_per_minute=0)
    props = {**sbx.client_properties(), "RateLimit": "0", "MaxConcurrency": "4"}
    with sagesql.connect(**props) as connection:
        connection.sandbox = sbx  # type: ignore[attr-defined]
        yield connection


def _posts(conn: Any) -> list[dict[str, Any]]:
    return [e for e in conn.sandbox.app.requests if e["method"] == "POST"]


def test_an_insert_runs_once_with_every_set_as_a_row(conn) -> None:
    sets = [(f"Many {n}", CUSTOMER, f"EM{n:03d}") for n in range(40)]
    cursor = conn.cursor()
    conn.sandbox.app.requests.clear()
    cursor.executemany(INSERT, sets)
    assert cursor.rowcount == 40 and cursor.description is None
    sent = sorted(e["body"]["contact"]["reference"] for e in _posts(conn))
    assert sent == [f"EM{n:03d}" for n in range(40)]  # each once
    cursor.execute("SELECT reference, name FROM contacts WHERE reference LIKE 'EM%'")
    assert sorted(cursor.fetchall()) == [(r, n) for n, _, r in sets]


def test_named_parameters_work_the_same(conn) -> None:
    cursor = conn.cursor()
    cursor.executemany(
        "INSERT INTO contacts (name, contact_types, reference) VALUES (:n, :t, :r)",
        [{"n": "Named A", "t": CUSTOMER, "r": "NA1"}, {"n": "Named B", "t": CUSTOMER, "r": "NA2"}],
    )
    assert cursor.rowcount == 2


def test_a_refused_row_names_the_sets_written_and_failed(conn) -> None:
    sets = [("A", CUSTOMER, "DUPE"), ("B", CUSTOMER, "OK1"), ("C", CUSTOMER, "DUPE")]
    cursor = conn.cursor()
    with pytest.raises(OperationalError) as info:
        cursor.executemany(INSERT, sets)
    message = str(info.value)
    # One of the two DUPE rows is refused (which one depends on which reached Sage first).
    assert "2 of 3 parameter sets were written; sets " in message
    assert "has already been taken" in message and "run only the failed" in message
    cursor.execute("SELECT count(*) FROM contacts WHERE reference IN ('DUPE', 'OK1')")
    assert cursor.fetchone() == (2,)


def test_set_by_set_a_later_failure_says_which_sets_ran(conn) -> None:
    cursor = conn.cursor()
    cursor.execute("SELECT id FROM contacts ORDER BY id LIMIT 2")
    first, second = (r[0] for r in cursor.fetchall())
    with pytest.raises(ProgrammingError) as info:
        cursor.executemany(
            "UPDATE contacts SET notes = ? WHERE id = ?",
            [("one", first), ("two", second), ("three", "x", "too many")],
        )
    assert str(info.value).startswith("parameter set 3 of 3: ")
    assert "sets 1 to 2 were run and their writes stay" in str(info.value)
    cursor.execute("SELECT notes FROM contacts WHERE id IN (?, ?) ORDER BY id", [first, second])
    assert [r[0] for r in cursor.fetchall()] == ["one", "two"]


def test_a_statement_that_fails_validation_sends_nothing(conn) -> None:
    cursor = conn.cursor()
    conn.sandbox.app.requests.clear()
    with pytest.raises(DataError, match="nothing was sent: row 2: name is required"):
        cursor.executemany(INSERT, [("ok", CUSTOMER, "V1"), (None, CUSTOMER, "V2")])
    assert _posts(conn) == []
