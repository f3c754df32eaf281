"""Paginators: one small object per paging style of the table definitions.

A paginator only builds requests and reads answers; the transport sends them
(``HTTPTransport.pages`` streams pages, ``HTTPTransport.pages_parallel`` fetches several at
once when the total is known). The styles (``paging.style`` in table.schema.json):

``page_number``  Sage Accounting: ``page``/``items_per_page``, records in ``$items``,
                 total in ``$total``, follow ``$next`` (relative, without /v3.1) until null.
                 A page past the end answers the last page again: checked with ``$page``.
``top_skip``     Sage 200: bare arrays, ``$top``/``$skip`` with a required ``$orderby``
                 (default the key); the end is a short page; the total is a separate
                 ``$count=true`` request whose body is a bare integer.
``start_index``  Sage CRM (SData): ``startIndex`` (1-based)/``count``, records in
                 ``$resources``, total in ``$totalResults``; the server may answer fewer
                 than asked, so the next page starts after what came.
``none``         one answer; a bare object is one record.

Whatever the style, :class:`PageGuard` ends a list that would never end: a server
answering the same records again with a link to yet another page, more records than
its own total said (beyond a margin for records added meanwhile), or more than
``MAX_PAGES`` pages.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

import msgspec

from sagesql.errors import APIError

if TYPE_CHECKING:
    from sagesql.schemas.catalog import Table

Record = dict[str, Any]

# Pages one list may take: 20 million records at Accounting's 200 a page, hours of
# requests at Sage's rate limits. More is a server paging in a loop.
MAX_PAGES = 100_000
# Records past the total the API gave that are still taken for records added during
# the read: half the total, and at least this many pages' worth.
EXTRA_PAGES = 5


class PageRequest(msgspec.Struct, frozen=True):
    """One page to ask for: a path (relative to the API, or a ``$next`` link) and parameters."""

    path: str
    params: Mapping[str, Any] | None
    offset: int = 0  # position of the page's first record (0-based), when known
    size: int | None = None  # records asked for
    number: int | None = None  # page number, for page_number paging
    base: Mapping[str, Any] = msgspec.field(default_factory=dict)  # the caller's own parameters


class Page(msgspec.Struct, frozen=True):
    """What one answer held."""

    request: PageRequest
    records: list[Record]
    total: int | None = None
    more: bool = False  # the answer says there is a next page
    link: str | None = None  # the next page's link, when the API gives one


class PageGuard:
    """Watches the pages of one list, in order, and stops one that would never end.

    ``check`` raises :class:`APIError` (one line, naming the list) when a page holds the
    very records of an earlier page (as many, the same first and last), when more
    records came than the largest total the API gave plus a margin (half of it, at least
    ``EXTRA_PAGES`` pages), or past ``max_pages`` pages.
    """

    def __init__(self, shown: str, *, page_size: int, max_pages: int = MAX_PAGES) -> None:
        self.shown = shown
        self.page_size = max(1, page_size)
        self.max_pages = max_pages
        self.pages = 0
        self.records = 0
        self.total: int | None = None
        self._seen: dict[bytes, int] = {}  # digest of a page's records -> its number

    def _stop(self, why: str) -> APIError:
        return APIError(
            f"GET {self.shown}: {why}; stopped after {self.pages} pages and {self.records} records",
            hint="the API is paging without end: try again later or narrow the query, "
            "and check that the URL connection property is Sage's API",
        )

    def check(self, page: Page) -> None:
        self.pages += 1
        self.records += len(page.records)
        if page.total is not None:
            self.total = max(self.total or 0, page.total)
        if self.pages > self.max_pages:
            raise self._stop(f"more than {self.max_pages} pages")
        if page.records:
            # The count, first and last records tell a repeated page (a loop answers the
            # very same page); the whole page's repr cost a tenth of a wide scan's time.
            records = page.records
            sample = repr((len(records), records[0], records[-1])).encode()
            digest = hashlib.blake2b(sample, digest_size=16).digest()
            earlier = self._seen.setdefault(digest, self.pages)
            if earlier != self.pages:
                raise self._stop(
                    f"page {self.pages} holds the same {len(page.records)} records as page "
                    f"{earlier}"
                )
        if self.total is not None:
            allowed = self.total + max(self.total // 2, EXTRA_PAGES * self.page_size)
            if self.records > allowed:
                raise self._stop(f"more records than the {self.total} the API said it has")


class Paginator:
    """The base: one answer, no next page (style ``none``)."""

    style = "none"
    total_source = "none"  # envelope | count_request | none
    addressable = False  # page n can be asked for directly, for parallel fetching
    may_return_fewer = False  # a short page does not mean the end

    def first(self, path: str, params: Mapping[str, Any] | None, size: int) -> PageRequest:
        return PageRequest(path, dict(params or {}), base=dict(params or {}))

    def parse(self, data: Any, request: PageRequest) -> Page:
        if data is None:
            return Page(request, [])
        if isinstance(data, list):
            return Page(request, [r for r in data if isinstance(r, dict)])
        if isinstance(data, dict):
            return Page(request, [data])
        return Page(request, [])

    def following(self, page: Page, size: int) -> PageRequest | None:
        """The request for the page after ``page``, ``size`` records (None at the end)."""
        return None

    def at(self, path: str, params: Mapping[str, Any] | None, size: int, index: int) -> PageRequest:
        """Page ``index`` (0-based) of ``size`` records, for addressable styles."""
        raise NotImplementedError(f"{self.style} pages cannot be addressed directly")

    def start(
        self, path: str, params: Mapping[str, Any] | None, size: int, offset: int
    ) -> PageRequest:
        """The page of ``size`` records holding record ``offset`` (0-based), for addressable
        styles: it starts there where the style takes any start, else at the start of
        the page that holds it (its ``offset`` says which)."""
        raise NotImplementedError(f"{self.style} pages cannot be addressed directly")

    def start_size(self, page_size: int, offset: int, limit: int | None) -> int:
        """The page size for reading ``limit`` records from ``offset``: fitted to the limit."""
        return max(1, page_size if limit is None else min(page_size, limit))

    def count_request(self, path: str, params: Mapping[str, Any] | None) -> PageRequest | None:
        """The separate request that counts the records (count_request styles)."""
        return None

    def parse_count(self, data: Any) -> int | None:
        return None


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


class PageNumber(Paginator):
    """Sage Accounting: ``page``/``items_per_page``, ``$items``, ``$total``, ``$next``."""

    style = "page_number"
    total_source = "envelope"
    addressable = True
    page_param = "page"
    size_param = "items_per_page"

    def at(self, path: str, params: Mapping[str, Any] | None, size: int, index: int) -> PageRequest:
        base = dict(params or {})
        query = {**base, self.page_param: index + 1, self.size_param: size}
        return PageRequest(path, query, offset=index * size, size=size, number=index + 1, base=base)

    def first(self, path: str, params: Mapping[str, Any] | None, size: int) -> PageRequest:
        return self.at(path, params, size, 0)

    def start(
        self, path: str, params: Mapping[str, Any] | None, size: int, offset: int
    ) -> PageRequest:
        return self.at(path, params, size, offset // size)

    def start_size(self, page_size: int, offset: int, limit: int | None) -> int:
        """Pages start at multiples of their size: the smallest size that covers records
        ``offset`` to ``offset + limit`` in the fewest pages (LIMIT 10 OFFSET 1000: page
        101 of 10)."""
        if limit is None:
            return page_size
        best = (math.inf, page_size)
        for size in range(max(1, min(limit, page_size)), page_size + 1):
            pages = (offset + limit - 1) // size - offset // size + 1
            best = min(best, (pages, size))
        return int(best[1])

    def parse(self, data: Any, request: PageRequest) -> Page:
        if not isinstance(data, dict):
            return super().parse(data, request)  # the definitions model some lists as arrays
        items = data.get("$items")
        records = [r for r in items if isinstance(r, dict)] if isinstance(items, list) else []
        number = _int(data.get("$page"))
        if request.number is not None and number is not None and number != request.number:
            # Past the end Sage answers the last page again: those records were seen already.
            return Page(request, [], _int(data.get("$total")))
        link = data.get("$next")
        link = link if isinstance(link, str) and link else None
        return Page(request, records, _int(data.get("$total")), more=bool(link), link=link)

    def following(self, page: Page, size: int) -> PageRequest | None:
        # The page size cannot change between pages: page n of 5 is not records 41-45 of 20.
        if not page.link or not page.records:
            return None
        parts = urlsplit(page.link)
        query: dict[str, Any] = dict(parse_qsl(parts.query, keep_blank_values=True))
        for name, value in page.request.base.items():
            query.setdefault(name, value)  # in case a link drops one of the caller's parameters
        path = parts._replace(query="", fragment="").geturl()
        if path == page.request.path and query == dict(page.request.params or {}):
            return None  # a link to the same page would loop forever
        number = (page.request.number or 0) + 1
        return PageRequest(
            path,
            query,
            offset=page.request.offset + len(page.records),
            size=page.request.size,
            number=_int(query.get(self.page_param)) or number,
            base=page.request.base,
        )


class TopSkip(Paginator):
    """Sage 200: ``$top``/``$skip`` with ``$orderby`` (the key unless given), bare arrays."""

    style = "top_skip"
    total_source = "count_request"
    addressable = True

    def __init__(self, key: str | None = "id") -> None:
        self.key = key or "id"

    def _request(
        self, request_base: Mapping[str, Any], path: str, offset: int, size: int
    ) -> PageRequest:
        base = dict(request_base)
        # $skip is refused without $orderby, and an order is what makes pages disjoint.
        query = {
            **base,
            "$orderby": base.get("$orderby") or self.key,
            "$top": size,
            "$skip": offset,
        }
        return PageRequest(path, query, offset=offset, size=size, base=base)

    def first(self, path: str, params: Mapping[str, Any] | None, size: int) -> PageRequest:
        return self._request(params or {}, path, 0, size)

    def at(self, path: str, params: Mapping[str, Any] | None, size: int, index: int) -> PageRequest:
        return self._request(params or {}, path, index * size, size)

    def start(
        self, path: str, params: Mapping[str, Any] | None, size: int, offset: int
    ) -> PageRequest:
        return self._request(params or {}, path, offset, size)

    def parse(self, data: Any, request: PageRequest) -> Page:
        if isinstance(data, dict) and isinstance(data.get("value"), list):  # OData envelope
            data = data["value"]
        records = [r for r in data if isinstance(r, dict)] if isinstance(data, list) else []
        full = request.size is not None and len(records) >= request.size
        return Page(request, records, more=full)

    def following(self, page: Page, size: int) -> PageRequest | None:
        if not page.more:
            return None
        return self._request(
            page.request.base, page.request.path, page.request.offset + len(page.records), size
        )

    def count_request(self, path: str, params: Mapping[str, Any] | None) -> PageRequest | None:
        skip = {"$top", "$skip", "$orderby", "$select", "$expand", "$count"}
        query = {k: v for k, v in (params or {}).items() if k not in skip}
        query["$count"] = "true"
        return PageRequest(path, query, base=dict(params or {}))

    def parse_count(self, data: Any) -> int | None:
        if isinstance(data, dict):
            data = next(
                (data[k] for k in ("@odata.count", "$count", "count", "Count") if k in data), None
            )
        return _int(data)


class StartIndex(Paginator):
    """Sage CRM (SData): ``startIndex`` (1-based)/``count``, ``$resources``, ``$totalResults``."""

    style = "start_index"
    total_source = "envelope"
    addressable = True
    may_return_fewer = True

    def _request(self, base: Mapping[str, Any], path: str, offset: int, size: int) -> PageRequest:
        query = {**base, "startIndex": offset + 1, "count": size}
        return PageRequest(path, query, offset=offset, size=size, base=dict(base))

    def first(self, path: str, params: Mapping[str, Any] | None, size: int) -> PageRequest:
        return self._request(params or {}, path, 0, size)

    def at(self, path: str, params: Mapping[str, Any] | None, size: int, index: int) -> PageRequest:
        return self._request(params or {}, path, index * size, size)

    def start(
        self, path: str, params: Mapping[str, Any] | None, size: int, offset: int
    ) -> PageRequest:
        return self._request(params or {}, path, offset, size)

    def parse(self, data: Any, request: PageRequest) -> Page:
        if not isinstance(data, dict):
            return super().parse(data, request)
        items = data.get("$resources")
        records = [r for r in items if isinstance(r, dict)] if isinstance(items, list) else []
        total = _int(data.get("$totalResults"))
        more = bool(records) and (total is None or request.offset + len(records) < total)
        return Page(request, records, total, more=more)

    def following(self, page: Page, size: int) -> PageRequest | None:
        if not page.more:
            return None
        # Fewer than asked is not the end: start after what came.
        return self._request(
            page.request.base, page.request.path, page.request.offset + len(page.records), size
        )


STYLES: dict[str, type[Paginator]] = {
    "none": Paginator,
    "page_number": PageNumber,
    "top_skip": TopSkip,
    "start_index": StartIndex,
}


def for_style(style: str, *, key: str | None = None) -> Paginator:
    """The paginator of a paging style (``key`` orders top_skip pages)."""
    cls = STYLES[style]
    return TopSkip(key) if cls is TopSkip else cls()


# Sort keys used to page a table without a key: enough to make ties between records
# unlikely, few enough to keep the URL short.
KEYLESS_ORDER_COLUMNS = 8


def for_table(table: Table) -> Paginator:
    """The paginator a table's definition asks for.

    Sage 200 pages need an ``$orderby``: the key, or for a table without one (``sites``,
    the ``*_views``) its first sortable top-level fields together, so that pages stay
    disjoint (ordering by a field the resource lacks, such as ``id``, is refused).
    """
    key = table.key
    if key is None and table.paging.style == "top_skip" and table.pushdown.sort is not None:
        sortable = set(table.pushdown.sort.columns)
        fields = [c.path[0] for c in table.columns if c.name in sortable and len(c.path) == 1]
        key = ",".join(fields[:KEYLESS_ORDER_COLUMNS]) or None
    return for_style(table.paging.style, key=key)
