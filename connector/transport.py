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

Paging is done by paginator objects (:mod:`paging`): ``pages`` streams pages lazily,
``pages_parallel`` keeps up to ``MaxConcurrency`` requests in flight once the total
is known and still yields pages in order.
"""

from __future__ import annotations

import contextlib
import email.utils
import itertools
import logging
import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

import requests
import requests.auth
import urllib3.exceptions
from requests.adapters import HTTPAdapter

from sagesql.connector import api_errors, logs
from sagesql.connector.paging import Page, PageRequest, Paginator, Record
from sagesql.connector.properties import Settings
from sagesql.connector.throttle import TokenBucket
from sagesql.errors import (
    APIError,
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


class _Retry(Exception):
    """An attempt failed in a way worth another try (internal to ``_send``)."""

    def __init__(self, reason: str, *, status: int | None = None, wait: float | None = None):
        super().__init__(reason)
        self.reason, self.status, self.wait = reason, status, wait


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
        return "connection failed" if never_reached(exc) else "the connection was dropped"
    return type(exc).__name__


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
        """Enough pooled connections for the parallel pages (requests keeps 10 by default)."""
        for prefix in ("https://", "http://"):
            adapter = self.session.adapters.get(prefix)
            # A session handed in with its own adapter (a test's, a mock) is left alone.
            if type(adapter) is HTTPAdapter and getattr(adapter, "_pool_maxsize", 10) < size:
                self.session.mount(prefix, HTTPAdapter(pool_connections=size, pool_maxsize=size))

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
        url = self.url_for(path)
        shown = self._shown(url)
        if idempotent is None:
            idempotent = method in IDEMPOTENT
        started = self._monotonic()
        attempt = 0
        refreshed = False
        last: _Retry | None = None
        while True:
            attempt += 1
            self.limiter.acquire()
            try:
                response, parsed = self._attempt(
                    method, url, shown, params, json, data, headers, idempotent, parse
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
            if attempt >= self.max_attempts or elapsed + wait > self.retry_budget:
                raise self._gave_up(method, shown, attempt, elapsed, last, wait)
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
        method: str,
        url: str,
        shown: str,
        params: Mapping[str, Any] | None,
        json: Any,
        data: Any,
        headers: Mapping[str, str] | None,
        idempotent: bool,
        parse: bool,
    ) -> tuple[requests.Response, Any]:
        """One try: the answer, or _Retry, or an error of the tree."""
        kwargs: dict[str, Any] = {"timeout": self.timeout}
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
                method,
                url,
                params=dict(params) if params else None,
                json=json,
                data=data,
                headers=dict(headers) if headers else None,
                **kwargs,
            )
        except requests.RequestException as exc:
            ms = (time.perf_counter() - clock) * 1000
            reason = _failure(exc)
            log.info("%s %s -> %s after %.0f ms", method, logs.redact_url(url), reason, ms)
            if never_reached(exc):
                raise _Retry(reason) from None
            if isinstance(
                exc,
                requests.exceptions.SSLError
                | requests.exceptions.InvalidURL
                | requests.exceptions.InvalidHeader
                | requests.exceptions.MissingSchema
                | requests.exceptions.InvalidSchema
                | requests.exceptions.TooManyRedirects,
            ):
                raise OperationalError(
                    f"{method} {shown}: {reason}: {logs.redact(str(exc))[:200]}",
                    hint="check the URL and proxy connection properties",
                ) from None
            if idempotent:
                raise _Retry(reason) from None
            raise OperationalError(
                f"{method} {shown}: {reason} after the request was sent; not retried, "
                "since Sage may have carried it out",
                hint="check whether it took effect before sending it again",
            ) from None
        self._log_exchange(response, (time.perf_counter() - clock) * 1000)
        status = response.status_code
        if status == 429:
            response.close()
            raise _Retry("429 Too Many Requests", status=429, wait=retry_after(response))
        if status in RETRY_STATUSES and idempotent:
            response.close()
            raise _Retry(f"{status} {response.reason}".strip(), status=status)
        if status == 401:
            return response, None
        if status >= 400:
            hint = (
                "Sage may have carried the request out before failing: check before sending "
                "it again"
                if status >= 500 and not idempotent
                else None
            )
            raise api_errors.from_response(response, method, shown, body=json, hint=hint)
        if not parse:
            return response, None
        return response, self._parse(response, method, shown, idempotent)

    def _parse(self, response: requests.Response, method: str, shown: str, idempotent: bool) -> Any:
        body = response.content
        if response.status_code == 204 or not body.strip():
            return None
        try:
            return response.json()
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
        self, method: str, shown: str, attempts: int, elapsed: float, last: _Retry, wait: float
    ) -> RetriableAPIError:
        why = (
            ""
            if attempts >= self.max_attempts
            else f", and waiting {wait:.0f} s more would pass the {self.retry_budget:.0f} s limit"
        )
        exc = RetriableAPIError(
            f"{method} {shown}: gave up after {attempts} attempt{'s' if attempts > 1 else ''} "
            f"in {elapsed:.1f} s{why}; last: {last.reason}",
            hint="Sage is busy or unreachable: try again later (if it keeps answering 429, "
            "lower RateLimit or MaxConcurrency)",
        )
        exc.status = last.status  # type: ignore[attr-defined]
        exc.method, exc.path = method, shown  # type: ignore[attr-defined]
        return exc

    def _log_exchange(self, response: requests.Response, ms: float) -> None:
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
    ) -> Iterator[list[Record]]:
        """Pages of records, one request at a time, asked for only as they are consumed.

        With ``limit``, no request is made once that many records came, and the page
        size is fitted to what remains (where the paging style allows).
        """
        if limit is not None and limit <= 0:
            return
        request: PageRequest | None = paginator.first(path, params, _fit(page_size, limit))
        yield from self._follow(paginator, request, page_size, limit, 0)

    def _follow(
        self,
        paginator: Paginator,
        request: PageRequest | None,
        page_size: int,
        limit: int | None,
        done: int,
    ) -> Iterator[list[Record]]:
        while request is not None:
            page = self._page(paginator, request)
            records = page.records
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
    ) -> Iterator[Record]:
        """The records of every page, one by one."""
        fetch = self.pages_parallel if parallel else self.pages
        for page in fetch(path, params, paginator, page_size=page_size, limit=limit):
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
        are addressed directly. At most ``max_concurrency`` pages are held at a time.
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
        first: Page | None = None
        first = self._page(paginator, paginator.first(path, params, size))
        total = first.total
        if total is None and paginator.total_source == "count_request":
            if len(first.records) < size:
                total = len(first.records)  # one short page is all there is: no count needed
            else:
                try:
                    total = self.count(path, params, paginator)
                except (APIError, NotSupportedError):
                    total = None  # an API without $count: read one page at a time
        if total is None:  # nothing to plan with: one page at a time
            if first is None:
                yield from self.pages(path, params, paginator, page_size=page_size, limit=limit)
                return
            records = first.records[: _left(limit, 0)]
            if records:
                yield records
            if limit is None or len(records) < limit:
                after = paginator.following(first, _fit(page_size, _left(limit, len(records))))
                yield from self._follow(paginator, after, page_size, limit, len(records))
            return
        wanted = total if limit is None else min(total, limit)
        planned = math.ceil(wanted / size)
        queue = (
            paginator.at(path, params, size, index)
            for index in range(0 if first is None else 1, planned)
        )
        fetched = self._window(paginator, queue, workers)
        done = 0
        last: Page | None = None
        try:
            for page in itertools.chain([first] if first else [], fetched):
                last = page
                for chunk in self._complete(paginator, page, page_size, limit, done, planned):
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
        yield from self._follow(paginator, after, page_size, limit, done)

    def _complete(
        self,
        paginator: Paginator,
        page: Page,
        page_size: int,
        limit: int | None,
        done: int,
        planned: int,
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
        """Pages of the queued requests in queue order, ``workers`` requests at most in flight."""
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sagesql-page")
        pending: deque[Future[Page]] = deque()
        try:
            for request in queue:
                pending.append(pool.submit(self._page, paginator, request))
                if len(pending) >= workers:
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


def _fit(page_size: int, remaining: int | None) -> int:
    """The page size to ask for when only ``remaining`` records are wanted."""
    return max(1, page_size if remaining is None else min(page_size, remaining))


def _left(limit: int | None, done: int) -> int | None:
    return None if limit is None else max(0, limit - done)
