"""The wheel: one import name, a working console script, from a fresh virtual environment."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from conftest import REPO
from test_readme import readme_commands

pytestmark = pytest.mark.slow


def _run(*args: str | Path, **kwargs: object) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(a) for a in args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=kwargs.pop("cwd", "/"),
        **kwargs,
    )  # type: ignore[call-overload]
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Built from a private copy of the tree: setuptools writes build/ and *.egg-info in the
    # source folder, which concurrent runs (or a developer's editable install) would share.
    source = tmp_path_factory.mktemp("src") / "sagesql"
    shutil.copytree(
        REPO,
        source,
        ignore=shutil.ignore_patterns(
            ".git",
            ".venv",
            "build",
            "dist",
            "*.egg-info",
            "__pycache__",
            ".*_cache",
            ".hypothesis",
            "results",
        ),
    )
    out = tmp_path_factory.mktemp("dist")
    _run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "--quiet",
        "-w",
        out,
        source,
    )
    (found,) = out.glob("sagesql-*.whl")
    return found


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel installed; its dependencies come from the test environment."""
    root = tmp_path_factory.mktemp("venv")
    _run(sys.executable, "-m", "venv", "--without-pip", root)
    python = root / "bin" / "python"
    _run(
        sys.executable,
        "-m",
        "pip",
        "--python",
        python,
        "install",
        "--quiet",
        "--no-deps",
        "--no-index",
        wheel,
    )
    site = Path(
        _run(
            python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"
        ).stdout.strip()
    )
    # Only a path entry: the test environment's .pth files (its editable sagesql) stay inert.
    (site / "zz_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return root


def test_wheel_holds_only_the_sagesql_package(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"sagesql"}
    assert "sagesql/schemas/catalog.py" in names
    assert "sagesql/schemas/index.json" in names
    assert "sagesql/schemas/sage_accounting/contacts.json" in names
    assert "sagesql/py.typed" in names
    assert not any(n.startswith("sagesql/tests/") or n.startswith("sagesql/bench/") for n in names)
    assert not any("/generator/" in n for n in names), "the generator is a development tool"
    assert not any("/definitions/" in n for n in names), "Sage's definitions are not installed"


def test_installed_package_runs_from_a_fresh_venv(venv: Path) -> None:
    python = venv / "bin" / "python"
    where = _run(python, "-c", "import sagesql; print(sagesql.__file__)").stdout
    assert str(venv) in where
    _run(
        python,
        "-c",
        "import importlib.util as u; "
        "assert all(u.find_spec(n) is None for n in ('connector', 'activities', 'schemas', "
        "'sandbox', 'cli'))",
    )
    help_text = _run(venv / "bin" / "sagesql", "--help").stdout
    assert "tables" in help_text and "describe" in help_text
    tables = _run(venv / "bin" / "sagesql", "tables", "--format", "json").stdout
    assert '"contacts"' in tables


def test_readme_main_command_runs_from_the_installed_package(venv: Path) -> None:
    main_command = readme_commands()[0]
    sagesql_part = main_command.split("&&")[-1].strip()
    assert sagesql_part.startswith("sagesql ")
    result = subprocess.run(
        sagesql_part,
        shell=True,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "COLUMNS": "200"},
        cwd="/",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
