"""`sagesql tables` and `sagesql describe`, through typer's runner and a real process."""

from __future__ import annotations

import json
import subprocess
import sys

from typer.testing import CliRunner

from sagesql.cli.main import app

runner = CliRunner()


def test_tables_json_lists_every_product() -> None:
    result = runner.invoke(app, ["tables", "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert {r["product"] for r in rows} == {"SageAccounting", "Sage200", "SageCRM"}
    assert all(r["description"] for r in rows)


def test_tables_for_one_product_as_a_table() -> None:
    result = runner.invoke(app, ["tables", "--product", "SageCRM"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "company (accounts)" in result.stdout
    assert "sales_invoices" not in result.stdout


def test_describe_customers_shows_updated_at_and_its_pushdown() -> None:
    result = runner.invoke(app, ["describe", "customers", "--format", "json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["product"] == "SageAccounting"
    assert info["updated_column"] == "updated_at"
    updated = next(c for c in info["columns"] if c["name"] == "updated_at")
    assert ">= (updated_or_created_since)" in updated["pushdown"]
    assert "> (updated_or_created_since, re-checked locally)" in updated["pushdown"]
    assert info["statements"] == ["SELECT", "INSERT", "UPDATE", "DELETE"]


def test_describe_as_a_table_for_people() -> None:
    result = runner.invoke(app, ["describe", "customers"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert "updated: updated_at" in result.stdout
    assert "updated_or_created_since" in result.stdout


def test_describe_sage200_table() -> None:
    result = runner.invoke(app, ["describe", "customers", "-p", "Sage200", "-f", "json"])
    info = json.loads(result.stdout)
    assert info["updated_column"] == "date_time_updated"
    name = next(c for c in info["columns"] if c["name"] == "name")
    assert any("$filter" in p for p in name["pushdown"])


def _sagesql(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sagesql.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_unknown_table_is_one_line_exit_2_no_traceback() -> None:
    result = _sagesql("describe", "custmers")
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "unknown table 'custmers'" in lines[0] and "customers" in lines[0]


def test_unknown_product_is_one_line_exit_2() -> None:
    result = _sagesql("tables", "--product", "Sage300")
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "unknown product 'Sage300'" in result.stderr
    assert "Traceback" not in result.stderr
