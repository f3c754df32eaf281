"""mypy passes on the library, checked under its import name from a fresh checkout.

The repository root is the package ``sagesql`` (pyproject maps it), which mypy cannot
see from the checkout itself: the test links the checkout as ``<tmp>/sagesql`` and runs
``mypy -p sagesql`` there, with the settings of pyproject.toml.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_mypy_finds_no_errors_in_the_library(tmp_path: Path) -> None:
    (tmp_path / "sagesql").symlink_to(REPO, target_is_directory=True)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            str(REPO / "pyproject.toml"),
            "--cache-dir",
            str(tmp_path / "cache"),
            "-p",
            "sagesql",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
    assert "Success: no issues found" in result.stdout
