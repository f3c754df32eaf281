"""The PostgreSQL server of the scale-out tests: a fresh database per test, dropped after.

Where the server is: ``pytest --postgresql URL``, else ``SAGESQL_TEST_POSTGRESQL``, else
``postgresql://postgres@127.0.0.1:5432/postgres`` (this machine kind runs one there,
trust auth). Each test gets a database of its own with a unique name (the server may
hold others: nothing is assumed empty) and drops it afterwards. When the server cannot
be reached the tests are skipped with how to provide one, except under ``CI=true``,
where that is a failure.

No tests here.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

DEFAULT = "postgresql://postgres@127.0.0.1:5432/postgres"
HOW = (
    "start PostgreSQL (e.g. docker run -e POSTGRES_HOST_AUTH_METHOD=trust -p 5432:5432 "
    "postgres) and give its URL with pytest --postgresql URL or SAGESQL_TEST_POSTGRESQL=URL"
)


def server_url(config: pytest.Config) -> str:
    return config.getoption("--postgresql") or os.environ.get("SAGESQL_TEST_POSTGRESQL") or DEFAULT


def _with_database(url: str, name: str) -> str:
    head, _, _ = url.rpartition("/")
    return f"{head}/{name}"


def _admin(url: str):
    import psycopg

    return psycopg.connect(url, autocommit=True, connect_timeout=5)


@pytest.fixture
def pg_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, empty database on the test server: its postgresql:// URL."""
    server = server_url(request.config)
    try:
        admin = _admin(server)
    except Exception as exc:
        message = f"PostgreSQL at {server} is unreachable ({type(exc).__name__}: {exc})"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}; CI needs it: {HOW}")
        pytest.skip(f"{message}: {HOW}")
    name = f"sagesql_test_{os.getpid()}_{uuid.uuid4().hex[:10]}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _with_database(server, name)
    finally:
        with _admin(server) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
