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
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

from sagesql.errors import ConfigurationError

MEMORY_SCHEME = "memory://"


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

    @classmethod
    def from_response(cls, data: dict[str, Any], now: float | None = None) -> TokenSet:
        """From an OAuth token response (``expires_in`` or requests-oauthlib's ``expires_at``)."""
        now = time.time() if now is None else now
        # expires_in first: oauthlib's expires_at is computed from a rounded time.time(),
        # which is up to half a second late (a quarter of a 2-second token's life).
        expires_at = data.get("expires_at")
        if data.get("expires_in") is not None:
            expires_at = now + float(data["expires_in"])
        scope = data.get("scope")
        if isinstance(scope, list):
            scope = " ".join(scope)
        return cls(
            access_token=str(data["access_token"]),
            refresh_token=data.get("refresh_token"),
            expires_at=float(expires_at) if expires_at is not None else None,
            token_type=str(data.get("token_type", "bearer")),
            scope=scope,
            obtained_at=now,
        )

    def expires_in(self, now: float | None = None) -> float | None:
        if self.expires_at is None:
            return None
        return self.expires_at - (time.time() if now is None else now)

    def expired(self, margin: float = 0.0, now: float | None = None) -> bool:
        left = self.expires_in(now)
        return left is not None and left <= margin

    def as_oauthlib(self, margin: float = 0.0) -> dict[str, Any]:
        """The token dict requests-oauthlib expects (expiry brought forward by ``margin``)."""
        token: dict[str, Any] = {
            "access_token": self.access_token,
            "token_type": self.token_type or "bearer",
        }
        if self.refresh_token:
            token["refresh_token"] = self.refresh_token
        if self.expires_at is not None:
            token["expires_at"] = self.expires_at - margin
            token["expires_in"] = max(0.0, self.expires_at - margin - time.time())
        return token

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
            raise ConfigurationError(
                f"cannot read the token file {self.path}: {type(exc).__name__}",
                hint="delete it (sagesql auth logout) and log in again",
            ) from None
        if not isinstance(data, dict) or not data.get("access_token"):
            return None
        fields = TokenSet.__dataclass_fields__
        return TokenSet(**{k: v for k, v in data.items() if k in fields})

    def save(self, tokens: TokenSet) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(tokens.to_json(), f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def clear(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Exclusive across the threads of this process and across processes (flock)."""
        from filelock import FileLock

        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with self._thread_lock, FileLock(str(self.path) + ".lock", timeout=120):
            yield


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
