"""The version of sagesql (one place: the package, pyproject.toml and the User-Agent read it)."""

__version__ = "0.1.0"
