"""``sagesql activity ...``, ``sagesql schema`` and writes through ``sagesql query``, in process."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Callable
from typing import Any

import jsonschema
import pytest
from test_write_conformance import assert_bodies_conform

from sagesql.cli import main


@pytest.fixture
def books(start_sandbox: Any) -> Any:
    sbx = start_sandbox("sage_accounting", rows=20, rate_limit_per_minute=0)
    yield sbx
    assert_bodies_conform(sbx)


def conn_string(sbx: Any) -> str:
    props = {
        **sbx.connection_properties(),
        "OAuthSettingsLocation": f"memory://cli-{sbx.server.port}",
        "RateLimit": "0",
        "MaxConcurrency": "1",
    }
    return sbx.connection_string(props)


@pytest.fixture
def cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Callable[..., tuple[int, str, str]]:
    def run(*args: str, stdin: str = "") -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["sagesql", *args])
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        with pytest.raises(SystemExit) as exited:
            main.run()
        captured = capsys.readouterr()
        return int(exited.value.code or 0), captured.out, captured.err

    return run


def lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_activity_create_reads_jsonl_and_writes_one_result_per_line(books: Any, cli: Any) -> None:
    records = "\n".join(
        [
            json.dumps({"name": "Cli One", "contact_types": ["CUSTOMER"], "credit_limit": 12.5}),
            "{not json",
            "",
            json.dumps({"name": "Cli Two", "contact_types": ["VENDOR"]}),
            json.dumps({"name": "Cli Bad", "contact_types": ["VENDOR"], "notes": 5, "nope": 1}),
        ]
    )
    code, out, err = cli("activity", "create", "contacts", "-c", conn_string(books), stdin=records)
    results = lines(out)
    assert [(r["index"], r["status"]) for r in results] == [
        (0, "created"),
        (1, "failed"),
        (2, "created"),
        (3, "failed"),
    ]
    assert code == 1 and "2 of 4 records failed" in err
    assert results[0]["record"]["credit_limit"] == 12.5 and results[0]["key"]
    assert "line 2 is not JSON" in results[1]["error"]["message"]
    assert results[3]["error"]["errors"] == [
        {"field": "nope", "message": "unknown column 'nope' in contacts (did you mean notes?)"}
    ]
    posts = [e for e in books.app.requests if e["method"] == "POST"]
    assert len(posts) == 2
    # Every line validates against the published output schema.
    code, out, _ = cli("schema", "contacts", "--activity", "create", "--part", "output")
    schema = json.loads(out)
    for result in results:
        jsonschema.validate(result, schema)


def test_activity_update_delete_query_and_a_json_array_input(books: Any, cli: Any) -> None:
    connection = conn_string(books)
    code, out, _ = cli(
        "activity", "create", "contacts", "-c", connection,
        stdin=json.dumps([{"name": f"Arr {n}", "contact_types": ["CUSTOMER"]} for n in range(3)]),
    )  # fmt: skip
    keys = [r["key"] for r in lines(out)]
    assert code == 0 and len(keys) == 3
    code, out, _ = cli(
        "activity", "update", "contacts", "-c", connection,
        stdin="\n".join(json.dumps({"id": k, "notes": "from the cli"}) for k in keys),
    )  # fmt: skip
    assert code == 0 and {r["status"] for r in lines(out)} == {"updated"}
    code, out, _ = cli(
        "activity", "query", "contacts", "-c", connection, "--fields", "id,name,notes",
        "--where", "notes=from the cli", "--order-by", "-name", "--limit", "2",
    )  # fmt: skip
    assert code == 0
    assert lines(out) == [
        {"id": keys[2], "name": "Arr 2", "notes": "from the cli"},
        {"id": keys[1], "name": "Arr 1", "notes": "from the cli"},
    ]
    code, out, _ = cli(
        "activity", "delete", "contacts", "-c", connection,
        stdin="\n".join(json.dumps(k) for k in [*keys, "missing"]),
    )  # fmt: skip
    assert code == 1 and [r["status"] for r in lines(out)] == ["deleted"] * 3 + ["failed"]
    code, out, _ = cli(
        "activity", "query", "-c", connection, "--sql", "SELECT count(*) AS n FROM contacts"
        " WHERE notes = 'from the cli'",
    )  # fmt: skip
    assert lines(out) == [{"n": 0}]


def test_activity_execute_and_stop_on_first_error(books: Any, cli: Any) -> None:
    connection = conn_string(books)
    code, out, _ = cli(
        "activity", "execute", "ReleaseSalesInvoice", "-c", connection, "--stop-on-first-error",
        stdin='{"Id": "no-such"}\n{"Id": "other"}\n',
    )  # fmt: skip
    results = lines(out)
    assert code == 1 and [r["status"] for r in results] == ["failed", "skipped"]
    assert results[0]["error"]["status"] == 404
    assert [e["path"] for e in books.app.requests if e["method"] == "POST"] == [
        "/v3.1/sales_invoices/no-such/release"
    ]


def test_schema_command_prints_input_and_output(cli: Any) -> None:
    code, out, _ = cli("schema", "customers", "--activity", "create", "--product", "Sage200")
    both = json.loads(out)
    assert code == 0 and set(both) == {"input", "output"}
    assert set(both["input"]["required"]) == {"name", "reference"}
    code, out, _ = cli("schema", "VoidSalesInvoice", "--activity", "execute", "--part", "input")
    assert json.loads(out)["required"] == ["Id", "VoidReason"]
    code, _, err = cli("schema", "journals", "--activity", "update")
    assert code == 2 and "journals does not support UPDATE" in err


def test_query_command_prints_per_row_results_and_fails_on_a_partial_write(
    books: Any, cli: Any
) -> None:
    connection = conn_string(books)
    code, out, err = cli(
        "query", "-c", connection, "-f", "jsonl",
        "INSERT INTO contacts (name, contact_types, default_sales_ledger_account_id) VALUES"
        " ('Q One', '[\"CUSTOMER\"]', NULL), ('Q Bad', '[\"CUSTOMER\"]', 'nope')",
    )  # fmt: skip
    rows = lines(out)
    assert code == 1 and err.strip() == "1 created, 1 failed"
    assert [(r["row"], r["status"]) for r in rows] == [(1, "created"), (2, "failed")]
    assert "ledger account nope does not exist" in rows[1]["error"]
    code, out, err = cli("query", "-c", connection, "UPDATE contacts SET notes = 'all'")
    assert code == 2 and "without WHERE acts on every row of contacts" in err and "--all" in err
    assert not [e for e in books.app.requests if e["method"] == "PUT"]
    code, out, err = cli("query", "-c", connection, "--explain", "UPDATE contacts SET notes = 'x'")
    assert code == 0 and "rows found by a SELECT first" in out
    code, out, err = cli(
        "query", "-c", connection, "-f", "jsonl", "--all", "DELETE FROM contacts",
    )  # fmt: skip
    assert code in (0, 1) and "deleted" in err
    assert len(lines(out)) == len([e for e in books.app.requests if e["method"] == "DELETE"])


def test_a_statement_is_parsed_once_on_the_command_path(
    books: Any, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlglot

    parses: list[str] = []
    original = sqlglot.parse

    def counting(sql: str, *args: Any, **kwargs: Any) -> Any:
        parses.append(sql)
        return original(sql, *args, **kwargs)

    monkeypatch.setattr(sqlglot, "parse", counting)
    connection = conn_string(books)
    key = next(iter(lines(cli("query", "-c", connection, "SELECT id FROM contacts LIMIT 1")[1])))
    for sql in (
        "UPDATE contacts SET notes = 'all'",  # refused: the guard reads the one parse
        f"UPDATE contacts SET notes = 'one' WHERE id = '{key['id']}'",
        "SELECT id FROM contacts LIMIT 2",
    ):
        parses.clear()
        code, _, err = cli("query", "-c", connection, "-f", "jsonl", sql)
        assert code in (0, 2) and parses == [sql], (sql, parses, err)
