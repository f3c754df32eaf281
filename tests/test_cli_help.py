"""Every command and option of the CLI explains itself (help text is part of the interface)."""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperOption

from sagesql.cli.main import app


def _commands(group: Any, prefix: str = "") -> list[tuple[str, Any]]:
    found: list[tuple[str, Any]] = []
    for name, command in getattr(group, "commands", {}).items():
        found.append((f"{prefix}{name}", command))
        found.extend(_commands(command, f"{prefix}{name} "))
    return found


def test_every_command_and_option_has_help() -> None:
    commands = _commands(typer.main.get_command(app))
    assert len(commands) >= 20
    missing = []
    for name, command in commands:
        if not (command.help or command.short_help):
            missing.append(f"command {name}")
        for param in command.params:
            if isinstance(param, TyperOption) and not param.help and "--help" not in param.opts:
                missing.append(f"{name} {'/'.join(param.opts)}")
    assert missing == []
