"""Shared fixtures: paths to the repository and to Sage's published definitions."""

from __future__ import annotations

from pathlib import Path

import pytest
from postgresql import pg_url  # noqa: F401 - the fixture of the PostgreSQL tests

REPO = Path(__file__).resolve().parent.parent
REFERENCE = REPO / "schemas" / "definitions"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--postgresql",
        default=None,
        metavar="URL",
        help="PostgreSQL server of the scale-out tests (else SAGESQL_TEST_POSTGRESQL, else "
        "postgresql://postgres@127.0.0.1:5432/postgres); a database is made per test",
    )


@pytest.fixture(autouse=True)
def _secrets_registered_stay_with_their_test():
    """Secrets a test registers for log masking (the published instances' placeholder
    ``xxxx...`` among them) are forgotten after it: they would mask other tests' text."""
    from sagesql.connector import logs

    before = logs.registered_secrets()
    yield
    logs.forget_secrets(keep=before)


@pytest.fixture(autouse=True)
def _body_warnings_start_afresh():
    """Warnings about an instance body are logged once a process (``warn_once``); each
    test is a fresh start, so one that checks the warning sees it whatever ran before."""
    from sagesql.activities.polling.instance import warn_once

    warn_once.cache_clear()


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def reference() -> Path:
    if not REFERENCE.is_dir():
        pytest.fail(f"Sage's published definitions are expected at {REFERENCE}")
    return REFERENCE


@pytest.fixture
def start_sandbox():
    """Start a product's sandbox on a free loopback port: ``start_sandbox("sage_200", rows=10)``.

    Keyword arguments are SandboxConfig fields. Every sandbox started is stopped after the test.
    """
    from sagesql.sandbox.config import SandboxConfig
    from sagesql.sandbox.runner import Sandbox

    started: list[Sandbox] = []

    def start(product: str = "sage_accounting", **config: object) -> Sandbox:
        sandbox = Sandbox(product, SandboxConfig(product=product, **config)).start()  # type: ignore[arg-type]
        started.append(sandbox)
        return sandbox

    yield start
    for sandbox in started:
        sandbox.stop()


@pytest.fixture
def write_sandbox(start_sandbox):
    """start_sandbox for write tests: 20 rows, no rate limit, and every request body it
    received checked against the published definitions afterwards."""
    from test_write_conformance import assert_bodies_conform

    started = []

    def start(product, **config):
        config.setdefault("rows", 20)
        config.setdefault("rate_limit_per_minute", 0)
        sbx = start_sandbox(product, **config)
        started.append(sbx)
        return sbx

    yield start
    for sbx in started:
        assert_bodies_conform(sbx)


def write_connection(sbx, name: str, **extra: str):
    """A connection to the sandbox; one request at a time unless MaxConcurrency is given,
    so that the request log's order is the rows' order."""
    from sagesql.connector.client import SageClient
    from sagesql.connector.properties import validate

    props = {
        **sbx.connection_properties(),
        "OAuthSettingsLocation": f"memory://{name}-{sbx.server.port}",
        "RateLimit": "0",
        "MaxConcurrency": "1",
        **extra,
    }
    return SageClient(validate(props))
