"""A ``sagesql://`` URL as the keywords of ``sagesql.connect``.

::

    sagesql://?Product=Sage200&InitiateOAuth=GETANDREFRESH&OAuthClientId=...
    sagesql://acme                        # the profile acme (profiles.toml)
    sagesql://?Profile=acme&Company=2     # a profile with properties over it
    sagesql://admin:secret@/?Product=SageCRM&URL=https://crm.example.com

Query parameters are connection properties (any case, as everywhere in sagesql);
the host names a profile, the user name and password are ``User`` and ``Password``
(Sage CRM). ``create_engine(..., connect_args={...})`` adds properties over these.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import URL

from sagesql.errors import ConfigurationError


def connect_arguments(url: URL) -> dict[str, Any]:
    """The keywords of ``sagesql.connect`` that a URL names."""
    if url.port is not None or url.database:
        raise ConfigurationError(
            f"a sagesql URL has no port or database ({url.render_as_string()})",
            hint="write sagesql://PROFILE or sagesql://?Product=...&Name=Value",
        )
    out: dict[str, Any] = {}
    for name, value in url.query.items():
        # A repeated parameter: the last one wins, as in a connection string.
        out[name] = value[-1] if isinstance(value, tuple) else value
    profiles = [out.pop(k) for k in list(out) if k.lower() == "profile"]
    if url.host:
        profiles.insert(0, url.host)
    if len(set(profiles)) > 1:
        raise ConfigurationError(
            f"the URL names two profiles ({', '.join(profiles)})",
            hint="name the profile once, as sagesql://NAME or ?Profile=NAME",
        )
    if profiles:
        out["profile"] = profiles[0]
    if url.username:
        out["User"] = url.username
    if url.password is not None:
        out["Password"] = url.password
    return out
