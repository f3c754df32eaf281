"""A fresh clone is self-contained: it generates its schemas with nothing beside it.

The clone is of the committed state (uncommitted changes are not in it).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

pytestmark = pytest.mark.slow

# Spelt in pieces so that this file does not hold the text it looks for.
OUTSIDE_PATHS = ("/".join(["..", "shared"]), "/".join(["shared", "reference"]))


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not (REPO / ".git").exists():
        pytest.skip(f"{REPO} is not a git repository: nothing to clone")
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    # The clone is the only thing in its folder: no sibling folder to lean on.
    target = tmp_path_factory.mktemp("alone") / "sagesql"
    result = subprocess.run(
        ["git", "clone", "--quiet", str(REPO), str(target)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert [p.name for p in target.parent.iterdir()] == ["sagesql"]
    return target


def _run(clone: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=clone, capture_output=True, text=True, timeout=300
    )


def test_generator_check_passes_in_a_fresh_clone(clone: Path) -> None:
    # python -m puts the working directory first on sys.path: the clone's own generator runs.
    where = _run(clone, "-c", "import schemas.generator.common as c; print(c.SCHEMAS_DIR)")
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()) == clone / "schemas"
    result = _run(clone, "-m", "schemas.generator", "--check")
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_file_in_a_fresh_clone_points_outside_it(clone: Path) -> None:
    offenders = []
    for path in sorted(clone.rglob("*")):
        if ".git" in path.relative_to(clone).parts or not path.is_file():
            continue
        data = path.read_bytes()
        if b"\0" in data:
            continue  # not text
        text = data.decode("utf-8", errors="replace")
        offenders += [
            f"{path.relative_to(clone)}: {needle}" for needle in OUTSIDE_PATHS if needle in text
        ]
    assert not offenders
