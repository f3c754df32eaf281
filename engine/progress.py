"""Progress of a statement's reads: pages and records as they arrive, and the API's total.

A caller that shows progress (the command line at a terminal) sets an observer for the
statement with :func:`watching`; ``fetch`` then hands the transport a paginator that
tells the observer of each page it parses (its records, and the total when the API
gives one: Accounting's ``$total``, CRM's ``$totalResults``, Sage 200's ``$count``).
Without an observer the paginator is the product's own, untouched. The observer may be
called from the transport's threads (pages read in parallel).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Protocol

from sagesql.connector.paging import Page, PageRequest, Paginator


class Observer(Protocol):
    """``source`` tells the lists of one statement apart (a join reads several)."""

    def page(self, records: int, total: int | None, source: int) -> None:
        """A page of ``records`` arrived; ``total``: the list's size if the API said."""

    def counted(self, total: int | None, source: int) -> None:
        """A separate count request answered ``total`` (Sage 200's ``$count``)."""


_observer: ContextVar[Observer | None] = ContextVar("sagesql_progress", default=None)


@contextmanager
def watching(observer: Observer) -> Iterator[Observer]:
    """Report the reads of statements run (and their rows read) inside the block."""
    token = _observer.set(observer)
    try:
        yield observer
    finally:
        _observer.reset(token)


class _Observed(Paginator):
    """The product's paginator, telling the observer of each page it parses."""

    def __init__(self, inner: Paginator, observer: Observer) -> None:
        self._inner = inner
        self._observer = observer
        self.style = inner.style
        self.total_source = inner.total_source
        self.addressable = inner.addressable
        self.may_return_fewer = inner.may_return_fewer

    def first(self, path: str, params: Mapping[str, Any] | None, size: int) -> PageRequest:
        return self._inner.first(path, params, size)

    def parse(self, data: Any, request: PageRequest) -> Page:
        page = self._inner.parse(data, request)
        self._observer.page(len(page.records), page.total, id(self))
        return page

    def following(self, page: Page, size: int) -> PageRequest | None:
        return self._inner.following(page, size)

    def at(self, path: str, params: Mapping[str, Any] | None, size: int, index: int) -> PageRequest:
        return self._inner.at(path, params, size, index)

    def count_request(self, path: str, params: Mapping[str, Any] | None) -> PageRequest | None:
        return self._inner.count_request(path, params)

    def parse_count(self, data: Any) -> int | None:
        total = self._inner.parse_count(data)
        self._observer.counted(total, id(self))
        return total


def observed(paginator: Paginator) -> Paginator:
    """``paginator``, reporting to the current observer if there is one."""
    observer = _observer.get()
    return paginator if observer is None else _Observed(paginator, observer)
