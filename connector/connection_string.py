"""Connection strings: ``Name=Value;Name='quoted; value'`` to pairs and back.

Names are kept as written (properties.validate matches them case-insensitively);
values may be quoted with ' or " (a doubled quote inside is a literal one), so they
can hold ``;`` and ``=``. Secrets are never echoed in errors.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sagesql.connector.properties import SECRET_NAMES, lookup
from sagesql.errors import ConfigurationError


def parse(text: str) -> dict[str, str]:
    """Pairs of a connection string, in order; a later repeat of a name wins."""
    pairs: dict[str, str] = {}
    problems: list[str] = []
    last: str | None = None  # the name of the pair before, for messages
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i] in " \t\r\n;":
            i += 1
        if i >= n:
            break
        eq = text.find("=", i)
        semi = text.find(";", i)
        if eq == -1 or (semi != -1 and semi < eq):
            end = n if semi == -1 else semi
            problems.append(_no_equals(text[i:end].strip(), last))
            i = end + 1
            continue
        name = text[i:eq].strip()
        i = eq + 1
        while i < n and text[i] in " \t":
            i += 1
        if i < n and text[i] in "'\"":
            quote, i, chars = text[i], i + 1, []
            while True:
                if i >= n:
                    problems.append(f"the value of {name} has no closing {quote}")
                    break
                if text[i] == quote:
                    if i + 1 < n and text[i + 1] == quote:
                        chars.append(quote)
                        i += 2
                        continue
                    i += 1
                    break
                chars.append(text[i])
                i += 1
            value = "".join(chars)
            while i < n and text[i] in " \t":
                i += 1
            if i < n and text[i] != ";":
                problems.append(f"unexpected text after the quoted value of {name}")
                while i < n and text[i] != ";":
                    i += 1
        else:
            end = text.find(";", i)
            end = n if end == -1 else end
            value = text[i:end].strip()
            i = end
        if not name:
            problems.append("a value without a property name")
            continue
        if _is_secret(last) and lookup(name) is None:
            # Most likely the rest of an unquoted secret that holds ';': not echoed.
            problems.append(
                f"the text after {last} is not a property (quote a value that contains ';')"
            )
            last = None
            continue
        pairs[name] = value
        last = name
    if problems:
        raise ConfigurationError(
            "bad connection string: " + "; ".join(problems),
            hint="write Name=Value pairs separated by ';', quoting values that contain ';'",
        )
    return pairs


def _is_secret(name: str | None) -> bool:
    prop = lookup(name) if name else None
    return prop is not None and prop.secret


def _no_equals(piece: str, after: str | None) -> str:
    """The problem of a piece without '=', never echoing what may be part of a secret.

    ``Password=a;b`` cuts an unquoted password at the ';' and ``Password hunter2`` lacks
    the '=': in both the piece is (part of) a secret.
    """
    if _is_secret(after):
        return f"the text after {after} has no '=' (quote a value that contains ';')"
    squashed = "".join(ch for ch in piece.lower() if ch not in " \t_-")
    for name in sorted(SECRET_NAMES):
        if squashed.startswith(name.lower()):
            return f"the text starting with {name} has no '=' (write {name}=value)"
    return f"{piece!r} has no '=' (write Name=Value)"


def compose(pairs: Mapping[str, Any]) -> str:
    """A connection string for the pairs (None values left out), quoting where needed."""
    parts = []
    for name, value in pairs.items():
        if value is None:
            continue
        text = str(value)
        if any(ch in text for ch in ";'\"") or text != text.strip():
            text = "'" + text.replace("'", "''") + "'"
        parts.append(f"{name}={text}")
    return ";".join(parts)
