"""Where OAuth tokens are kept between runs: a file (atomic, 0600, locked) or process memory.

``OAuthSettingsLocation`` names the store: a file path, ``memory://<id>`` for tokens
shared by the connections of one process that use that id, or
``postgresql://USER@HOST/DATABASE#<id>`` for tokens shared by processes on any number
of machines (a row of ``sagesql_tokens``, locked with ``SELECT ... FOR UPDATE`` during
a refresh; psycopg is imported only then, so ``import sagesql`` stays light). Refreshing must be
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
from pathlib import Path
from typing import Any, ClassVar, Protocol

import msgspec

from sagesql.connector import files
from sagesql.errors import ConfigurationError

MEMORY_SCHEME = "memory://"
POSTGRESQL_SCHEMES = ("postgresql://", "postgres://")
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


class TokenSet(msgspec.Struct, frozen=True):
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
        return msgspec.structs.asdict(self)

    def __rich_repr__(self) -> list[tuple[str, Any]]:  # never show a token
        # rich prefers this to __repr__, and a Struct's own lists every field, tokens too
        return [("expires_at", self.expires_at), ("scope", self.scope)]

    def __repr__(self) -> str:
        return f"TokenSet({', '.join(f'{k}={v!r}' for k, v in self.__rich_repr__())})"


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


class PostgresTokenStore:
    """Tokens in a PostgreSQL table, one row per id, refreshed under the row's lock.

    :meth:`locked` opens a transaction that holds the row (``SELECT ... FOR UPDATE``):
    :meth:`load` and :meth:`save` inside it read and write in that transaction, which
    commits when the block ends, so a second process (any machine) waits, then reads
    the pair the first one stored. A process killed meanwhile drops its connection
    and with it the lock. Tokens are stored as JSON, as the token file holds them:
    guard the database as you would the file.
    """

    _thread_locks: ClassVar[dict[str, threading.RLock]] = {}
    _registry_lock = threading.Lock()
    TABLE = "sagesql_tokens"

    def __init__(self, location: str) -> None:
        url, _, name = location.partition("#")
        self.url = "postgresql://" + url.split("://", 1)[1]
        self.name = name or "default"
        self.location = location
        self._held: Any = None  # the locked row's connection, while locked() runs
        self._holder: int | None = None
        self._depth = 0
        with self._registry_lock:
            self._thread_lock = self._thread_locks.setdefault(location, threading.RLock())
        self._ensure_table()

    def _connect(self) -> Any:
        try:
            import psycopg
        except ImportError:
            raise ConfigurationError(
                "OAuthSettingsLocation postgresql:// needs psycopg",
                hint="pip install 'sagesql[service]'",
            ) from None
        try:
            return psycopg.connect(self.url, connect_timeout=10)
        except psycopg.Error as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigurationError(
                f"cannot reach the token store {self._shown()}: {first}",
                hint="check OAuthSettingsLocation's URL and that the server runs",
            ) from None

    def _shown(self) -> str:
        head, _, tail = self.url.partition("://")
        return f"{head}://{tail.rsplit('@', 1)[-1]}#{self.name}"  # no user or password

    def _ensure_table(self) -> None:
        with self._connect() as conn:
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {self.TABLE} "
                "(name text PRIMARY KEY, data text, updated timestamptz DEFAULT now())"
            )

    def _mine(self) -> Any:
        return self._held if self._holder == threading.get_ident() else None

    def load(self) -> TokenSet | None:
        conn = self._mine()
        if conn is not None:
            row = conn.execute(
                f"SELECT data FROM {self.TABLE} WHERE name = %s", (self.name,)
            ).fetchone()
        else:
            with self._connect() as own:
                row = own.execute(
                    f"SELECT data FROM {self.TABLE} WHERE name = %s", (self.name,)
                ).fetchone()
        if row is None or not row[0]:
            return None
        try:
            return TokenSet.from_json(json.loads(row[0]))
        except (ValueError, BadTokens) as exc:
            raise ConfigurationError(
                f"the tokens in {self._shown()} are damaged: {exc}",
                hint="log in again (sagesql auth login) to replace them",
            ) from None

    def _write(self, data: str | None) -> None:
        sql = (
            f"INSERT INTO {self.TABLE} (name, data) VALUES (%s, %s) ON CONFLICT (name) "
            "DO UPDATE SET data = excluded.data, updated = now()"
        )
        conn = self._mine()
        if conn is not None:
            conn.execute(sql, (self.name, data))
        else:
            with self._connect() as own:
                own.execute(sql, (self.name, data))

    def save(self, tokens: TokenSet) -> None:
        self._write(json.dumps(tokens.to_json()))

    def clear(self) -> None:
        self._write(None)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Exclusive across threads, processes and machines: the row locked FOR UPDATE."""
        with self._thread_lock:
            if self._depth == 0:
                conn = self._connect()
                conn.execute(
                    f"INSERT INTO {self.TABLE} (name) VALUES (%s) ON CONFLICT DO NOTHING",
                    (self.name,),
                )
                conn.commit()
                conn.execute(f"SET lock_timeout = '{int(LOCK_WAIT)}s'")
                conn.execute(f"SELECT 1 FROM {self.TABLE} WHERE name = %s FOR UPDATE", (self.name,))
                self._held, self._holder = conn, threading.get_ident()
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0:
                    conn, self._held, self._holder = self._held, None, None
                    try:
                        conn.commit()  # what was saved stays saved, whatever followed
                    finally:
                        conn.close()


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
    if location.startswith(POSTGRESQL_SCHEMES):
        return PostgresTokenStore(location)
    return FileTokenStore(location)
