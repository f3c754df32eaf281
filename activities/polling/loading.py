"""Reading a poll configuration file: the native TOML/JSON, or a platform instance JSON.

Above both readers (config.py, instance.py), so that neither imports the other's caller.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from sagesql.activities.polling import instance
from sagesql.activities.polling.config import PollConfig, from_native, parse_text
from sagesql.errors import ConfigurationError


def load(path: str | Path, *, state: str | Path | None = None) -> PollConfig:
    """The configuration in ``path``: native TOML/JSON, or a platform instance JSON."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(
            f"cannot read the poll configuration {path}: {exc.strerror}",
            hint="give --config an existing TOML or JSON file",
        ) from None
    data = parse_text(text, path)
    if instance.is_instance(data):
        config = instance.from_instance(data, path)
    else:
        config = from_native(data, path)
    if state is not None:
        config = replace(config, state=Path(state))
    return config
