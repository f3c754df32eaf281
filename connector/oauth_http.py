"""OAuth over plain http: allowed for loopback addresses (the sandbox) and nowhere else.

Tokens, codes and the client secret never travel in clear: :func:`permitted` wraps every
call to an OAuth endpoint and refuses an http URL unless it is a loopback address. Around
such a call it also sets ``OAUTHLIB_INSECURE_TRANSPORT`` (oauthlib's own switch for the
same rule), for code that still goes through oauthlib; never for good, since a mistyped
http URL would then send secrets in clear.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit

from sagesql.errors import ConfigurationError

_VARIABLE = "OAUTHLIB_INSECURE_TRANSPORT"
_lock = threading.Lock()
_users = 0


def is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@contextlib.contextmanager
def permitted(url: str, what: str = "OAuthTokenURL") -> Iterator[None]:
    """Around an OAuth call to ``url``: https always; http only to a loopback address."""
    global _users
    if url.lower().startswith("https://"):
        yield
        return
    if not is_loopback(url):
        raise ConfigurationError(
            f"{what} {url} is not https", hint="use the https URL: tokens must not travel in clear"
        )
    with _lock:
        _users += 1
        os.environ[_VARIABLE] = "1"
    try:
        yield
    finally:
        with _lock:
            _users -= 1
            if _users == 0:
                os.environ.pop(_VARIABLE, None)
