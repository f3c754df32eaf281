"""Golden files: SQL in, the HTTP requests the sandbox received out, per product.

``tests/fixtures/golden/<product>.sql`` holds blocks separated by blank lines: comment
lines saying what the block shows, one statement ending with ``;``, then what running
it produced, as comments::

    -- A key lookup: GET one record.
    SELECT * FROM company WHERE comp_companyid = 5;
    -- rows: 1
    -- GET /sdata/crmj/sagecrm2/-/Company('5')

Each request is its method and path, then its query parameters decoded and sorted, one
a line. The requests are those the sandbox's request log holds after the statement ran
over real HTTP (its rows all read), not the plan's guess; the OAuth and admin endpoints
are left out. A block without a statement (the file's header) is kept as it is.

Run with ``SAGESQL_UPDATE_GOLDEN=1`` to rewrite the expectations from what happens now;
review the diff before committing it.

"now" is NOW for every statement (the connection's clock, and the sandbox's clock
frozen there too), so that ``datetime('now', '-1 day')`` folds to the same literal,
pushed the same way, on every run.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import parse_qsl

import pytest
import requests

from sagesql.connector.client import SageClient
from sagesql.connector.properties import validate
from sagesql.engine.pipeline import run
from sagesql.sandbox.config import SandboxConfig
from sagesql.sandbox.runner import Sandbox

GOLDEN = Path(__file__).resolve().parent / "fixtures" / "golden"
PRODUCTS = ("sage_accounting", "sage_200", "sage_crm")
UPDATE = os.environ.get("SAGESQL_UPDATE_GOLDEN") == "1"
# Requests that are not the statement's: token refreshes and the sandbox's own endpoints.
NOT_THE_API = ("/oauth/", "/_sandbox/")
PARAM_INDENT = "--     "
# The statements' 'now' (SQL's date functions) and the sandbox's clock.
NOW = datetime(2025, 7, 1, 12, 0, 0, tzinfo=timezone.utc)


def blocks(text: str) -> list[list[str]]:
    """The file's blocks: runs of non-blank lines."""
    found: list[list[str]] = []
    current: list[str] = []
    for line in text.splitlines():
        if line.strip():
            current.append(line)
        elif current:
            found.append(current)
            current = []
    if current:
        found.append(current)
    return found


def split_block(block: list[str]) -> tuple[list[str], str | None]:
    """(the comment lines before the statement, the statement or None)."""
    notes: list[str] = []
    statement: list[str] = []
    for line in block:
        if not statement and line.startswith("--"):
            notes.append(line)
            continue
        statement.append(line)
        if line.rstrip().endswith(";"):
            break
    return notes, ("\n".join(statement) if statement else None)


def render_requests(log: list[dict[str, object]]) -> list[str]:
    lines = []
    for entry in log:
        path = str(entry["path"])
        if path.startswith(NOT_THE_API):
            continue
        lines.append(f"-- {entry['method']} {path}")
        params = sorted(parse_qsl(str(entry["query"]), keep_blank_values=True))
        lines.extend(f"{PARAM_INDENT}{name}={value}" for name, value in params)
        if entry["status"] != 200:
            lines.append(f"--   -> {entry['status']}")
    return lines


@pytest.fixture(scope="module")
def sandboxes() -> Iterator[dict[str, tuple[Sandbox, SageClient]]]:
    started: dict[str, tuple[Sandbox, SageClient]] = {}
    for product in PRODUCTS:
        sbx = Sandbox(product, SandboxConfig(product=product, rate_limit_per_minute=10**6)).start()
        frozen = {"set": NOW.isoformat(), "frozen": True}
        requests.post(sbx.url + "/_sandbox/clock", json=frozen, timeout=10).raise_for_status()
        props = {
            **sbx.connection_properties(),
            "OAuthSettingsLocation": "memory://golden",
            "RateLimit": "0",
        }
        connection = SageClient(validate(props), clock=lambda: NOW)
        _ = connection.transport  # Sage 200 resolves its site and company once, here
        started[product] = (sbx, connection)
    yield started
    for sbx, connection in started.values():
        connection.close()
        sbx.stop()


def actual_text(path: Path, sbx: Sandbox, connection: SageClient) -> str:
    """The golden file as it should read after running each of its statements now."""
    out: list[str] = []
    for block in blocks(path.read_text(encoding="utf-8")):
        notes, statement = split_block(block)
        if statement is None:
            out.append("\n".join(block))
            continue
        sbx.app.requests.clear()
        result = run(connection, statement.rstrip().rstrip(";"))
        try:
            count = sum(1 for _ in result.rows)
        finally:
            result.close()
        lines = [*notes, statement, f"-- rows: {count}", *render_requests(list(sbx.app.requests))]
        out.append("\n".join(lines))
    return "\n\n".join(out) + "\n"


@pytest.mark.parametrize("product", PRODUCTS)
def test_requests_match_the_golden_file(
    sandboxes: dict[str, tuple[Sandbox, SageClient]], product: str
) -> None:
    path = GOLDEN / f"{product}.sql"
    expected = path.read_text(encoding="utf-8")
    actual = actual_text(path, *sandboxes[product])
    if UPDATE:
        path.write_text(actual, encoding="utf-8")
        return
    diff = "".join(
        difflib.unified_diff(
            expected.splitlines(keepends=True),
            actual.splitlines(keepends=True),
            f"{path.name} (golden)",
            f"{path.name} (now)",
        )
    )
    assert not diff, (
        "the requests differ from the golden file; if the change is intended, rerun with "
        f"SAGESQL_UPDATE_GOLDEN=1 and review the diff:\n{diff}"
    )


@pytest.mark.parametrize("product", PRODUCTS)
def test_golden_files_cover_what_the_issue_asks(product: str) -> None:
    """At least ten statements per product, and every kind of request the planner makes."""
    text = (GOLDEN / f"{product}.sql").read_text(encoding="utf-8")
    statements = [s for _, s in map(split_block, blocks(text)) if s]
    assert len(statements) >= 10
    lowered = text.lower()
    for needle in ("join", "limit", "order by", "group by", " in ("):
        assert needle in lowered, needle
