"""Fuzzing: malformed and hostile SQL never raises anything but sagesql's errors, and
a statement that fails sends nothing.

Statements run through ``engine.pipeline.run`` against each product's sandbox, whose
request log must stay empty whenever the statement fails: every name, type, parameter
and piece of syntax is checked before the first request. The inputs are random text,
random soups of SQL tokens (real table and column names among them, so that some
statements are valid and run), a list of nasty cases (unterminated strings, injection
attempts in identifiers, unicode, huge numbers, deep nesting, unknown names, several
statements, statements that are not queries, bad parameters), and hostile values in
filters that must not change what the API is asked. A few go through the real
``sagesql`` command: exit code 2, one line on stderr, no traceback.

Runtime errors that depend on the rows (a REGEXP with a bad pattern, an ESCAPE of two
characters, abs() of the smallest integer) can only surface once rows are read, after
their requests; the token soups leave those functions out.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_query_oracle import api_session

import sagesql
from sagesql.connector.client import SageClient
from sagesql.connector.properties import validate
from sagesql.engine.pipeline import explain, run
from sagesql.sandbox.config import SandboxConfig
from sagesql.sandbox.runner import Sandbox
from sagesql.schemas.catalog import default_catalog

PRODUCTS = ("sage_accounting", "sage_200", "sage_crm")
SAGESQL = str(Path(sys.executable).parent / "sagesql")  # the console script, as users run it
# A longer hunt: SAGESQL_FUZZ_EXAMPLES=5000 SAGESQL_FUZZ_RANDOM=1 pytest tests/test_query_fuzz.py
FUZZ = settings(
    max_examples=int(os.environ.get("SAGESQL_FUZZ_EXAMPLES", "150")),
    derandomize=not os.environ.get("SAGESQL_FUZZ_RANDOM"),
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)


class Box:
    """One product's sandbox and a connection to it (already holding its scope headers)."""

    def __init__(self, product: str) -> None:
        self.product = product
        self.sandbox = Sandbox(
            product, SandboxConfig(product=product, rate_limit_per_minute=10**6)
        ).start()
        props = {
            **self.sandbox.connection_properties(),
            "OAuthSettingsLocation": "memory://fuzz",
            "RateLimit": "0",
        }
        self.connection = SageClient(validate(props))
        _ = self.connection.transport  # Sage 200 asks for its site and company once, here
        self.session = api_session(self.sandbox)

    def requests(self) -> list[dict[str, Any]]:
        return [
            r
            for r in self.sandbox.app.requests
            if not str(r["path"]).startswith(("/oauth/", "/_sandbox/"))
        ]

    def attempt(self, sql: str, params: Any = None) -> tuple[list[tuple], sagesql.Error | None]:
        """Run a statement to its last row; (rows, None) or ([], the sagesql error).

        Any other exception propagates and fails the test. A failing statement must not
        have sent a request.
        """
        self.sandbox.app.requests.clear()
        try:
            result = run(self.connection, sql, params)
            try:
                rows = list(result.rows)
            finally:
                result.close()
        except sagesql.Error as exc:
            sent = self.requests()
            assert not sent, f"{sql!r} failed ({exc}) after sending {sent}"
            assert "\n" not in str(exc), f"a multi-line message: {exc}"
            return [], exc
        return rows, None

    def close(self) -> None:
        self.connection.close()
        self.sandbox.stop()


@pytest.fixture(scope="module")
def boxes() -> Iterator[dict[str, Box]]:
    started = {product: Box(product) for product in PRODUCTS}

    class Boxes(dict):  # type: ignore[type-arg]
        def __repr__(self) -> str:  # Hypothesis prints the arguments of a failing case
            return "boxes"

    yield Boxes(started)
    for box in started.values():
        box.close()


# -- random text --------------------------------------------------------------------------------


@FUZZ
@given(text=st.text(max_size=120), product=st.sampled_from(PRODUCTS))
def test_random_text_fails_cleanly_and_sends_nothing(
    boxes: dict[str, Box], text: str, product: str
) -> None:
    box = boxes[product]
    box.attempt(text)
    assert not box.requests()


# -- soups of SQL tokens ------------------------------------------------------------------------

KEYWORDS = (
    "SELECT",
    "SELECT",
    "SELECT *",
    "DISTINCT",
    "FROM",
    "FROM",
    "WHERE",
    "WHERE",
    "AND",
    "OR",
    "NOT",
    "IN",
    "LIKE",
    "BETWEEN",
    "IS",
    "NULL",
    "ORDER BY",
    "GROUP BY",
    "HAVING",
    "LIMIT",
    "OFFSET",
    "JOIN",
    "LEFT JOIN",
    "ON",
    "UNION",
    "AS",
    "CASE",
    "WHEN",
    "THEN",
    "END",
    "WITH",
    "DESC",
)
SYMBOLS = ("(", ")", ",", "*", "=", "<", ">", "!=", "<=", "||", "+", "-", ";", ".", "'", '"')
LITERALS = (
    "'x'",
    "'O''Brien'",
    "'2025-01-01'",
    "'2025-01-01T10:00:00+02:00'",
    "'yesterday'",
    "'%a_'",
    "'Zoë'",
    "1",
    "0",
    "-1",
    "1.5",
    "1e400",
    "99999999999999999999999",
    "TRUE",
    "?",
    ":p",
    "x'00'",
)
FUNCTIONS = ("count(", "lower(", "upper(", "length(", "coalesce(", "substr(", "max(", "sum(")


def vocabulary(product: str) -> list[str]:
    """Keywords, symbols, literals, safe functions, and the product's real names."""
    catalog = default_catalog()
    names = ["nosuch", "x", "t0", "__sagesql_t0", "contacts", "customers", "company"]
    for summary in sorted(catalog.tables(product), key=lambda t: t.name)[:6]:
        table = catalog.table(summary.name, product)
        names.append(table.name)
        names.extend(c.name for c in table.columns[:4])
    return [*KEYWORDS, *SYMBOLS, *LITERALS, *FUNCTIONS, *names]


@st.composite
def soup(draw: st.DrawFn) -> tuple[str, str]:
    product = draw(st.sampled_from(PRODUCTS))
    words = draw(st.lists(st.sampled_from(vocabulary(product)), min_size=1, max_size=12))
    start = draw(st.sampled_from(["SELECT", "SELECT * FROM", "", "WITH"]))
    return product, " ".join([start, *words]).strip()


@FUZZ
@given(case=soup())
def test_token_soups_fail_cleanly_and_send_nothing_when_they_fail(
    boxes: dict[str, Box], case: tuple[str, str]
) -> None:
    product, sql = case
    boxes[product].attempt(sql, {"p": 1} if ":p" in sql else [1] * sql.count("?") or None)


# -- nasty cases ----------------------------------------------------------------------------------

DEEP = 2000
NASTY: list[tuple[str, Any, type[sagesql.Error]]] = [
    ("SELECT * FROM contacts WHERE name = 'abc", None, sagesql.ProgrammingError),
    ('SELECT "id FROM contacts', None, sagesql.ProgrammingError),
    ("SELECT id FROM contacts /* unterminated", None, sagesql.ProgrammingError),
    ('SELECT * FROM "contacts; DROP TABLE x"', None, sagesql.UnknownTableError),
    ("SELECT * FROM contacts WHERE \"name' OR '1'='1\" = 1", None, sagesql.ProgrammingError),
    ("SELECT * FROM contacts WHERE id = 1; DELETE FROM contacts", None, sagesql.ProgrammingError),
    ("SELECT * FROM contacts; SELECT * FROM contacts", None, sagesql.ProgrammingError),
    ("SELECT id FROM contacts -- ; DROP TABLE contacts\n;;", None, None),  # a comment: fine
    # Statements that are not queries (nor writes): NotSupportedError or ProgrammingError.
    ("DROP TABLE contacts", None, sagesql.DatabaseError),
    ("CREATE TABLE x (a)", None, sagesql.DatabaseError),
    ("PRAGMA table_info(contacts)", None, sagesql.DatabaseError),
    ("ATTACH DATABASE '/tmp/sagesql-fuzz.db' AS x", None, sagesql.DatabaseError),
    ("ALTER TABLE contacts ADD COLUMN x", None, sagesql.DatabaseError),
    ("VACUUM", None, sagesql.DatabaseError),
    ("EXPLAIN SELECT * FROM contacts", None, sagesql.DatabaseError),
    ("SELECT * FROM nosuchtable", None, sagesql.UnknownTableError),
    ("SELECT * FROM contact", None, sagesql.UnknownTableError),
    ("SELECT nosuchcolumn FROM contacts", None, sagesql.UnknownColumnError),
    ("SELECT c.id FROM contacts", None, sagesql.ProgrammingError),
    ("SELECT id FROM contacts WHERE id IN (SELECT nope FROM customers)", None, sagesql.Error),
    ("SELECT id FROM sage_200.customers", None, sagesql.UnknownTableError),
    ("SELECT id FROM nosuchproduct.customers", None, sagesql.Error),
    ("SELECT \u202eid FROM contacts", None, sagesql.UnknownColumnError),
    ("SELECT id FROM cöntacts", None, sagesql.UnknownTableError),
    ("SELECT id FROM contacts WHERE updated_at > 'yesterday'", None, sagesql.DataError),
    ("SELECT id FROM contacts WHERE updated_at > '2025-13-45'", None, sagesql.DataError),
    ("SELECT id FROM contacts WHERE updated_at > 5", None, sagesql.DataError),
    ("SELECT id FROM contacts WHERE balance = 'abc'", None, sagesql.DataError),
    ("SELECT id FROM contacts WHERE is_active = 'maybe'", None, sagesql.DataError),
    ("SELECT id FROM contacts LIMIT 99999999999999999999999", None, sagesql.DataError),
    ("SELECT id FROM contacts LIMIT 'a'", None, sagesql.DataError),
    ("SELECT id FROM contacts ORDER BY id LIMIT 1 OFFSET 1e30", None, sagesql.DataError),
    ("SELECT nosuchfunc(id) FROM contacts", None, sagesql.ProgrammingError),
    ("SELECT nosuchfunc(id) FROM contacts ORDER BY id", None, sagesql.ProgrammingError),
    ("SELECT id FROM contacts GROUP BY", None, sagesql.ProgrammingError),
    ("SELECT id FROM contacts WHERE name = 'x' COLLATE nosuch", None, sagesql.ProgrammingError),
    ("SELECT load_extension('/tmp/x')", None, sagesql.ProgrammingError),
    ("SELECT id FROM contacts WHERE " + "(" * DEEP + "1=1" + ")" * DEEP, None, None),
    ("SELECT id FROM contacts WHERE " + " AND ".join(["id = 'x'"] * DEEP), None, None),
    ("SELECT id FROM contacts WHERE " + "NOT " * DEEP + "1", None, None),
    ("SELECT " + "+".join(["1"] * DEEP), None, None),
    ("", None, sagesql.ProgrammingError),
    (";;", None, sagesql.ProgrammingError),
    ("-- only a comment", None, sagesql.ProgrammingError),
    ("SELECT id FROM contacts WHERE id = ?", None, sagesql.ProgrammingError),
    ("SELECT id FROM contacts WHERE id = ?", [1, 2], sagesql.ProgrammingError),
    ("SELECT id FROM contacts WHERE id = ?", "ab", sagesql.ProgrammingError),
    ("SELECT id FROM contacts WHERE id = :x", {"y": 1}, sagesql.ProgrammingError),
    ("SELECT id FROM contacts WHERE id = :x", [1], sagesql.ProgrammingError),
    ("SELECT id FROM contacts WHERE id = ? AND name = :n", [1], sagesql.ProgrammingError),
    ("SELECT id FROM contacts WHERE id = ?", [object()], sagesql.ProgrammingError),
    ("SELECT id FROM contacts WHERE id = ?", [float("nan")], sagesql.ProgrammingError),
    ("SELECT id FROM contacts WHERE id = ?", [float("inf")], sagesql.ProgrammingError),
    ("SELECT id FROM contacts", [1], sagesql.ProgrammingError),
    ("SELECT id FROM contacts WHERE updated_at > ?", ["not a date"], sagesql.DataError),
]


@pytest.mark.parametrize(
    ("sql", "params", "error"), NASTY, ids=[f"nasty{i}" for i in range(len(NASTY))]
)
def test_nasty_statements_fail_before_any_request(
    boxes: dict[str, Box], sql: str, params: Any, error: type[sagesql.Error] | None
) -> None:
    box = boxes["sage_accounting"]
    _, raised = box.attempt(sql, params)
    if error is None:  # allowed to run or to fail; if it failed, it sent nothing (attempt)
        if raised is not None:
            assert isinstance(raised, sagesql.ProgrammingError), raised
        return
    assert isinstance(raised, error), f"{sql!r}: {raised!r}"
    # --explain sends nothing either (it may print a plan SQLite would then refuse).
    try:
        explain(box.connection, sql, params)
    except sagesql.Error as exc:
        assert "\n" not in str(exc)
    assert not box.requests()


def test_nesting_deeper_than_python_recurses_is_a_one_line_error(boxes: dict[str, Box]) -> None:
    box = boxes["sage_200"]
    _, raised = box.attempt("SELECT id FROM customers WHERE " + "(" * 5000 + "1" + ")" * 5000)
    assert isinstance(raised, sagesql.ProgrammingError)
    assert "nested too deeply" in str(raised)


@pytest.mark.parametrize("product", PRODUCTS)
def test_unknown_names_fail_alike_on_every_product(boxes: dict[str, Box], product: str) -> None:
    box = boxes[product]
    for sql in (
        "SELECT * FROM nosuchtable",
        "SELECT nosuchcolumn FROM " + sorted(t.name for t in default_catalog().tables(product))[0],
        "SELECT 'unterminated",
        "SELECT * FROM x WHERE (((",
        "UPDATE",
    ):
        _, raised = box.attempt(sql)
        assert isinstance(raised, sagesql.ProgrammingError), (sql, raised)


# -- hostile values --------------------------------------------------------------------------------

HOSTILE = (
    "x' OR '1'='1",
    "' or 1 eq 1 or name eq '",
    "') or (1 eq 1",
    "x' or comp_name ne 'y",
    "%",
    "_",
    "&$filter=id gt 0",
    "&where=comp_companyid gt 0",
    "a&b=c#d",
    "@2025-01-01@",
    "'; DROP TABLE customers; --",
    "\\'",
    "line\nbreak",
    "Zoë \u202e Łukasz",
    "nul\x00byte",
    "x" * 3000,
)
# Per product: a text column the API filters on, and its table.
HOSTILE_TARGETS = {
    "sage_accounting": ("contacts", "email"),
    "sage_200": ("customers", "name"),
    "sage_crm": ("company", "comp_name"),
}
# The query parameters that carry a filter.
FILTERS = {
    "sage_accounting": ("email", "search"),
    "sage_200": ("$filter",),
    "sage_crm": ("where",),
}


@pytest.mark.parametrize("product", PRODUCTS)
def test_hostile_values_cannot_change_what_the_api_is_asked(
    boxes: dict[str, Box], product: str
) -> None:
    """Each value, as a literal and as a parameter, with = and with LIKE: no row comes back,
    and asked again by hand, every request that carried the value in a filter returns no
    record (a value that broke out of its quotes would have matched every record)."""
    box = boxes[product]
    table, column = HOSTILE_TARGETS[product]
    for value in HOSTILE:
        quoted = "'" + value.replace("'", "''") + "'"
        statements: list[tuple[str, Any]] = [
            (f"SELECT * FROM {table} WHERE {column} = {quoted}", None),
            (f"SELECT * FROM {table} WHERE {column} = ?", [value]),
            (f"SELECT * FROM {table} WHERE {column} = :v", {"v": value}),
        ]
        if not set(value) & set("%_"):  # a prefix that is not itself a wildcard
            statements.append((f"SELECT * FROM {table} WHERE {column} LIKE ?", [value + "%"]))
        for sql, params in statements:
            rows, raised = box.attempt(sql, params)
            if "\x00" in value:  # SQLite takes no NUL in SQL text: refused, nothing sent
                assert isinstance(raised, sagesql.ProgrammingError), raised
                assert "null character" in str(raised)
                continue
            assert raised is None, (sql, value, raised)
            assert rows == [], (sql, value)
            for entry in box.requests():
                asked = dict(parse_qsl(str(entry["query"]), keep_blank_values=True))
                if not set(asked) & set(FILTERS[product]):
                    continue  # not pushed: every record comes, SQLite filters them
                url = f"{box.sandbox.url}{entry['path']}?{entry['query']}"
                body = box.session.get(url, timeout=30).json()
                found = (  # a list, an envelope, or a count ($count=true)
                    body
                    if isinstance(body, (list, int))
                    else body.get("$items", body.get("$resources", body))
                )
                assert found in ([], 0), (value, entry["query"], str(found)[:200])


# -- the command line ------------------------------------------------------------------------------

CLI_CASES = [
    ("SageAccounting", "SELECT * FROM contacts WHERE name = 'abc"),
    ("SageAccounting", "SELECT nosuchcolumn FROM contacts"),
    ("Sage200", "SELECT * FROM customers; DROP TABLE customers"),
    ("Sage200", "SELECT id FROM customers WHERE date_time_updated > 'soon' ORDER BY id"),
    ("SageCRM", "DROP TABLE company"),
    ("SageCRM", "SELECT id FROM company WHERE " + "(" * 3000 + "1" + ")" * 3000),
]


@pytest.mark.slow
@pytest.mark.parametrize(("product", "sql"), CLI_CASES, ids=[f"cli{i}" for i in range(6)])
def test_the_command_refuses_bad_sql_in_one_line(product: str, sql: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAGESQL_")}
    done = subprocess.run(
        [SAGESQL, "query", "--sandbox", "-p", product, sql],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert done.stdout == ""


def test_one_statement_after_the_fuzz_still_runs(boxes: dict[str, Box]) -> None:
    """The sandboxes and connections survived the fuzzing (a sanity check)."""
    for product, (table, _) in HOSTILE_TARGETS.items():
        rows, raised = boxes[product].attempt(f"SELECT count(*) FROM {table}")
        assert raised is None and rows[0][0] > 0
