"""The README's promises: its two quick-start commands, and CI running the second."""

from __future__ import annotations

import re
from pathlib import Path

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


def readme_poll_example() -> dict[str, object]:
    """The configuration of the README's polling section (its TOML block)."""
    from sagesql.activities.polling.config import parse_text

    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Polling for changes", 1)[1]
    block = re.search(r"```toml\n(.*?)```", section, re.S)
    assert block, "the polling section has a toml block"
    return parse_text(block.group(1), Path("acme.toml"))


def test_the_readme_poll_example_filters_rows_of_the_sage200_sandbox(start_sandbox) -> None:
    """Each table and filter of the example is valid and matches rows (a filter comparing a
    text column with a number, such as ``queried = 0``, matched none)."""
    from sagesql.activities.clients import connected
    from sagesql.activities.polling.config import from_native
    from sagesql.activities.polling.tables import resolve
    from sagesql.engine.pipeline import run

    data = readme_poll_example()
    config = from_native({**data, "connection": None}, None)
    sbx = start_sandbox("sage_200", rows=20, rate_limit_per_minute=0)
    with connected(**sbx.client_properties()) as client:
        specs = resolve(config, client.catalog, "sage_200")
        filtered = [s for s in specs if s.filter]
        assert filtered, "the example shows a filter"
        for spec in filtered:
            result = run(client, f"SELECT count(*) FROM {spec.table.name} WHERE {spec.filter}")
            ((count,),) = list(result)
            assert count > 0, (spec.name, spec.filter)
