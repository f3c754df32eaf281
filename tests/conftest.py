"""Shared fixtures: paths to the repository and to Sage's published definitions."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
REFERENCE = REPO.parent / "shared" / "reference"


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
