"""Where OAuth tokens are kept between runs: a file (atomic, 0600, locked) or process memory.

``OAuthSettingsLocation`` names the store: a file path, or ``memory://<id>`` for tokens
shared by the connections of one process that use that id. Refreshing must be
single-flight across threads *and* processes, because Sage retires a refresh token
when it is used: callers take :meth:`TokenStore.locked`, re-read the store, refresh
only if the stored token is still the stale one, write, and unlock.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

from sagesql.connector import files
from sagesql.errors import ConfigurationError

MEMORY_SCHEME = "memory://"
LOCK_WAIT = 120.0  # seconds a refresh waits for another process's refresh of the same store


class BadTokens(ValueError):
    """Token fields that are missing or of the wrong type (a token answer or a token file)."""


def _text(data: Mapping[str, Any], name: str, *, required: bool = False) -> str | None:
    """A token field that goes into an HTTP header or a form: text without spaces or
    control characters (a newline in a token would split the header it is sent in)."""
    value = data.get(name)
    if value is None or (value == "" and not required):
        if required:
            raise BadTokens(f"{name} is missing")
        return None
    if not isinstance(value, str):
        raise BadTokens(f"{name} is {type(value).__name__}, not text")
    if not value or any(c.isspace() or not c.isprintable() for c in value):
        raise BadTokens(f"{name} is empty or holds spaces or control characters")
    return value


def _label(data: Mapping[str, Any], name: str) -> str | None:
    """A descriptive field (token_type, scope, origin): text, or a list of words for scope."""
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        value = " ".join(value)
    if not isinstance(value, str) or not value.isprintable():
        raise BadTokens(f"{name} is not text")
    return value


def _number(data: Mapping[str, Any], name: str) -> float | None:
    """Seconds: a JSON number (or numeric text, as some servers send), finite."""
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise BadTokens(f"{name} is {type(value).__name__}, not a number")
    try:
        number = float(value)
    except ValueError:
        raise BadTokens(f"{name} is not a number") from None
    if not math.isfinite(number) or abs(number) > 1e11:  # about 3000 years
        raise BadTokens(f"{name} is out of range")
    return number


@dataclass(frozen=True)
class TokenSet:
    """One token response, with the absolute time the access token expires."""

    access_token: str
    refresh_token: str | None = None
    expires_at: float | None = None  # seconds since the epoch
    token_type: str = "bearer"
    scope: str | None = None
    obtained_at: float | None = None
    # Fingerprint of the refresh token the user gave (InitiateOAuth=REFRESH): stored tokens
    # descend from it; a different one given later starts a new chain.
    origin: str | None = None
    # When and how the answer to a refresh made with this refresh token was lost: Sage may
    # have retired it (auth.py says what follows).
    refresh_lost: str | None = None

    @classmethod
    def from_response(cls, data: Mapping[str, Any], now: float | None = None) -> TokenSet:
        """From an OAuth token response (``expires_in`` or requests-oauthlib's ``expires_at``);
        :class:`BadTokens` when a field is missing or of the wrong type."""
        if not isinstance(data, Mapping):
            raise BadTokens("the answer is not a JSON object")
        now = time.time() if now is None else now
        # expires_in first: oauthlib's expires_at is computed from a rounded time.time(),
        # which is up to half a second late (a quarter of a 2-second token's life).
        expires_at = _number(data, "expires_at")
        expires_in = _number(data, "expires_in")
        if expires_in is not None:
            expires_at = now + expires_in
        access_token = _text(data, "access_token", required=True)
        assert access_token is not None
        return cls(
            access_token=access_token,
            refresh_token=_text(data, "refresh_token"),
            expires_at=expires_at,
            token_type=_label(data, "token_type") or "bearer",
            scope=_label(data, "scope"),
            obtained_at=now,
        )

    @classmethod
    def from_json(cls, data: Any) -> TokenSet:
        """From what :meth:`to_json` wrote (a token file); :class:`BadTokens` when a field
        is missing or of the wrong type. Unknown fields are ignored."""
        if not isinstance(data, Mapping):
            raise BadTokens("it is not a JSON object")
        access_token = _text(data, "access_token", required=True)
        assert access_token is not None
        lost = data.get("refresh_lost")
        if lost is not None and not isinstance(lost, str):
            raise BadTokens("refresh_lost is not text")
        return cls(
            access_token=access_token,
            refresh_token=_text(data, "refresh_token"),
            expires_at=_number(data, "expires_at"),
            token_type=_label(data, "token_type") or "bearer",
            scope=_label(data, "scope"),
            obtained_at=_number(data, "obtained_at"),
            origin=_label(data, "origin"),
            refresh_lost=lost,
        )

    def expires_in(self, now: float | None = None) -> float | None:
        if self.expires_at is None:
            return None
        return self.expires_at - (time.time() if now is None else now)

    def expired(self, margin: float = 0.0, now: float | None = None) -> bool:
        left = self.expires_in(now)
        return left is not None and left <= margin

    @property
    def lifetime(self) -> float | None:
        if self.expires_at is None or self.obtained_at is None:
            return None
        return self.expires_at - self.obtained_at

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def __repr__(self) -> str:  # never show a token
        return f"TokenSet(expires_at={self.expires_at!r}, scope={self.scope!r})"


class TokenStore(Protocol):
    """What the OAuth code needs of a token store."""

    location: str

    def load(self) -> TokenSet | None: ...

    def save(self, tokens: TokenSet) -> None: ...

    def clear(self) -> None: ...

    def locked(self) -> contextlib.AbstractContextManager[None]: ...


class FileTokenStore:
    """Tokens in a JSON file: written atomically (temp file + rename) with mode 0600."""

    _thread_locks: ClassVar[dict[str, threading.RLock]] = {}
    _registry_lock = threading.Lock()

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        self.location = str(self.path)
        with self._registry_lock:
            self._thread_lock = self._thread_locks.setdefault(
                str(self.path.absolute()), threading.RLock()
            )

    def load(self) -> TokenSet | None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise self._damaged(type(exc).__name__) from None
        if not isinstance(data, dict) or not data.get("access_token"):
            return None
        try:
            return TokenSet.from_json(data)
        except BadTokens as exc:
            raise self._damaged(str(exc)) from None

    def _damaged(self, why: str) -> ConfigurationError:
        return ConfigurationError(
            f"cannot read the token file {self.path}: {why}",
            hint="delete it (sagesql auth logout) and log in again (sagesql auth login)",
        )

    def save(self, tokens: TokenSet) -> None:
        files.write_private(self.path, json.dumps(tokens.to_json()))

    def clear(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Exclusive across the threads of this process and across processes (flock)."""
        with (
            self._thread_lock,
            files.held(
                str(self.path) + ".lock",
                timeout=LOCK_WAIT,
                busy=self._busy,
                what="token store's lock file",
            ),
        ):
            yield

    def _busy(self, held_by: str) -> ConfigurationError:
        return ConfigurationError(
            f"the token store {self.path} stayed locked for {LOCK_WAIT:g} s ({held_by})",
            hint="a refresh or login in that process is stuck: end it, then try again",
        )


class MemoryTokenStore:
    """Tokens kept in this process, shared by every connection naming the same id."""

    _tokens: ClassVar[dict[str, TokenSet]] = {}
    _locks: ClassVar[dict[str, threading.RLock]] = {}
    _registry_lock = threading.Lock()

    def __init__(self, name: str) -> None:
        self.name = name
        self.location = MEMORY_SCHEME + name
        with self._registry_lock:
            self._lock = self._locks.setdefault(name, threading.RLock())

    def load(self) -> TokenSet | None:
        return self._tokens.get(self.name)

    def save(self, tokens: TokenSet) -> None:
        self._tokens[self.name] = tokens

    def clear(self) -> None:
        self._tokens.pop(self.name, None)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        with self._lock:
            yield


def default_location(
    data_dir: Path, *, profile: str | None, product: str, url: str, client_id: str | None
) -> Path:
    """One file per profile and product, and per API and client, so that two connections
    (a sandbox and the real API, two apps) never share a token file by accident."""
    digest = hashlib.sha256(f"{url}\n{client_id or ''}".encode()).hexdigest()[:10]
    return data_dir / "tokens" / f"{profile or 'default'}-{product}-{digest}.json"


def open_store(location: str) -> TokenStore:
    if location.startswith(MEMORY_SCHEME):
        name = location[len(MEMORY_SCHEME) :]
        if not name:
            raise ConfigurationError(
                "OAuthSettingsLocation memory:// needs an id",
                hint="write memory://<id>, e.g. memory://acme",
            )
        return MemoryTokenStore(name)
    return FileTokenStore(location)
