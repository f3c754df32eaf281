"""HTTP answers read within bounds: no redirects, a size limit, a deadline for the whole exchange.

For the calls whose answers are small and whose servers are not Sage's API: the OAuth
token endpoint and the poller's webhook receivers. :class:`BoundedAdapter`, mounted on a
``requests.Session``, makes every request through it keep three promises, whatever the
caller asks of ``requests`` (``allow_redirects``, ``stream``):

- a 3xx with a ``Location`` is never followed: :class:`RedirectRefused` names it (a POST
  turned into a GET, or a body, signature and credentials sent to another origin, is never
  what the caller meant);
- at most ``limit`` bytes of the answer are read (:class:`AnswerTooLarge` beyond): an
  endless body cannot grow the process;
- connecting, sending, the status line and headers and the body together take at most
  ``deadline`` seconds (:class:`DeadlineExceeded`): a trickling answer cannot hold the
  caller, since a socket timeout only bounds each single read. A watchdog shuts the
  connection's socket at the deadline, which ends any read or write in progress.

An answer that breaks off (a cut body, a dropped connection after the request was sent)
is :class:`AnswerBroken`: the server may have acted on the request.
"""

from __future__ import annotations

import contextlib
import functools
import socket
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connectionpool import HTTPConnectionPool
from urllib3.exceptions import HTTPError as URLLib3Error
from urllib3.poolmanager import PoolManager

ANSWER_LIMIT = 1024 * 1024  # bytes: a token answer is a few KB, a webhook's answer less
CHUNK = 16 * 1024


class RedirectRefused(requests.RequestException):
    """The server answered a redirect; it was not followed."""

    def __init__(self, status: int, location: str, url: str) -> None:
        super().__init__(f"answered {status} redirecting to {location}")
        self.status = status
        self.location = location
        self.url = url


class AnswerTooLarge(requests.RequestException):
    """The answer went past the size limit; the rest was not read."""

    def __init__(self, status: int, limit: int) -> None:
        super().__init__(f"the answer ({status}) is larger than {limit} bytes")
        self.status = status
        self.limit = limit


class DeadlineExceeded(requests.Timeout):
    """The whole exchange took longer than its deadline."""

    def __init__(self, seconds: float, status: int | None = None) -> None:
        super().__init__(f"no complete answer within {seconds:g} s")
        self.seconds = seconds
        self.status = status


class AnswerBroken(requests.ConnectionError):
    """The answer broke off after the request was sent (cut body, dropped connection)."""

    def __init__(self, status: int, read: int, why: str) -> None:
        after = f" after {read} bytes" if read else ""
        super().__init__(f"the answer ({status}) broke off{after} ({why})")
        self.status = status


def describe(exc: BaseException) -> str:
    """A failure in a few words: its class and, for a wrapped one, the innermost cause's
    class (``ConnectionError (RemoteDisconnected)``); never the server's own text."""
    if isinstance(exc, (RedirectRefused, AnswerTooLarge, DeadlineExceeded, AnswerBroken)):
        return f"{type(exc).__name__}: {exc}"
    inner: BaseException | None = exc
    seen: list[BaseException] = []
    while inner is not None and inner not in seen:
        seen.append(inner)
        nested = [a for a in getattr(inner, "args", ()) if isinstance(a, BaseException)]
        reason = getattr(inner, "reason", None)
        inner = (
            nested[-1]
            if nested
            else reason
            if isinstance(reason, BaseException)
            else inner.__cause__ or inner.__context__
        )
    last = seen[-1]
    return type(exc).__name__ + (f" ({type(last).__name__})" if last is not exc else "")


# -- the watchdog -----------------------------------------------------------------------------


class _Watch:
    """The connections one request uses, shut down when its deadline passes."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expired = False
        self.done = False
        self._lock = threading.Lock()
        self._connections: list[Any] = []
        self._timer = threading.Timer(seconds, self.expire)
        self._timer.daemon = True

    def add(self, connection: Any) -> None:
        with self._lock:
            if not any(c is connection for c in self._connections):
                self._connections.append(connection)
            late = self.expired
        if late:
            _shut(connection)

    def expire(self) -> None:
        with self._lock:
            if self.done:
                return
            self.expired = True
            connections = list(self._connections)
        for connection in connections:
            _shut(connection)

    def __enter__(self) -> _Watch:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self.done = True
        self._timer.cancel()


def _shut(connection: Any) -> None:
    """End every read and write in progress on the connection's socket (TLS included: the
    plain socket's shutdown, under the TLS layer)."""
    sock = getattr(connection, "sock", None)
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            socket.socket.shutdown(sock, socket.SHUT_RDWR)


_current = threading.local()


class _Watched:
    """Mixed into urllib3's connection classes: the request's watch learns the connection
    when it connects or sends (a pooled connection is reused without connecting)."""

    def connect(self) -> None:
        _enlist(self)
        super().connect()  # type: ignore[misc]
        _enlist(self)

    def request(self, *args: Any, **kwargs: Any) -> None:
        _enlist(self)
        super().request(*args, **kwargs)  # type: ignore[misc]


def _enlist(connection: Any) -> None:
    watch: _Watch | None = getattr(_current, "watch", None)
    if watch is not None:
        watch.add(connection)


@functools.cache
def _watched_pool(pool: type[HTTPConnectionPool]) -> type[HTTPConnectionPool]:
    connection = type(f"Watched{pool.ConnectionCls.__name__}", (_Watched, pool.ConnectionCls), {})
    return type(f"Watched{pool.__name__}", (pool,), {"ConnectionCls": connection})


def _watch_pools(manager: PoolManager) -> PoolManager:
    manager.pool_classes_by_scheme = {
        scheme: _watched_pool(pool) for scheme, pool in manager.pool_classes_by_scheme.items()
    }
    return manager


# -- the adapter ------------------------------------------------------------------------------


class BoundedAdapter(HTTPAdapter):
    """A transport adapter whose requests are bounded (see the module's docstring)."""

    def __init__(self, *, deadline: float, limit: int = ANSWER_LIMIT) -> None:
        self.deadline = float(deadline)
        self.limit = limit
        super().__init__(max_retries=0)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        _watch_pools(self.poolmanager)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        fresh = proxy not in self.proxy_manager
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        return _watch_pools(manager) if fresh else manager

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: bool | str = True,
        cert: Any = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        each = self._each_step(timeout)
        with _watching(self.deadline) as watch:
            try:
                response = super().send(
                    request, stream=True, timeout=each, verify=verify, cert=cert, proxies=proxies
                )
            except requests.RequestException:
                if watch.expired:
                    raise DeadlineExceeded(self.deadline) from None
                raise
            try:
                location = response.headers.get("Location")
                if 300 <= response.status_code < 400 and location:
                    raise RedirectRefused(response.status_code, location, request.url or "")
                body = self._read(response, watch)
            except BaseException:
                response.close()
                raise
        response._content = body
        response._content_consumed = True  # type: ignore[attr-defined]
        return response

    def _each_step(self, timeout: Any) -> tuple[float, float]:
        """Socket timeouts (connect, each read) within the deadline."""
        if isinstance(timeout, tuple):
            connect, read = timeout
        else:
            connect = read = timeout
        return (
            min(float(connect or self.deadline), self.deadline),
            min(float(read or self.deadline), self.deadline),
        )

    def _read(self, response: requests.Response, watch: _Watch) -> bytes:
        chunks: list[bytes] = []
        size = 0
        status = response.status_code
        stream = response.raw.stream(CHUNK, decode_content=True)
        while True:
            try:
                chunk = next(stream, None)
            except (URLLib3Error, OSError, ValueError) as exc:
                if watch.expired:
                    raise DeadlineExceeded(self.deadline, status) from None
                raise AnswerBroken(status, size, type(exc).__name__) from None
            if chunk is None:
                break
            size += len(chunk)
            if size > self.limit:
                raise AnswerTooLarge(status, self.limit)
            chunks.append(chunk)
        if watch.expired:  # an answer without a length ends at the shutdown: it may be cut
            raise DeadlineExceeded(self.deadline, status)
        response.raw.release_conn()
        return b"".join(chunks)


@contextlib.contextmanager
def _watching(seconds: float) -> Iterator[_Watch]:
    previous = getattr(_current, "watch", None)
    with _Watch(seconds) as watch:
        _current.watch = watch
        try:
            yield watch
        finally:
            _current.watch = previous


def bounded_session(*, deadline: float, limit: int = ANSWER_LIMIT) -> requests.Session:
    """A session whose every request is bounded (and proxies from the environment apply,
    as for any requests session)."""
    session = requests.Session()
    adapter = BoundedAdapter(deadline=deadline, limit=limit)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.max_redirects = 0  # the adapter refuses them already; never follow one
    return session
