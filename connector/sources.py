"""Where connection properties come from: profile file, environment, connection string, keywords.

This is the one module that reads the environment. Later sources win::

    profile (TOML)  <  SAGESQL_CONNECTION  <  SAGESQL_<PROPERTY>  <  connection string  <  keywords

Profiles live in ``profiles.toml`` in the user's config directory (``SAGESQL_CONFIG_DIR``
overrides it), one table per profile::

    [profiles.acme]
    Product = "SageAccounting"
    OAuthClientId = "..."

Token files default to the user's data directory (``SAGESQL_DATA_DIR`` overrides it).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sagesql.connector import connection_string
from sagesql.connector.properties import PROPERTIES, Settings, lookup, validate
from sagesql.errors import ConfigurationError

ENV_PREFIX = "SAGESQL_"
ENV_CONNECTION = "SAGESQL_CONNECTION"
# Variables of sagesql itself, not connection properties.
ENV_RESERVED = {
    "SAGESQL_CONNECTION",
    "SAGESQL_CONFIG_DIR",
    "SAGESQL_DATA_DIR",
    "SAGESQL_DEBUG",
    "SAGESQL_PROFILE",
    "SAGESQL_SECRET_KEY",  # the service's key (sagesql serve)
    "SAGESQL_DATABASE",  # the service's database URL
}


def config_dir() -> Path:
    if os.environ.get("SAGESQL_CONFIG_DIR"):
        return Path(os.environ["SAGESQL_CONFIG_DIR"])
    import platformdirs

    return Path(platformdirs.user_config_dir("sagesql", appauthor=False))


def data_dir() -> Path:
    if os.environ.get("SAGESQL_DATA_DIR"):
        return Path(os.environ["SAGESQL_DATA_DIR"])
    import platformdirs

    return Path(platformdirs.user_data_dir("sagesql", appauthor=False))


def profiles_file() -> Path:
    return config_dir() / "profiles.toml"


def _toml(path: Path) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(
            f"profile file {path} is not valid TOML: {exc}", hint="fix the file's syntax"
        ) from None


def profile_properties(name: str) -> dict[str, Any]:
    """The properties of one profile, or ConfigurationError naming the profiles there are."""
    path = profiles_file()
    data = _toml(path) if path.exists() else {}
    profiles = data.get("profiles", {})
    if name not in profiles:
        known = ", ".join(sorted(profiles)) or "none"
        raise ConfigurationError(
            f"no profile {name!r} in {path} (profiles: {known})",
            hint=f"add a [profiles.{name}] table to that file",
        )
    section = profiles[name]
    if not isinstance(section, dict):
        raise ConfigurationError(
            f"profile {name!r} in {path} is not a table",
            hint=f"write it as [profiles.{name}] with Name = value lines",
        )
    return dict(section)


def environment_properties(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Properties from SAGESQL_CONNECTION, then SAGESQL_<PROPERTY> variables."""
    env = os.environ if environ is None else environ
    out: dict[str, Any] = {}
    if env.get(ENV_CONNECTION):
        out.update(connection_string.parse(env[ENV_CONNECTION]))
    for key, value in env.items():
        if key.startswith(ENV_PREFIX) and key not in ENV_RESERVED:
            name = key[len(ENV_PREFIX) :]
            prop = lookup(name)
            # An unknown SAGESQL_ variable is reported like any unknown property, by the
            # name the user must look for: the variable's.
            out[prop.name if prop else key] = value
    return out


def _merge(*layers: Mapping[str, Any]) -> dict[str, Any]:
    """Later layers win; names compared as properties.lookup compares them."""
    merged: dict[str, Any] = {}
    canonical: dict[str, str] = {}
    for layer in layers:
        for name, value in layer.items():
            prop = lookup(name)
            key = prop.name if prop else name
            if key in canonical:
                merged.pop(canonical[key], None)
            canonical[key] = name
            merged[name] = value
    return merged


def load_settings(
    connection: str | None = None,
    *,
    profile: str | None = None,
    use_environment: bool = True,
    defaults: Mapping[str, Any] | None = None,
    **keywords: Any,
) -> Settings:
    """Settings from every source (see the module docstring); every problem at once.

    ``defaults`` is a layer below the profile: what a command assumes when no source
    says otherwise (``sagesql auth status`` assumes InitiateOAuth=GETANDREFRESH).
    """
    profile = profile or (os.environ.get("SAGESQL_PROFILE") if use_environment else None)
    layers: list[Mapping[str, Any]] = [defaults or {}]
    if profile:
        layers.append(profile_properties(profile))
    if use_environment:
        layers.append(environment_properties())
    if connection:
        layers.append(connection_string.parse(connection))
    layers.append({k: v for k, v in keywords.items() if v is not None})
    return validate(_merge(*layers), profile=profile)


def property_table() -> list[dict[str, Any]]:
    """Every property with its default and meaning (``sagesql properties``)."""
    return [
        {
            "name": p.name,
            "default": p.default,
            "values": list(p.choices) or p.kind,
            "secret": p.secret,
            "description": p.help,
        }
        for p in PROPERTIES
    ]
