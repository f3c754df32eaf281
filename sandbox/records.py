"""Record paths: reading and writing the nested fields of API records by their JSON path."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def get_path(record: Any, path: Sequence[str]) -> Any:
    """The value at ``path``, or None where the path leaves the record."""
    node: Any = record
    for key in path:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node


def has_path(record: Any, path: Sequence[str]) -> bool:
    node: Any = record
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return False
        node = node[key]
    return True


def set_path(record: dict[str, Any], path: Sequence[str], value: Any) -> None:
    """Set the value at ``path``, creating the objects on the way."""
    node = record
    for key in path[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = node[key] = {}
        node = child
    node[path[-1]] = value


def nest(values: dict[tuple[str, ...], Any]) -> dict[str, Any]:
    """A nested record from values keyed by JSON path."""
    record: dict[str, Any] = {}
    for path, value in values.items():
        set_path(record, path, value)
    return record
