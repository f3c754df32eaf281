"""The examples in the library's docstrings run, and say what they show."""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
NOT_LIBRARY = {"tests", "bench", "build", ".venv", "generator", "definitions"}


def with_examples() -> list[str]:
    names = []
    for path in sorted(REPO.rglob("*.py")):
        rel = path.relative_to(REPO)
        if NOT_LIBRARY.intersection(rel.parts) or ">>>" not in path.read_text(encoding="utf-8"):
            continue
        parts = ["sagesql", *rel.with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        names.append(".".join(parts))
    return names


def test_some_modules_have_examples() -> None:
    assert len(with_examples()) >= 5


@pytest.mark.parametrize("name", with_examples())
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    failed, attempted = doctest.testmod(module, optionflags=doctest.ELLIPSIS, verbose=False)
    assert attempted > 0, f"{name} has '>>>' but doctest found no example"
    assert failed == 0, f"{failed} of {attempted} examples failed in {name} (run with -s to see)"
