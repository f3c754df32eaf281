"""The HTTP transport: one requests session per connection, with retries, rate limit and paging.

``HTTPTransport.request`` sends one API call and either returns the answer or raises an
error of the tree. Around each call:

- the token bucket (``RateLimit`` per minute) is waited on first;
- 429 is retried after ``Retry-After`` (seconds or an HTTP date), 500/502/503/504,
  connection errors, timeouts and cut bodies after an exponential backoff with full
  jitter, at most ``max_attempts`` times and within ``2 × Timeout`` seconds in all;
- a request that is not idempotent (POST, PATCH) is retried only when it provably did
  not reach Sage: the connection could not be made, or Sage answered 429;
- on 401 the auth object may refresh its token once (``refresh_after_401``), else
  :class:`AuthError` says how to get a new one;
- other error answers become exceptions through :mod:`api_errors`.

Nothing is unbounded (a server that misbehaves gets a one-line error, never a hang):

- time: each attempt must be over, from connecting to the last byte of the answer,
  within ``Timeout`` seconds: a deadline watched by one thread that shuts the
  connection when it passes (a read timeout alone lets a server trickling a byte a
  second hold a request forever); a request with its retries ends within its retry
  budget. A refused connection is tried again for at most ``REFUSED_BUDGET`` seconds,
  then the error names the address;
- size: an answer larger than ``MaxResponseSize`` (64 MiB, far above any Sage page)
  is cut there and is an error; bodies are read in chunks, never whole;
- redirects: none is followed. A 3xx answer is an error naming the ``Location`` (and
  the URL to set when it is the API's own address moved): following one would turn a
  POST into a GET, or send the token to another host;
- paging: :class:`paging.PageGuard` stops a list whose pages repeat, outrun the total
  the API gave, or pass ``MAX_PAGES``;
- paths: :func:`path_with` fills ``{key}``-style placeholders, refusing a value that
  would change the request's target (``..``, ``/``...) before anything is sent.

Paging is done by paginator objects (:mod:`paging`): ``pages`` streams pages lazily,
``pages_parallel`` keeps up to ``MaxConcurrency`` requests in flight once the total
is known (and at most twice as many pages read ahead of the reader) and still yields
pages in order.
"""

from __future__ import annotations

import contextlib
import email.utils
import heapq
import itertools
import logging
import math
import random
import re
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote, unquote, urljoin, urlsplit

import msgspec
import requests
import requests.auth
import urllib3.exceptions
import urllib3.poolmanager
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.poolmanager import PoolManager

from sagesql.connector import api_errors, logs
from sagesql.connector.paging import MAX_PAGES, Page, PageGuard, PageRequest, Paginator, Record
from sagesql.connector.properties import Settings
from sagesql.connector.throttle import TokenBucket
from sagesql.errors import (
    APIError,
    DataError,
    Error,
    InterfaceError,
    NotSupportedError,
    OperationalError,
    RetriableAPIError,
)
from sagesql.schemas.catalog import Product
from sagesql.version import __version__

log = logging.getLogger(logs.HTTP_LOGGER)

IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
RETRY_STATUSES = frozenset({500, 502, 503, 504})
MAX_ATTEMPTS = 6
BACKOFF_BASE = 0.5  # seconds; attempt n waits up to base * 2**(n-1), capped
BACKOFF_CAP = 30.0
CONNECT_TIMEOUT_CAP = 30.0
REFUSED_BUDGET = 1.5  # seconds a refused connection is tried again: then the URL is wrong
MiB = 2**20
CHUNK = 64 * 1024  # bytes read at a time from an answer
# Pages asked for and not yet taken by the reader, per page request in flight.
PAGES_AHEAD = 2
# Pages read one at a time before a list without a total in its pages (Sage 200) is
# counted to plan parallel requests. Reading in turn takes one request per round trip
# and never one too many; counting takes one request more and then MaxConcurrency
# pages a round trip. Up to three pages, reading in turn is as fast (1+1+1 round trips
# against first page, count, the other pages at once) and a request cheaper; a longer
# list pays the count and one or two round trips more than counting after one page.
COUNT_AFTER = 3


class _Retry(Exception):
    """An attempt failed in a way worth another try (internal to ``_send``)."""

    def __init__(
        self,
        reason: str,
        *,
        status: int | None = None,
        wait: float | None = None,
        kind: str = "busy",
    ):
        super().__init__(reason)
        self.reason, self.status, self.wait = reason, status, wait
        # busy (5xx, drops), throttled (429), slow (timeouts), refused, unreached: the hint
        self.kind = kind


def retry_after(response: requests.Response) -> float | None:
    """Seconds the server asks to wait: ``Retry-After`` in seconds or as an HTTP date.

    A date is measured from the answer's own ``Date`` header when there is one, so a
    server whose clock differs from ours is still understood.
    """
    value = (response.headers.get("Retry-After") or "").strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    now = datetime.now(timezone.utc)
    date = response.headers.get("Date")
    if date:
        with contextlib.suppress(TypeError, ValueError, IndexError):
            now = email.utils.parsedate_to_datetime(date)
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    if now.tzinfo is None:
        now = now.replace(tzinfo=timezone.utc)
    return max(0.0, (when - now).total_seconds())


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception, its causes, contexts, arguments and urllib3 reasons, each once."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        item = todo.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        yield item
        linked = [item.__cause__, item.__context__, getattr(item, "reason", None), *item.args]
        todo.extend(x for x in linked if isinstance(x, BaseException))


def never_reached(exc: requests.RequestException) -> bool:
    """True when the request provably did not reach the server: no connection was made.

    Refused connections, failed name look-ups and connect timeouts qualify (urllib3's
    ``NewConnectionError``, ``NameResolutionError`` and ``ConnectTimeoutError``); a
    connection reset, a read timeout or a cut answer do not: Sage may have acted.
    """
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    if not isinstance(exc, requests.exceptions.ConnectionError) or isinstance(
        exc, requests.exceptions.SSLError
    ):
        return False
    return any(
        isinstance(
            e, urllib3.exceptions.NewConnectionError | urllib3.exceptions.ConnectTimeoutError
        )
        for e in _chain(exc)
    )


def _failure(exc: requests.RequestException) -> str:
    """A few words for a failed attempt."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return "connect timed out"
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return "read timed out"
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return "the answer was cut short"
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS failed"
    if isinstance(exc, requests.exceptions.ConnectionError):
        for e in _chain(exc):
            if isinstance(e, urllib3.exceptions.NameResolutionError):
                return "the host name could not be resolved"
            if isinstance(e, ConnectionRefusedError):
                return "connection refused"
            if isinstance(e, urllib3.exceptions.IncompleteRead):
                return "the answer was cut short"
            if isinstance(e, urllib3.exceptions.ReadTimeoutError):
                return "read timed out"
        return "connection failed" if never_reached(exc) else "the connection was dropped"
    return type(exc).__name__


# -- paths -------------------------------------------------------------------------------------

_PLACEHOLDER = re.compile(r"\{(\w+)\}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class RecordPath(str):
    """A path that addresses one record: a key (or another value) was filled into it.

    The transport reads it to word a 404: only such a path may say the record may
    have been deleted; a list that is not found is a wrong URL or table.
    """

    __slots__ = ()


def _unsafe(text: str) -> str | None:
    """Why a value cannot be a path segment, or None when it can."""
    for form in (text, unquote(text)):
        if form in ("", ".", ".."):
            return "empty" if form == "" else f"{form!r} (a dot segment)"
        if "/" in form or "\\" in form:
            return "a slash"
        if _CONTROL.search(form):
            return "a control character"
    return None


def path_with(template: str, values: Mapping[str, Any]) -> str:
    """The template's ``{name}`` placeholders filled with the values, each quoted whole.

    Every path built from values (a key, a procedure's parameters) goes through here.
    A value is percent-encoded with nothing kept (``/``, ``?``, ``#``, ``'`` encoded),
    and refused with :class:`DataError`, before anything is sent, when it could still
    change the request's target: empty, ``.`` or ``..`` (dot segments: ``/contacts/..``
    is ``/``), or containing ``/``, ``\\`` or control characters, as given or once
    percent-decoded. No Sage key is any of these.

    >>> path_with("/contacts/{key}", {"key": "a b?"})
    '/contacts/a%20b%3F'
    >>> path_with("/contacts/{key}", {"key": ".."})
    Traceback (most recent call last):
    ...
    sagesql.errors.DataError: '..' cannot be the {key} of /contacts/{key}: it is '..' (a dot...
    """
    names = _PLACEHOLDER.findall(template)
    if not names:
        return template
    filled: dict[str, str] = {}
    for name in names:
        value = values.get(name)
        text = "" if value is None else str(value)
        why = _unsafe(text)
        if why is not None:
            shown = repr(text) if value is not None else "no value"
            raise DataError(
                f"{shown} cannot be the {{{name}}} of {template}: it is {why}",
                hint="A value in a URL path may not be empty, '.' or '..', nor contain "
                "'/', '\\' or control characters; nothing was sent",
            )
        filled[name] = quote(text, safe="")
    return RecordPath(_PLACEHOLDER.sub(lambda m: filled[m.group(1)], template))


# -- deadlines ---------------------------------------------------------------------------------


def _shut(target: Any) -> None:
    """Shut a socket (or a connection's) down, so that a read blocked on it returns at once."""
    sock = target if isinstance(target, socket.socket) else getattr(target, "sock", None)
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            # socket.socket's own shutdown: an SSL socket's would drop its TLS state under
            # the thread that is reading.
            socket.socket.shutdown(sock, socket.SHUT_RDWR)


class _Deadline:
    """When one attempt must be over; the connections it used are shut when that passes."""

    def __init__(self, at: float) -> None:
        self.at = at  # time.monotonic()
        self.expired = False
        self.done = False
        self._connections: list[Any] = []
        self._lock = threading.Lock()

    def left(self) -> float:
        return self.at - time.monotonic()

    def watch(self, target: Any) -> None:
        """Shut this connection or socket down when the deadline passes."""
        with self._lock:
            if self.done:
                return
            self._connections.append(target)
            if self.expired:
                _shut(target)

    def expire(self) -> None:
        with self._lock:
            if self.done or self.expired:
                return
            self.expired = True
            for connection in self._connections:
                _shut(connection)

    def finish(self) -> None:
        with self._lock:
            self.done = True
            self._connections.clear()


class _Watchdog:
    """One thread for the whole process that expires deadlines as they pass."""

    IDLE = 60.0  # seconds without a deadline before the thread ends (it restarts when needed)

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, _Deadline]] = []
        self._cond = threading.Condition()
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def add(self, deadline: _Deadline) -> None:
        with self._cond:
            heapq.heappush(self._heap, (deadline.at, next(self._order), deadline))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="sagesql-deadlines", daemon=True
                )
                self._thread.start()
            self._cond.notify()

    def _next_due(self) -> _Deadline | None:
        """The next deadline once it passes (None when idle too long); holds the lock."""
        while True:
            while self._heap and self._heap[0][2].done:
                heapq.heappop(self._heap)
            if not self._heap:
                if not self._cond.wait(self.IDLE) and not self._heap:
                    self._thread = None
                    return None
                continue
            wait = self._heap[0][0] - time.monotonic()
            if wait <= 0:
                return heapq.heappop(self._heap)[2]
            self._cond.wait(wait)

    def _run(self) -> None:
        while True:
            with self._cond:
                due = self._next_due()
            if due is None:
                return
            due.expire()


_WATCHDOG = _Watchdog()
_current = threading.local()  # .deadline: the attempt this thread is making


def _watch(target: Any) -> None:
    deadline: _Deadline | None = getattr(_current, "deadline", None)
    if deadline is not None and target is not None:
        deadline.watch(target)


class _Watched:
    """Mixed into urllib3's connections: handed to the attempt's deadline whenever used:
    the connection while it connects and sends, its socket itself once the answer comes
    (http.client lets go of the socket of an answer that closes the connection)."""

    sock: Any

    def connect(self) -> None:
        _watch(self)
        super().connect()  # type: ignore[misc]

    def request(self, *args: Any, **kwargs: Any) -> None:
        _watch(self)
        super().request(*args, **kwargs)  # type: ignore[misc]

    def getresponse(self, *args: Any, **kwargs: Any) -> Any:
        _watch(self.sock)
        return super().getresponse(*args, **kwargs)  # type: ignore[misc]


class _WatchedHTTPConnection(_Watched, HTTPConnection):
    pass


class _WatchedHTTPSConnection(_Watched, HTTPSConnection):
    pass


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


_WATCHED_POOLS: dict[str, type[HTTPConnectionPool]] = {
    "http": _WatchedHTTPPool,
    "https": _WatchedHTTPSPool,
}


class _DeadlineAdapter(HTTPAdapter):
    """requests' adapter whose connections (direct or through a proxy) obey deadlines."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _WATCHED_POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> PoolManager:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        # A SOCKS manager has pool classes of its own: it keeps them (and read timeouts).
        if manager.pool_classes_by_scheme is urllib3.poolmanager.pool_classes_by_scheme:
            manager.pool_classes_by_scheme = _WATCHED_POOLS
        return manager


class _Exchange(msgspec.Struct, frozen=True):
    """What one request is, for its attempts."""

    method: str
    url: str
    shown: str  # the path as messages show it
    idempotent: bool
    parse: bool  # JSON wanted
    one_record: bool  # the path addresses one record (RecordPath)


class HTTPTransport:
    """HTTP for one connection: session, headers, proxy, timeouts, retries, rate limit, paging."""

    def __init__(
        self,
        settings: Settings,
        product: Product,
        *,
        base_url: str,
        auth: requests.auth.AuthBase | None,
        session: requests.Session | None = None,
        extra_headers: Mapping[str, str] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        jitter: Callable[[], float] = random.random,
        limiter: TokenBucket | None = None,
        max_attempts: int = MAX_ATTEMPTS,
        retry_budget: float | None = None,
        deadline: float | None = None,
        max_response_size: int | None = None,
        max_pages: int = MAX_PAGES,
    ) -> None:
        self.settings = settings
        self.product = product
        self.base_url = base_url.rstrip("/")
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise InterfaceError(f"bad base URL {base_url!r}", hint="give an http(s):// URL")
        self._origin = f"{parts.scheme}://{parts.netloc}".lower()
        self._base_path = parts.path.rstrip("/")
        self.auth = auth
        self._owns_session = session is None
        self.session = session if session is not None else requests.Session()
        self.session.headers.update(
            {
                "User-Agent": f"sagesql/{__version__}",
                "Accept": "application/json",
                **dict(extra_headers or {}),
            }
        )
        self._fit_pool(max(10, settings.max_concurrency))
        self.proxies = settings.proxies()
        self.timeout = (min(float(settings.timeout), CONNECT_TIMEOUT_CAP), float(settings.timeout))
        self.max_attempts = max(1, max_attempts)
        self.retry_budget = (
            retry_budget if retry_budget is not None else max(10.0, 2.0 * settings.timeout)
        )
        # One attempt, connect to last byte (real seconds, whatever clock is injected).
        self.deadline = float(deadline if deadline is not None else settings.timeout)
        self.max_response_size = (
            max_response_size if max_response_size is not None else settings.max_response_size * MiB
        )
        self.max_pages = max_pages
        self._sleep = sleep
        self._monotonic = monotonic
        self._jitter = jitter
        self.limiter = limiter or TokenBucket(settings.rate_limit, monotonic=monotonic, sleep=sleep)
        self._body_limit = logs.body_limit(settings.verbosity)
        self._secrets = settings.secrets()
        for secret in self._secrets:
            logs.register_secret(secret)
        logs.quiet_token_loggers()
        self._count_lock = threading.Lock()
        self.sent = 0  # requests sent, retries included

    # -- session -------------------------------------------------------------------------

    def _fit_pool(self, size: int) -> None:
        """Connections that obey deadlines, enough for the parallel pages (requests keeps
        10 by default)."""
        for prefix in ("https://", "http://"):
            adapter = self.session.adapters.get(prefix)
            # A session handed in with its own adapter (a test's, a mock) is left alone:
            # its answers are still read in chunks against the deadline.
            if type(adapter) is HTTPAdapter:
                size = max(size, getattr(adapter, "_pool_maxsize", 10))
                adapter.close()
                self.session.mount(
                    prefix, _DeadlineAdapter(pool_connections=size, pool_maxsize=size)
                )

    def close(self) -> None:
        if self._owns_session:
            self.session.close()

    def __enter__(self) -> HTTPTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- URLs ----------------------------------------------------------------------------

    def url_for(self, path: str) -> str:
        """The URL of a path relative to the API, a ``$next`` link, or a same-host URL.

        Accounting's links (``/contacts?page=2``) are relative to the API root without
        ``/v3.1``; a path that already starts with the base path is not given it twice.
        Absolute URLs must point at the API's own host: tokens are not sent elsewhere.
        """
        if "://" in path:
            parts = urlsplit(path)
            if f"{parts.scheme}://{parts.netloc}".lower() != self._origin:
                raise APIError(
                    f"refusing to follow a link to another host: {logs.redact_url(path)}",
                    hint=f"the API is at {self.base_url}",
                )
            return path
        if path.startswith("/"):
            if self._base_path and (
                path == self._base_path or path.startswith(self._base_path + "/")
            ):
                return self._origin + path
            return self.base_url + path
        return f"{self.base_url}/{path}" if path else self.base_url

    def _shown(self, url: str) -> str:
        """The path of a URL as messages show it (relative to the API, no query)."""
        path = urlsplit(url).path
        if self._base_path and path.startswith(self._base_path):
            path = path[len(self._base_path) :]
        return path or "/"

    # -- requests ------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
    ) -> requests.Response:
        """Send one call (retrying as the module says); the answer, or an error of the tree."""
        response, _ = self._send(method, path, params, json, data, headers, idempotent, False)
        return response

    def get_json(self, path: str, *, params: Mapping[str, Any] | None = None) -> Any:
        """GET and parse the JSON answer (a cut body is retried like a dropped connection)."""
        return self._send("GET", path, params, None, None, None, None, True)[1]

    def json_request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        data: Any = None,
        idempotent: bool | None = None,
    ) -> Any:
        """Send a call and parse its JSON answer (None for an empty one, such as 204)."""
        return self._send(method, path, params, json, data, None, idempotent, True)[1]

    def _send(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None,
        json: Any,
        data: Any,
        headers: Mapping[str, str] | None,
        idempotent: bool | None,
        parse: bool,
    ) -> tuple[requests.Response, Any]:
        method = method.upper()
        one_record = isinstance(path, RecordPath)
        url = self.url_for(path)
        shown = self._shown(url)
        if idempotent is None:
            idempotent = method in IDEMPOTENT
        started = self._monotonic()
        # No attempt runs past this (real time): the request with its retries is bounded.
        stop_at = time.monotonic() + max(self.retry_budget, self.deadline)
        exchange = _Exchange(method, url, shown, idempotent, parse, one_record)
        attempt = 0
        refreshed = False
        last: _Retry | None = None
        while True:
            attempt += 1
            self.limiter.acquire()
            try:
                response, parsed = self._attempt(
                    exchange,
                    params,
                    json,
                    data,
                    headers,
                    min(stop_at, time.monotonic() + self.deadline),
                )
            except _Retry as retry:
                last = retry
            else:
                if response.status_code != 401:
                    return response, parsed
                if refreshed or not self._refresh_after_401(response):
                    raise self._auth_error(response, method, shown, json, refreshed)
                # Sage did not act on a refused request: any method may go again, once.
                refreshed = True
                attempt -= 1
                continue
            elapsed = self._monotonic() - started
            wait = last.wait
            if wait is None:
                wait = self._jitter() * min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (attempt - 1))
            budget = REFUSED_BUDGET if last.kind == "refused" else self.retry_budget
            if (
                attempt >= self.max_attempts
                or elapsed + wait > budget
                or time.monotonic() + wait >= stop_at
            ):
                raise self._gave_up(method, url, shown, attempt, elapsed, last, wait, budget)
            # Shown with --verbose (or in Logfile); a library's default is to print nothing.
            log.warning(
                "%s %s: %s; retry %d of %d in %.1f s",
                method,
                logs.redact_url(url),
                last.reason,
                attempt,
                self.max_attempts - 1,
                wait,
            )
            if last.status == 429:
                self.limiter.pause(wait)  # hold the other threads too
            self._sleep(wait)

    def _attempt(
        self,
        exchange: _Exchange,
        params: Mapping[str, Any] | None,
        json: Any,
        data: Any,
        headers: Mapping[str, str] | None,
        stop_at: float,
    ) -> tuple[requests.Response, Any]:
        """One try within its deadline: the answer, or _Retry, or an error of the tree."""
        deadline = _Deadline(stop_at)
        _WATCHDOG.add(deadline)
        _current.deadline = deadline
        try:
            return self._exchange(exchange, deadline, params, json, data, headers)
        finally:
            _current.deadline = None
            deadline.finish()

    def _exchange(
        self,
        x: _Exchange,
        deadline: _Deadline,
        params: Mapping[str, Any] | None,
        json: Any,
        data: Any,
        headers: Mapping[str, str] | None,
    ) -> tuple[requests.Response, Any]:
        # Streamed, so that the body is read in bounded chunks; redirects never followed.
        kwargs: dict[str, Any] = {"timeout": self.timeout, "stream": True, "allow_redirects": False}
        if self.auth is not None:
            kwargs["auth"] = self.auth
        if self.proxies:
            # Per request, because requests lets environment proxies override session ones.
            kwargs["proxies"] = self.proxies
        clock = time.perf_counter()
        with self._count_lock:
            self.sent += 1
        try:
            response = self.session.request(
                x.method,
                x.url,
                params=dict(params) if params else None,
                json=json,
                data=data,
                headers=dict(headers) if headers else None,
                **kwargs,
            )
        except requests.RequestException as exc:
            raise self._failed(exc, x, deadline, clock) from None
        status = response.status_code
        if 300 <= status < 400 or status == 429 or (status in RETRY_STATUSES and x.idempotent):
            response.close()  # the body is not needed: the connection is not kept
            self._log_exchange(response, (time.perf_counter() - clock) * 1000, body=False)
            if status == 429:
                raise _Retry(
                    "429 Too Many Requests",
                    status=429,
                    wait=retry_after(response),
                    kind="throttled",
                )
            if status >= 400:
                raise _Retry(f"{status} {response.reason}".strip(), status=status)
            raise self._redirected(response, x)
        try:
            response._content = self._read(response, x, deadline)
        except requests.RequestException as exc:
            response.close()
            raise self._failed(exc, x, deadline, clock) from None
        response.close()  # read to the end: the connection goes back to the pool
        self._log_exchange(response, (time.perf_counter() - clock) * 1000)
        if status == 401:
            return response, None
        if status >= 400:
            hint = (
                "Sage may have carried the request out before failing: check before sending "
                "it again"
                if status >= 500 and not x.idempotent
                else None
            )
            raise api_errors.from_response(
                response, x.method, x.shown, body=json, hint=hint, one_record=x.one_record
            )
        if not x.parse:
            return response, None
        return response, self._parse(response, x.method, x.shown, x.idempotent)

    def _read(self, response: requests.Response, x: _Exchange, deadline: _Deadline) -> bytes:
        """The whole body, read in chunks: at most ``max_response_size`` bytes (decoded),
        and only until the deadline."""
        limit = self.max_response_size
        declared = (response.headers.get("Content-Length") or "").strip()
        if declared.isdigit() and int(declared) > limit:
            response.close()
            raise self._too_large(response, x, f"is {int(declared) / MiB:.0f} MiB (Content-Length)")
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_content(CHUNK):
            size += len(chunk)
            if size > limit:
                response.close()
                raise self._too_large(response, x, "went on")
            chunks.append(chunk)
            if deadline.left() <= 0:
                deadline.expire()  # the watchdog may not have run yet
                raise requests.exceptions.ReadTimeout("deadline passed")
        return b"".join(chunks)

    def _too_large(self, response: requests.Response, x: _Exchange, how: str) -> APIError:
        limit = f"{self.max_response_size / MiB:g} MiB"
        exc = APIError(
            f"{x.method} {x.shown}: the answer {how} past the {limit} limit, far more than "
            "any Sage page; stopped reading",
            hint="check that the URL connection property is Sage's API, or raise MaxResponseSize",
        )
        # An error status says Sage refused; a large success may still have carried it out.
        exc.status = response.status_code if response.status_code >= 400 else None  # type: ignore[attr-defined]
        exc.method, exc.path = x.method, x.shown  # type: ignore[attr-defined]
        return exc

    def _failed(
        self, exc: requests.RequestException, x: _Exchange, deadline: _Deadline, clock: float
    ) -> Exception:
        """What a failed exchange becomes: _Retry when it may go again, else an error."""
        ms = (time.perf_counter() - clock) * 1000
        if never_reached(exc):  # not sent: any method may go again
            reason = _failure(exc)
            log.info("%s %s -> %s after %.0f ms", x.method, logs.redact_url(x.url), reason, ms)
            refused = any(isinstance(e, ConnectionRefusedError) for e in _chain(exc))
            return _Retry(reason, kind="refused" if refused else "unreached")
        if deadline.expired:
            reason = f"no complete answer within {self.deadline:g} s"
            kind = "slow"
        else:
            reason = _failure(exc)
            kind = "slow" if "timed out" in reason else "busy"
        log.info("%s %s -> %s after %.0f ms", x.method, logs.redact_url(x.url), reason, ms)
        if not deadline.expired and isinstance(
            exc,
            requests.exceptions.SSLError
            | requests.exceptions.InvalidURL
            | requests.exceptions.InvalidHeader
            | requests.exceptions.MissingSchema
            | requests.exceptions.InvalidSchema
            | requests.exceptions.TooManyRedirects,
        ):
            return OperationalError(
                f"{x.method} {x.shown}: {reason}: {api_errors.one_line(str(exc))}",
                hint="check the URL and proxy connection properties",
            )
        if x.idempotent:
            return _Retry(reason, kind=kind)
        return OperationalError(
            f"{x.method} {x.shown}: {reason} after the request was sent; not retried, "
            "since Sage may have carried it out",
            hint="check whether it took effect before sending it again",
        )

    def _redirected(self, response: requests.Response, x: _Exchange) -> APIError:
        """A 3xx answer as an error: where it pointed, and the URL to set when it is the API's."""
        status = response.status_code
        location = (response.headers.get("Location") or "").strip()
        what = f"{status} {response.reason or ''}".strip()
        if not location:
            exc = APIError(
                f"{x.method} {x.shown}: the API answered {what} without a Location; "
                "redirects are not followed",
                hint="check the URL connection property",
            )
        else:
            target = urljoin(x.url, location)
            moved = self._moved_base(x.url, target)
            if moved is None:
                hint = "check the URL connection property"
            elif urlsplit(moved).hostname == urlsplit(self.base_url).hostname:
                hint = f"set URL to {logs.redact_url(moved)}"  # http -> https, a new port
            else:
                hint = (
                    "check the URL connection property: if "
                    f"{logs.redact_url(moved)} is Sage's API, set URL to it"
                )
            exc = APIError(
                f"{x.method} {x.shown}: the API answered {what} to "
                f"{logs.redact_url(target)}; redirects are not followed (a request could "
                "change on the way, or its token go elsewhere)",
                hint=hint,
            )
            exc.location = target  # type: ignore[attr-defined]
        exc.status = status  # type: ignore[attr-defined]
        exc.method, exc.path = x.method, x.shown  # type: ignore[attr-defined]
        return exc

    def _moved_base(self, url: str, target: str) -> str | None:
        """The base URL the API moved to, when the redirect keeps the path below it."""
        sent, moved = urlsplit(url), urlsplit(target)
        if moved.scheme not in ("http", "https") or not moved.netloc:
            return None
        if not sent.path.startswith(self._base_path):
            return None
        rest = sent.path[len(self._base_path) :]
        if not moved.path.endswith(rest):
            return None
        base = f"{moved.scheme}://{moved.netloc}{moved.path[: len(moved.path) - len(rest)]}"
        base = base.rstrip("/")
        return base if base != self.base_url else None

    def _parse(self, response: requests.Response, method: str, shown: str, idempotent: bool) -> Any:
        body = response.content
        if response.status_code == 204 or not body.strip():
            return None
        try:
            return api_errors.json_of(response)
        except ValueError:
            pass
        kind = (response.headers.get("Content-Type") or "").lower()
        head = body.lstrip()[:1]
        if ("json" in kind or head in (b"{", b"[")) and idempotent:
            # JSON that stops midway: the connection was cut without the length telling.
            raise _Retry("the JSON answer was cut short", status=response.status_code) from None
        raise api_errors.unexpected(response, method, shown, why=" instead of JSON")

    def _refresh_after_401(self, response: requests.Response) -> bool:
        for holder in (self.auth, self.session):
            hook = getattr(holder, "refresh_after_401", None)
            if callable(hook):
                return bool(hook(response))
        return False

    def _auth_error(
        self, response: requests.Response, method: str, shown: str, body: Any, refreshed: bool
    ) -> Error:
        if self.product.auth.get("type") == "basic":
            summary = "Sage CRM refused the user name or password"
            hint = "check the User and Password connection properties and the user's rights"
        else:
            explain = getattr(self.auth, "expired_message", None)
            summary = (
                explain()
                if callable(explain)
                else "the access token expired or was refused"
                + (" even after a refresh" if refreshed else "")
            )
            hint = (
                "get a new token: run 'sagesql auth login', or connect with "
                "InitiateOAuth=GETANDREFRESH (or REFRESH with OAuthRefreshToken) so that "
                "tokens are refreshed"
            )
        return api_errors.from_response(
            response, method, shown, body=body, hint=hint, summary=summary
        )

    def _gave_up(
        self,
        method: str,
        url: str,
        shown: str,
        attempts: int,
        elapsed: float,
        last: _Retry,
        wait: float,
        budget: float,
    ) -> RetriableAPIError:
        if attempts >= self.max_attempts or last.kind == "refused":
            why = ""
        elif wait >= 0.5:
            why = f", and waiting {wait:.0f} s more would pass the {budget:.0f} s limit"
        else:
            why = f", the {budget:.0f} s limit"
        reason = last.reason
        parts = urlsplit(url)
        if last.kind in ("refused", "unreached"):
            reason += f" at {parts.hostname}" + (f":{parts.port}" if parts.port else "")
            via = (
                " (and ProxyServer, ProxyPort: the proxy is what was reached)"
                if self.proxies
                else ""
            )
            hint = (
                f"the API is unreachable at {parts.scheme}://{parts.netloc}: check the URL "
                f"connection property{via}, and that the server is running"
            )
        elif last.kind == "throttled":
            hint = "Sage kept answering 429: try again later, or lower RateLimit or MaxConcurrency"
        elif last.kind == "slow":
            hint = "Sage is slow or unreachable: try again later, or raise Timeout"
        else:
            hint = "Sage is busy or unreachable: try again later"
        exc = RetriableAPIError(
            f"{method} {shown}: gave up after {attempts} attempt{'s' if attempts > 1 else ''} "
            f"in {elapsed:.1f} s{why}; last: {reason}",
            hint=hint,
        )
        exc.status = last.status  # type: ignore[attr-defined]
        exc.method, exc.path = method, shown  # type: ignore[attr-defined]
        return exc

    def _log_exchange(self, response: requests.Response, ms: float, *, body: bool = True) -> None:
        if not log.isEnabledFor(logging.INFO):
            return
        request = response.request
        log.info(
            "%s %s -> %d in %.0f ms",
            request.method,
            logs.redact_url(request.url or ""),
            response.status_code,
            ms,
        )
        if log.isEnabledFor(logging.DEBUG):
            limit = self._body_limit
            log.debug("request headers: %s", logs.redact_headers(request.headers))
            if request.body:
                log.debug("request body: %s", logs.redact_body(request.body, limit))
            log.debug("response headers: %s", logs.redact_headers(response.headers))
            if body:
                log.debug("response body: %s", logs.redact_body(response.content, limit))

    # -- paging --------------------------------------------------------------------------

    def _page(self, paginator: Paginator, request: PageRequest) -> Page:
        return paginator.parse(self.get_json(request.path, params=request.params), request)

    def count(
        self, path: str, params: Mapping[str, Any] | None, paginator: Paginator
    ) -> int | None:
        """The number of records, for paginators with a separate count request."""
        request = paginator.count_request(path, params)
        if request is None:
            return None
        return paginator.parse_count(self.get_json(request.path, params=request.params))

    def pages(
        self,
        path: str,
        params: Mapping[str, Any] | None,
        paginator: Paginator,
        *,
        page_size: int,
        limit: int | None = None,
        offset: int = 0,
    ) -> Iterator[list[Record]]:
        """Pages of records, one request at a time, asked for only as they are consumed.

        With ``limit``, no request is made once that many records came, and the page
        size is fitted to what remains (where the paging style allows). With ``offset``
        (addressable styles), reading starts at the page holding that record, and the
        records before it on that page are dropped.
        """
        if limit is not None and limit <= 0:
            return
        request: PageRequest | None
        if offset:
            size = paginator.start_size(page_size, offset, limit)
            request = paginator.start(path, params, size, offset)
            lead = offset - request.offset
        else:
            request, lead = paginator.first(path, params, _fit(page_size, limit)), 0
        yield from self._follow(
            paginator, request, page_size, limit, 0, self._guard(path, page_size), lead=lead
        )

    def _guard(self, path: str, page_size: int) -> PageGuard:
        return PageGuard(
            self._shown(self.url_for(path)), page_size=page_size, max_pages=self.max_pages
        )

    def _follow(
        self,
        paginator: Paginator,
        request: PageRequest | None,
        page_size: int,
        limit: int | None,
        done: int,
        guard: PageGuard,
        *,
        lead: int = 0,
    ) -> Iterator[list[Record]]:
        while request is not None:
            page = self._page(paginator, request)
            guard.check(page)
            records = page.records[lead:] if lead else page.records
            lead = 0
            if limit is not None:
                records = records[: limit - done]
            done += len(records)
            if records:
                yield records
            if limit is not None and done >= limit:
                return
            request = paginator.following(
                page, _fit(page_size, None if limit is None else limit - done)
            )

    def records(
        self,
        path: str,
        params: Mapping[str, Any] | None,
        paginator: Paginator,
        *,
        page_size: int,
        limit: int | None = None,
        parallel: bool = False,
        offset: int = 0,
    ) -> Iterator[Record]:
        """The records of every page, one by one (from record ``offset``: read in turn)."""
        if offset:
            pages = self.pages(
                path, params, paginator, page_size=page_size, limit=limit, offset=offset
            )
        elif parallel:
            pages = self.pages_parallel(path, params, paginator, page_size=page_size, limit=limit)
        else:
            pages = self.pages(path, params, paginator, page_size=page_size, limit=limit)
        for page in pages:
            yield from page

    def pages_parallel(
        self,
        path: str,
        params: Mapping[str, Any] | None,
        paginator: Paginator,
        *,
        page_size: int,
        limit: int | None = None,
        max_concurrency: int | None = None,
    ) -> Iterator[list[Record]]:
        """Pages in order, up to ``MaxConcurrency`` requests in flight once the total is known.

        The total comes from the first page's envelope (Accounting ``$total``, CRM
        ``$totalResults``) or from a count request (Sage 200); then the remaining pages
        are addressed directly. At most ``PAGES_AHEAD × max_concurrency`` pages are held at a time.
        A page shorter than asked in the middle (CRM may answer fewer) is completed
        before the next one is yielded; after the planned pages, any link or full
        last page is followed one at a time, in case records were added meanwhile.
        """
        workers = max_concurrency or self.settings.max_concurrency
        if limit is not None and limit <= 0:
            return
        size = _fit(page_size, limit)
        if workers <= 1 or not paginator.addressable:
            yield from self.pages(path, params, paginator, page_size=page_size, limit=limit)
            return
        _return_answers_to_os()
        guard = self._guard(path, page_size)
        first: Page | None = None
        first = self._page(paginator, paginator.first(path, params, size))
        guard.check(first)
        total = first.total
        done = 0
        last: Page | None = None
        if total is None and paginator.total_source == "count_request":
            # No total in the pages (Sage 200): the first COUNT_AFTER pages are read one
            # at a time, and only a longer list pays for its count request (see
            # COUNT_AFTER); the pages read are yielded as they come.
            last = first
            read = 1
            while True:
                records = last.records[: _left(limit, done)]
                done += len(records)
                if records:
                    yield records
                if len(last.records) < (last.request.size or size):
                    return  # a short page is the end
                if limit is not None and done >= limit:
                    return
                if read >= COUNT_AFTER:
                    break
                after = paginator.following(last, _fit(size, _left(limit, done)))
                if after is None:
                    return
                last = self._page(paginator, after)
                guard.check(last)
                read += 1
            try:
                total = self.count(path, params, paginator)
            except (APIError, NotSupportedError):
                total = None  # an API without $count: one page at a time
            if total is None:
                after = paginator.following(last, _fit(page_size, _left(limit, done)))
                yield from self._follow(paginator, after, page_size, limit, done, guard)
                return
            first = None  # already yielded: the planned pages start after the ones read
        if total is None:  # nothing to plan with: one page at a time
            if first is None:
                yield from self.pages(path, params, paginator, page_size=page_size, limit=limit)
                return
            records = first.records[: _left(limit, 0)]
            if records:
                yield records
            if limit is None or len(records) < limit:
                after = paginator.following(first, _fit(page_size, _left(limit, len(records))))
                yield from self._follow(paginator, after, page_size, limit, len(records), guard)
            return
        wanted = total if limit is None else min(total, limit)
        planned = math.ceil(wanted / size)
        start = 1 if first is not None else (last.request.offset // size + 1 if last else 0)
        queue = (paginator.at(path, params, size, index) for index in range(start, planned))
        fetched = self._window(paginator, queue, workers)
        try:
            for page in itertools.chain([first] if first else [], fetched):
                if page is not first:
                    guard.check(page)
                last = page
                for chunk in self._complete(
                    paginator, page, page_size, limit, done, planned, guard
                ):
                    done += len(chunk)
                    yield chunk
                if limit is not None and done >= limit:
                    return
        finally:
            fetched.close()  # stop the fetchers now, not when the generator is collected
        if last is None or last.request.offset + len(last.records) >= total:
            return  # the known total was reached: no request to learn that the next page is empty
        # More than the total said (records added meanwhile): go on one page at a time.
        after = paginator.following(last, _fit(page_size, _left(limit, done)))
        yield from self._follow(paginator, after, page_size, limit, done, guard)

    def _complete(
        self,
        paginator: Paginator,
        page: Page,
        page_size: int,
        limit: int | None,
        done: int,
        planned: int,
        guard: PageGuard,
    ) -> Iterator[list[Record]]:
        """A parallel page's records, plus the rest of its range if the server answered fewer."""
        records = page.records[: _left(limit, done)]
        if records:
            yield records
        done += len(records)
        asked = page.request.size or 0
        index = page.request.offset // asked if asked else 0
        missing = asked - len(page.records)
        if not (
            paginator.may_return_fewer and page.records and missing > 0 and index < planned - 1
        ):
            return
        current = page
        while missing > 0 and (limit is None or done < limit):
            request = paginator.following(current, _fit(missing, _left(limit, done)))
            if request is None:
                return
            current = self._page(paginator, request)
            guard.check(current)
            if not current.records:
                return
            records = current.records[:missing][: _left(limit, done)]
            missing -= len(current.records[:missing])
            done += len(records)
            if records:
                yield records

    def _window(
        self, paginator: Paginator, queue: Iterator[PageRequest], workers: int
    ) -> Generator[Page, None, None]:
        """Pages of the queued requests in queue order: ``workers`` requests at most in
        flight, and at most ``PAGES_AHEAD × workers`` pages asked for and not yet taken.

        A thread that is done starts the next request at once, even while an earlier
        page is still on its way (the pages it read wait their turn), so one slow answer
        does not stop the others; the bound on the pages held keeps memory flat.
        """
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sagesql-page")
        pending: deque[Future[Page]] = deque()
        ahead = PAGES_AHEAD * workers
        try:
            for request in queue:
                pending.append(pool.submit(self._page, paginator, request))
                if len(pending) >= ahead:
                    break
            while pending:
                page = pending.popleft().result()
                following = next(queue, None)
                if following is not None:
                    pending.append(pool.submit(self._page, paginator, following))
                yield page
        finally:
            # Abandoned early (a LIMIT, an error): start nothing more.
            for future in pending:
                future.cancel()
            pool.shutdown(wait=False, cancel_futures=True)


# glibc's mallopt: answers of this size or more get memory of their own, returned when freed.
M_MMAP_THRESHOLD = -3
ANSWER_MMAP_THRESHOLD = 128 * 1024
_malloc_tuned = False


def _return_answers_to_os() -> None:
    """Fix glibc's mmap threshold at its default (128 KiB), once per process.

    Pages are read in worker threads, each with its own malloc arena: glibc raises the
    threshold to the size of the first large answer freed, so later answers (half a
    megabyte a page) come from those arenas and fragment them, and the resident memory
    of a long scan grew with its rows (100k contacts: 179 MB, Python's own heap flat at
    21 MB). Fixed, every answer's buffers are mapped and unmapped whole: 83 MB. A no-op
    where the C library is not glibc.
    """
    global _malloc_tuned
    if _malloc_tuned:
        return
    _malloc_tuned = True
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt(M_MMAP_THRESHOLD, ANSWER_MMAP_THRESHOLD)


def _fit(page_size: int, remaining: int | None) -> int:
    """The page size to ask for when only ``remaining`` records are wanted."""
    return max(1, page_size if remaining is None else min(page_size, remaining))


def _left(limit: int | None, done: int) -> int | None:
    return None if limit is None else max(0, limit - done)
