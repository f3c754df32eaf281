"""The README's promises: its two quick-start commands, and CI running the second."""

from __future__ import annotations

import re

from conftest import REPO


def readme_commands() -> list[str]:
    """The commands of the README's quick-start block: the main job, then the tests."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Quick start", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block, "the quick start has a sh block"
    return [line for line in block.group(1).splitlines() if line and not line.startswith("#")]


def test_readme_has_exactly_two_quick_start_commands() -> None:
    commands = readme_commands()
    assert len(commands) == 2
    assert "sagesql " in commands[0]
    assert commands[1].endswith("pytest")


def test_ci_runs_the_readme_test_command() -> None:
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    ci_lines = [line.strip() for line in ci.splitlines()]
    assert readme_commands()[1] in ci_lines
